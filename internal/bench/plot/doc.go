// Package plot draws bench results as SVG charts: latency (p50, p99,
// p999) against achieved throughput, throughput against concurrency, and
// the latency CDF, one series per target.
package plot
