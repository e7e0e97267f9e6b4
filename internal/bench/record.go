package bench

import (
	"errors"
	"sync"
	"time"
)

// opHists holds a histogram, error counts and failed-precondition counts
// per operation.
type opHists struct {
	hist      [numOps]*Histogram
	errs      [numOps]map[string]int64
	conflicts [numOps]int64
}

func newOpHists() *opHists {
	h := &opHists{}
	for i := range h.hist {
		h.hist[i] = NewHistogram()
		h.errs[i] = map[string]int64{}
	}
	return h
}

// merge adds o into h.
func (h *opHists) merge(o *opHists) {
	for i := range h.hist {
		h.hist[i].Merge(o.hist[i])
		for c, n := range o.errs[i] {
			h.errs[i][c] += n
		}
		h.conflicts[i] += o.conflicts[i]
	}
}

func (h *opHists) reset() {
	for i := range h.hist {
		h.hist[i].Reset()
		clear(h.errs[i])
		h.conflicts[i] = 0
	}
}

// all merges the operations' histograms into one.
func (h *opHists) all() *Histogram {
	a := NewHistogram()
	for _, x := range h.hist {
		a.Merge(x)
	}
	return a
}

func (h *opHists) errCount() int64 {
	var n int64
	for _, m := range h.errs {
		for _, c := range m {
			n += c
		}
	}
	return n
}

// recorder is one client's recording. The client records into it and the
// collector drains it every interval; the mutex is almost never contended.
type recorder struct {
	mu struct {
		sync.Mutex
		h *opHists
	}
}

func newRecorder() *recorder {
	r := &recorder{}
	r.mu.h = newOpHists()
	return r
}

// record counts one operation: its latency if it succeeded, its error code
// otherwise (a failed request's latency would mix timeouts into the
// percentiles). A CAS whose precondition failed (ErrConflict) completed
// normally: its latency is recorded and it is counted as a conflict.
func (r *recorder) record(op Op, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if errors.Is(err, ErrConflict) {
		r.mu.h.conflicts[op]++
		r.mu.h.hist[op].Record(d)
		return
	}
	if err != nil {
		r.mu.h.errs[op][ErrorCode(err)]++
		return
	}
	r.mu.h.hist[op].Record(d)
}

// drainInto moves the recording into dst (nil discards it).
func (r *recorder) drainInto(dst *opHists) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if dst != nil {
		dst.merge(r.mu.h)
	}
	r.mu.h.reset()
}
