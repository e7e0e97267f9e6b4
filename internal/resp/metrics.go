package resp

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrumdb/fulcrum/internal/metrics"
)

// protoLabel is the "proto" label of every RESP metric.
const protoLabel = "resp"

// serverMetrics caches the label children the hot path uses, so a request
// costs a few atomic adds and no label lookups.
type serverMetrics struct {
	connections        prometheus.Gauge
	connectionsTotal   prometheus.Counter
	rejectedMaxClients prometheus.Counter
	rejectedProtocol   prometheus.Counter
	bytesIn            prometheus.Counter
	bytesOut           prometheus.Counter
	cmds               []*cmdMetrics // by command id
	unknown            *cmdMetrics
}

func newServerMetrics(m *metrics.Metrics, cmds []*command) *serverMetrics {
	sm := &serverMetrics{
		connections:        m.Connections.WithLabelValues(protoLabel),
		connectionsTotal:   m.ConnectionsTotal.WithLabelValues(protoLabel),
		rejectedMaxClients: m.Rejected.WithLabelValues(protoLabel, "max_clients"),
		rejectedProtocol:   m.Rejected.WithLabelValues(protoLabel, "protocol"),
		bytesIn:            m.BytesIn.WithLabelValues(protoLabel),
		bytesOut:           m.BytesOut.WithLabelValues(protoLabel),
		cmds:               make([]*cmdMetrics, len(cmds)),
	}
	for i, c := range cmds {
		sm.cmds[i] = newCmdMetrics(m, c.name)
	}
	// Unknown commands share one label so a client cannot create series at
	// will.
	sm.unknown = newCmdMetrics(m, "unknown")
	return sm
}

// cmdMetrics are one command's instruments.
type cmdMetrics struct {
	name     string
	requests *prometheus.CounterVec
	ok       prometheus.Counter
	latency  prometheus.Observer
	mu       struct {
		sync.Mutex
		errs map[string]prometheus.Counter
	}
}

func newCmdMetrics(m *metrics.Metrics, name string) *cmdMetrics {
	return &cmdMetrics{
		name:     name,
		requests: m.Requests,
		ok:       m.Requests.WithLabelValues(protoLabel, name, "ok"),
		latency:  m.Latency.WithLabelValues(protoLabel, name),
	}
}

// errCounter returns the counter of results with error code code, creating
// it on first use (errors are the slow path).
func (m *cmdMetrics) errCounter(code string) prometheus.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.mu.errs[code]
	if !ok {
		c = m.requests.WithLabelValues(protoLabel, m.name, code)
		if m.mu.errs == nil {
			m.mu.errs = make(map[string]prometheus.Counter)
		}
		m.mu.errs[code] = c
	}
	return c
}
