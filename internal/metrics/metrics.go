package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds a node's instruments. Label "proto" is "resp" or "http";
// "command" is the lower-case command (RESP) or route (HTTP); "result" is
// "ok" or an error code such as "TOO_LARGE".
type Metrics struct {
	Registry *prometheus.Registry

	Requests         *prometheus.CounterVec   // proto, command, result
	Latency          *prometheus.HistogramVec // proto, command
	Connections      *prometheus.GaugeVec     // proto
	ConnectionsTotal *prometheus.CounterVec   // proto
	Rejected         *prometheus.CounterVec   // proto, reason
	BytesIn          *prometheus.CounterVec   // proto
	BytesOut         *prometheus.CounterVec   // proto
}

// New returns instruments registered on a fresh registry that also carries
// the Go runtime and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fulcrum", Name: "requests_total",
			Help: "Requests served, by protocol, command and result code.",
		}, []string{"proto", "command", "result"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "fulcrum", Name: "request_duration_seconds",
			Help:    "Request latency from decoded request to encoded answer.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 2, 22), // 5µs .. ~10s
		}, []string{"proto", "command"}),
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "fulcrum", Name: "connections",
			Help: "Open client connections.",
		}, []string{"proto"}),
		ConnectionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fulcrum", Name: "connections_total",
			Help: "Client connections accepted.",
		}, []string{"proto"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fulcrum", Name: "connections_rejected_total",
			Help: "Client connections refused or closed by the server, by reason.",
		}, []string{"proto", "reason"}),
		BytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fulcrum", Name: "bytes_in_total",
			Help: "Bytes read from clients.",
		}, []string{"proto"}),
		BytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fulcrum", Name: "bytes_out_total",
			Help: "Bytes written to clients.",
		}, []string{"proto"}),
	}
	r.MustRegister(m.Requests, m.Latency, m.Connections, m.ConnectionsTotal, m.Rejected, m.BytesIn, m.BytesOut,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
