package transport

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector that reads the endpoint's
// counters at scrape time. Metrics are named fulcrum_transport_* and
// labelled by peer; drops also carry a reason (queue_full, expired,
// no_handler).
func (t *TCP) Collector() prometheus.Collector { return newCollector(t) }

type collector struct {
	t *TCP

	messagesSent, bytesSent         *prometheus.Desc
	messagesReceived, bytesReceived *prometheus.Desc
	dropped                         *prometheus.Desc
	reconnects, dialFailures        *prometheus.Desc
	queued, connected               *prometheus.Desc
}

func newCollector(t *TCP) *collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("fulcrum_transport_"+name, help, append([]string{"peer"}, labels...), nil)
	}
	return &collector{
		t:                t,
		messagesSent:     desc("messages_sent_total", "Messages (one-way, call requests, call replies) written to the peer."),
		bytesSent:        desc("bytes_sent_total", "Payload bytes of the messages written to the peer."),
		messagesReceived: desc("messages_received_total", "Messages read from the peer."),
		bytesReceived:    desc("bytes_received_total", "Payload bytes of the messages read from the peer."),
		dropped:          desc("dropped_total", "Messages dropped, by reason: queue_full (backpressure), expired (older than the TTL or past the call deadline when the writer reached them), no_handler.", "reason"),
		reconnects:       desc("reconnects_total", "Connections to the peer established after the first."),
		dialFailures:     desc("dial_failures_total", "Failed connection attempts to the peer."),
		queued:           desc("queue_length", "Messages waiting in the peer's outbound queue."),
		connected:        desc("connected", "1 while the outbound connection to the peer is up."),
	}
}

// Describe sends the descriptors of every metric.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.messagesSent, c.bytesSent, c.messagesReceived, c.bytesReceived,
		c.dropped, c.reconnects, c.dialFailures, c.queued, c.connected} {
		ch <- d
	}
}

// Collect sends the current values.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for id, s := range c.t.Stats().Peers {
		peer := id.String()
		counter(c.messagesSent, s.MessagesSent, peer)
		counter(c.bytesSent, s.BytesSent, peer)
		counter(c.messagesReceived, s.MessagesReceived, peer)
		counter(c.bytesReceived, s.BytesReceived, peer)
		counter(c.dropped, s.DroppedQueueFull, peer, "queue_full")
		counter(c.dropped, s.DroppedExpired, peer, "expired")
		counter(c.dropped, s.DroppedNoHandler, peer, "no_handler")
		counter(c.reconnects, s.Reconnects, peer)
		counter(c.dialFailures, s.DialFailures, peer)
	}
	c.t.mu.RLock()
	peers := make([]*peer, 0, len(c.t.mu.peers))
	for _, p := range c.t.mu.peers {
		peers = append(peers, p)
	}
	c.t.mu.RUnlock()
	for _, p := range peers {
		queued, up := p.state()
		connected := 0.0
		if up {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(queued), p.id.String())
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, connected, p.id.String())
	}
}
