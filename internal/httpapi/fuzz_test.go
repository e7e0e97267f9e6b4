package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzHandler sends arbitrary requests (method, target, a few headers that
// steer the handlers, body) and checks that none yields a 5xx or a panic,
// that every error is a JSON {"code","message"}, and that a PUT answered
// 2xx is readable at once with the version it reported. Inputs the HTTP
// request parser refuses are skipped: a real server answers them itself.
//
// Seeds live in testdata/fuzz/FuzzHandler. Run more with
//
//	go test -run '^$' -fuzz FuzzHandler -fuzztime 60s ./internal/httpapi
func FuzzHandler(f *testing.F) {
	e := newEnv(f)
	f.Add("PUT", "/v1/namespaces/default/keys/k?ttl=10s", "", "", "", "", []byte("v"))
	f.Add("GET", "/v1/namespaces/default/keys/k?format=json", "", "", `"1"`, "application/json", []byte(nil))
	f.Fuzz(func(t *testing.T, method, target, contentType, ifMatch, ifNoneMatch, accept string, body []byte) {
		for _, v := range []string{method, target, contentType, ifMatch, ifNoneMatch, accept} {
			if strings.ContainsAny(v, "\r\n") {
				// A line break would inject headers (or end them), so the
				// request would not be the one the checks below assume.
				t.Skip("line break in a request line or header")
			}
		}
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: fulcrum\r\n", method, target)
		for _, h := range [][2]string{{"Content-Type", contentType}, {"If-Match", ifMatch}, {"If-None-Match", ifNoneMatch}, {"Accept", accept}} {
			if h[1] != "" {
				fmt.Fprintf(&raw, "%s: %s\r\n", h[0], h[1])
			}
		}
		fmt.Fprintf(&raw, "Content-Length: %d\r\n\r\n", len(body))
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			t.Skip("unparsable request")
		}
		req.RemoteAddr = "192.0.2.1:1234"
		reqBody := append([]byte(nil), body...)

		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		checkAnswer(t, req, w)

		if req.Method != http.MethodPut || w.Code/100 != 2 {
			return
		}
		get := httptest.NewRequest(http.MethodGet, req.URL.EscapedPath(), nil)
		gw := httptest.NewRecorder()
		e.h.ServeHTTP(gw, get)
		checkAnswer(t, get, gw)
		if gw.Code != http.StatusOK {
			t.Fatalf("PUT %s answered %d, then GET answered %d: %s", req.URL, w.Code, gw.Code, gw.Body.String())
		}
		if got, want := gw.Header().Get("ETag"), w.Header().Get("ETag"); got != want {
			t.Fatalf("PUT %s: ETag %s, GET: ETag %s", req.URL, want, got)
		}
		if !isJSON(req) && !bytes.Equal(gw.Body.Bytes(), reqBody) {
			t.Fatalf("PUT %s stored %q, GET read %q", req.URL, reqBody, gw.Body.Bytes())
		}
	})
}

// checkAnswer asserts the invariants of every answer.
func checkAnswer(t *testing.T, req *http.Request, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("%s %s: status %d: %s", req.Method, req.URL, w.Code, w.Body.String())
	}
	if w.Code < 400 {
		return
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: error %d with Content-Type %q", req.Method, req.URL, w.Code, ct)
	}
	var eb errorBody
	dec := json.NewDecoder(strings.NewReader(w.Body.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil || eb.Code == "" || eb.Message == "" {
		t.Fatalf("%s %s: error body %q (%v)", req.Method, req.URL, w.Body.String(), err)
	}
	if eb.Code.HTTPStatus() != w.Code && w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("%s %s: status %d for code %s", req.Method, req.URL, w.Code, eb.Code)
	}
}
