// Package httpapi is Fulcrum's HTTP/JSON front end: key reads, writes,
// deletes and listings over REST, plus the operational endpoints (health,
// readiness, Prometheus metrics, optional pprof). New returns an
// http.Handler; the caller owns the http.Server, listeners and shutdown.
//
// # Routes
//
//	GET    /v1/namespaces/{ns}/keys/{key...}  value: raw bytes (application/octet-stream), or a
//	                                          JSON object with ?format=json or Accept: application/json;
//	                                          If-None-Match → 304. HEAD works too.
//	PUT    /v1/namespaces/{ns}/keys/{key...}  store the raw body, or with Content-Type: application/json
//	                                          {"value"|"value_base64", "ttl_ms"}; ?ttl=10s | ?ttl_ms=N,
//	                                          ?nx, ?xx, ?keepttl, If-Match: "<version>" | *,
//	                                          If-None-Match: * → 201 created / 200 replaced
//	DELETE /v1/namespaces/{ns}/keys/{key...}  If-Match: "<version>"; 404 when the key does not exist
//	GET    /v1/namespaces/{ns}/keys           ?prefix= &cursor= &limit=(1..10000, default 100) &values=true
//	GET    /v1/namespaces                     namespaces with key counts
//	GET    /healthz                           200 "ok" while the process serves
//	GET    /readyz                            200 "ok" when Options.Ready is nil, else 503 + Retry-After
//	GET    /metrics                           Prometheus exposition of Options.Metrics.Registry
//	       /debug/pprof/...                   only with Options.EnablePprof
//
// Keys are the percent-decoded rest of the path and must be valid UTF-8
// (binary keys are for RESP; listings show them base64-encoded). The empty
// key is .../keys/ with a trailing slash. Paths with empty, "." or ".."
// segments are refused rather than redirected, since the cleaned path names
// another key: clients percent-encode '/' (%2F) and '.' (%2E) in such keys.
// Query strings are parsed strictly: unknown or repeated parameters are
// errors, so typos do not pass silently.
//
// A value's version is its ETag ("<version>") and its Fulcrum-Version
// header; Fulcrum-Expire-At carries the expiry in Unix milliseconds. A PUT
// without a TTL clears any expiry unless ?keepttl. TTLs become absolute
// expiries on Options.Now, which must be the store's clock.
//
// # Errors
//
// Every error is a JSON object {"code": "...", "message": "..."} whose
// status comes from kv.Code.HTTPStatus: INVALID 400, NOT_FOUND 404,
// CONFLICT 412 (a failed If-Match, If-None-Match, nx or xx, with the current
// version in the message), TOO_LARGE 413, RATE_LIMITED 429, UNAVAILABLE 503
// and NOT_LEADER 503 (both with Retry-After: 1), TIMEOUT 504, INTERNAL 500.
// A method a route does not take is 405 with code INVALID and an Allow
// header; an unknown route is 404 NOT_FOUND. Per-operation store errors
// (Result.Err) are answered with their own code.
//
// # Guarantees
//
//   - A request body is never read past its limit: a declared
//     Content-Length over the limit is refused (413) before reading, a
//     chunked body once it passes the limit (http.MaxBytesReader).
//     Over-limit keys are refused before the store is touched.
//   - Each write is one store batch, so conditional writes are atomic.
//   - Every request is counted in fulcrum_requests_total{proto="http",
//     command=<route>, result="ok"|<code>} with its latency and body bytes.
//   - Handlers hold no state between requests; the Handler is safe for
//     concurrent use.
package httpapi
