package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Code    kv.Code `json:"code"`
	Message string  `json:"message"`
}

// statusError is a coded error answered with a status other than its
// code's default (405 is not a kv code's status).
type statusError struct {
	status int
	err    *kv.Error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// errorAnswer maps err to the status, code and message sent to the client.
func errorAnswer(err error) (status int, body errorBody) {
	code := kv.CodeOf(err)
	status = code.HTTPStatus()
	var se *statusError
	if errors.As(err, &se) {
		status = se.status
	}
	msg := err.Error()
	var ke *kv.Error
	if errors.As(err, &ke) && ke.Message != "" {
		msg = ke.Message
	}
	return status, errorBody{Code: code, Message: msg}
}

// writeError writes err as a JSON error answer and returns the code for
// the request metrics. It is the only place errors are encoded.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, route string, err error) kv.Code {
	status, body := errorAnswer(err)
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	if status >= 500 && body.Code == kv.CodeInternal {
		h.opts.Logger.Error("http request failed", "route", route, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	// Headers set for a success answer (ETag, ...) must not leak into an
	// error answer.
	for _, k := range []string{"ETag", "Fulcrum-Version", "Fulcrum-Expire-At"} {
		w.Header().Del(k)
	}
	writeJSON(w, status, body)
	return body.Code
}

// writeJSON writes v as the JSON body with status. Encoding happens first
// so a (never expected) encoding failure can still become a clean 500.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		_ = json.NewEncoder(&buf).Encode(errorBody{Code: kv.CodeInternal, Message: "encoding answer: " + err.Error()})
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes()) // a write error means the client is gone
}

// recorder captures the status and body size for metrics. Unwrap lets
// http.ResponseController reach the Flusher underneath (pprof, promhttp).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(p)
	rw.bytes += int64(n)
	return n, err
}

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// Flush supports streaming handlers that type-assert http.Flusher.
func (rw *recorder) Flush() {
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// countingBody counts request body bytes actually read.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// instrument turns fn into an http.Handler that writes fn's error and
// records the request's count, result, latency and bytes under route.
// TimeoutHeader overrides a request's deadline ("500ms", "3s"); without
// it the server's default applies (cluster.request_timeout on a cluster).
const TimeoutHeader = "Fulcrum-Timeout"

func withTimeoutHeader(r *http.Request, v string) (*http.Request, context.CancelFunc, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Millisecond || d > 5*time.Minute {
		return r, nil, kv.Errorf(kv.CodeInvalid, "%s: %q is not a duration from 1ms to 5m", TimeoutHeader, v)
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return r.WithContext(ctx), cancel, nil
}

func (h *Handler) instrument(route string, fn handlerFunc) http.Handler {
	m := h.opts.Metrics
	latency := m.Latency.WithLabelValues("http", route)
	bytesIn := m.BytesIn.WithLabelValues("http")
	bytesOut := m.BytesOut.WithLabelValues("http")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now() // wall time for latency only; never for data
		rec := &recorder{ResponseWriter: w}
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			// Count on a copy of the request: the server inspects the
			// original's body after the handler to decide whether to drain
			// it or close the connection, and must see its own type.
			body = &countingBody{ReadCloser: r.Body}
			r = r.WithContext(r.Context())
			r.Body = body
		}
		result := "ok"
		err := error(nil)
		if v := r.Header.Get(TimeoutHeader); v != "" {
			var cancel context.CancelFunc
			if r, cancel, err = withTimeoutHeader(r, v); err == nil {
				defer cancel()
			}
		}
		if err == nil {
			err = fn(rec, r)
		}
		if err != nil {
			result = string(h.writeError(rec, r, route, err))
		} else if rec.status >= 400 {
			result = strconv.Itoa(rec.status) // a pass-through handler failed
		}
		m.Requests.WithLabelValues("http", route, result).Inc()
		latency.Observe(time.Since(start).Seconds())
		if body != nil {
			bytesIn.Add(float64(body.n))
		}
		bytesOut.Add(float64(rec.bytes))
	})
}
