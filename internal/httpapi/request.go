package httpapi

import (
	"bytes"
	"errors"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// namespace returns the validated {ns} path value.
func namespace(r *http.Request) (string, error) {
	ns := r.PathValue("ns")
	if err := kv.ValidateNamespace(ns); err != nil {
		return "", err
	}
	return ns, nil
}

// target returns the validated namespace and key of a key route. The key
// arrives percent-decoded by ServeMux. Over HTTP keys must be UTF-8 text;
// binary keys are for RESP.
func (h *Handler) target(r *http.Request) (string, []byte, error) {
	ns, err := namespace(r)
	if err != nil {
		return "", nil, err
	}
	key := r.PathValue("key")
	if !utf8.ValidString(key) {
		return "", nil, kv.Errorf(kv.CodeInvalid, "key is not valid UTF-8")
	}
	if err := h.opts.Limits.CheckKey([]byte(key)); err != nil {
		return "", nil, err
	}
	return ns, []byte(key), nil
}

// query parses the query string strictly: it must be well formed, name only
// allowed parameters and give each at most once, so a typo ("tll=10s") is
// an error instead of a silently ignored option.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, kv.Errorf(kv.CodeInvalid, "malformed query string: %v", err)
	}
	for name, vals := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || a == name
		}
		if !ok {
			if len(allowed) == 0 {
				return nil, kv.Errorf(kv.CodeInvalid, "unknown query parameter %q (this route takes none)", name)
			}
			return nil, kv.Errorf(kv.CodeInvalid, "unknown query parameter %q (allowed: %s)", name, strings.Join(allowed, ", "))
		}
		if len(vals) > 1 {
			return nil, kv.Errorf(kv.CodeInvalid, "query parameter %q given %d times", name, len(vals))
		}
	}
	return q, nil
}

// boolParam parses an optional boolean parameter; absent is false.
func boolParam(q url.Values, name string) (bool, error) {
	if !q.Has(name) {
		return false, nil
	}
	s := q.Get(name)
	if s == "" {
		return true, nil // "?nx" alone reads as a flag
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, kv.Errorf(kv.CodeInvalid, "%s=%q: want true or false", name, s)
	}
	return b, nil
}

// ttlParam returns the TTL from ?ttl= (Go duration) or ?ttl_ms=; 0 means
// none was given. A TTL must be at least one millisecond, the resolution
// of expiries.
func ttlParam(q url.Values) (int64, error) {
	if q.Has("ttl") && q.Has("ttl_ms") {
		return 0, kv.Errorf(kv.CodeInvalid, "give ttl or ttl_ms, not both")
	}
	if q.Has("ttl") {
		s := q.Get("ttl")
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, kv.Errorf(kv.CodeInvalid, "ttl=%q: not a duration (examples: 1500ms, 10s, 2h45m)", s)
		}
		if d < time.Millisecond {
			return 0, kv.Errorf(kv.CodeInvalid, "ttl=%q: must be at least 1ms", s)
		}
		return d.Milliseconds(), nil
	}
	if q.Has("ttl_ms") {
		s := q.Get("ttl_ms")
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, kv.Errorf(kv.CodeInvalid, "ttl_ms=%q: not an integer", s)
		}
		if ms < 1 {
			return 0, kv.Errorf(kv.CodeInvalid, "ttl_ms=%q: must be at least 1", s)
		}
		return ms, nil
	}
	return 0, nil
}

// expireAt turns a TTL in milliseconds into an absolute expiry.
func expireAt(nowMs, ttlMs int64) (int64, error) {
	if ttlMs > math.MaxInt64-nowMs {
		return 0, kv.Errorf(kv.CodeInvalid, "ttl of %d ms is too large", ttlMs)
	}
	return nowMs + ttlMs, nil
}

// etag renders a version as a strong entity tag.
func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// parseETag returns the version in a strong entity tag `"<version>"`.
func parseETag(s string) (uint64, bool) {
	if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, false
	}
	v, err := strconv.ParseUint(s[1:len(s)-1], 10, 64)
	return v, err == nil
}

// noneMatch reports whether an If-None-Match list on a read matches tag.
// Comparison is weak (RFC 9110 13.1.2): a W/ prefix is ignored.
func noneMatch(header []string, tag string) bool {
	for _, h := range header {
		for _, t := range strings.Split(h, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if t == "*" || t == tag {
				return true
			}
		}
	}
	return false
}

// ifMatchVersion parses If-Match on a write. It returns star=true for "*";
// otherwise the single version the write is conditional on. Lists and
// weak tags are refused: a write can be conditional on one version only,
// and weak tags never match for writes.
func ifMatchVersion(r *http.Request) (version uint64, present, star bool, err error) {
	vals := r.Header.Values("If-Match")
	if len(vals) == 0 {
		return 0, false, false, nil
	}
	s := strings.TrimSpace(strings.Join(vals, ","))
	if s == "*" {
		return 0, true, true, nil
	}
	v, ok := parseETag(s)
	if !ok {
		return 0, false, false, kv.Errorf(kv.CodeInvalid, "If-Match %q: want one strong ETag \"<version>\" or *", s)
	}
	return v, true, false, nil
}

// ifNoneMatchAny parses If-None-Match on a write, where only "*" (create
// only) is supported.
func ifNoneMatchAny(r *http.Request) (bool, error) {
	vals := r.Header.Values("If-None-Match")
	if len(vals) == 0 {
		return false, nil
	}
	if s := strings.TrimSpace(strings.Join(vals, ",")); s != "*" {
		return false, kv.Errorf(kv.CodeInvalid, "If-None-Match %q: writes support only *", s)
	}
	return true, nil
}

// wantsJSON reports whether a read answers with JSON: ?format=json, or an
// Accept header listing application/json (with a non-zero q). ?format=raw
// forces raw bytes.
func wantsJSON(r *http.Request, q url.Values) (bool, error) {
	switch f := q.Get("format"); f {
	case "json":
		return true, nil
	case "raw":
		return false, nil
	case "":
		if q.Has("format") {
			return false, kv.Errorf(kv.CodeInvalid, "format=: want json or raw")
		}
	default:
		return false, kv.Errorf(kv.CodeInvalid, "format=%q: want json or raw", f)
	}
	for _, h := range r.Header.Values("Accept") {
		for _, part := range strings.Split(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "application/json" {
				continue
			}
			if qv, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(qv, 64); err == nil && f == 0 {
					continue
				}
			}
			return true, nil
		}
	}
	return false, nil
}

// isJSON reports whether the request body is JSON by its Content-Type.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// readBody reads the request body, refusing one over limit with TOO_LARGE:
// a declared Content-Length over the limit is refused before reading
// anything, a chunked body once it passes the limit.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, kv.Errorf(kv.CodeTooLarge, "request body is %d bytes, limit is %d", r.ContentLength, limit)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, kv.Errorf(kv.CodeTooLarge, "request body exceeds %d bytes", limit)
		}
		return nil, kv.Errorf(kv.CodeInvalid, "reading request body: %v", err)
	}
	return buf.Bytes(), nil
}
