// Package metrics provides Fulcrum's Prometheus instruments: one registry per
// node (no global state), the request, latency, connection and byte counters
// that the front ends update, and collectors that read storage statistics at
// scrape time.
package metrics
