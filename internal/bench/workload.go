package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
)

// Op is the kind of one request.
type Op int

// The operations of a workload.
const (
	OpRead Op = iota
	OpWrite
	OpDelete
	// OpCAS is a compare-and-set: a write conditional on the key still
	// being at the version this client last saw (read first if it has
	// seen none). A failed condition is an outcome, ErrConflict, not an
	// error. Only the http and etcd targets have one (see CheckTarget).
	OpCAS
	numOps
)

func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpDelete:
		return "delete"
	case OpCAS:
		return "cas"
	}
	return "op" + strconv.Itoa(int(o))
}

// Workload describes the requests: the operation mix and the keys.
type Workload struct {
	ReadRatio   float64 `json:"read_ratio"`          // fraction of reads; the rest are writes, deletes and CASes
	DeleteRatio float64 `json:"delete_ratio"`        // fraction of deletes
	CASRatio    float64 `json:"cas_ratio,omitempty"` // fraction of compare-and-sets
	Keys        int     `json:"keys"`                // keyspace size
	ValueSize   int     `json:"value_size"`          // bytes per written value
	Dist        string  `json:"dist"`                // uniform, zipfian, latest, sequential
	Theta       float64 `json:"theta,omitempty"`     // zipfian skew (0 < θ < 1 is usual; YCSB uses 0.99)
	Namespace   string  `json:"namespace,omitempty"` // "" = the target's default
	KeyPrefix   string  `json:"key_prefix"`          // prepended to the key number
}

// Presets are the YCSB core workloads supported: A (50/50 read/update),
// B (95/5), C (read only). Each uses a zipfian key distribution.
var Presets = map[string]Workload{
	"A": {ReadRatio: 0.5, Dist: "zipfian"},
	"B": {ReadRatio: 0.95, Dist: "zipfian"},
	"C": {ReadRatio: 1, Dist: "zipfian"},
}

// Validate checks the workload's fields.
func (w Workload) Validate() error {
	switch {
	case w.ReadRatio < 0 || w.ReadRatio > 1:
		return fmt.Errorf("read ratio %v is not in [0,1]", w.ReadRatio)
	case w.DeleteRatio < 0 || w.ReadRatio+w.DeleteRatio > 1:
		return fmt.Errorf("delete ratio %v: read+delete must be in [0,1]", w.DeleteRatio)
	case w.CASRatio < 0 || w.ReadRatio+w.DeleteRatio+w.CASRatio > 1+1e-9:
		return fmt.Errorf("cas ratio %v: read+delete+cas must be in [0,1]", w.CASRatio)
	case w.Keys < 1:
		return fmt.Errorf("keyspace %d must be at least 1", w.Keys)
	case w.ValueSize < 0:
		return fmt.Errorf("value size %d is negative", w.ValueSize)
	}
	_, err := newKeyGen(w)
	return err
}

// pickOp draws an operation from the mix: one uniform draw cut into
// [read | delete | cas | write] intervals of the ratios' widths.
func (w Workload) pickOp(rng *rand.Rand) Op {
	x := rng.Float64()
	switch {
	case x < w.ReadRatio:
		return OpRead
	case x < w.ReadRatio+w.DeleteRatio:
		return OpDelete
	case x < w.ReadRatio+w.DeleteRatio+w.CASRatio:
		return OpCAS
	}
	return OpWrite
}

// key formats key number i; zero-padding keeps keys in numeric order.
func (w Workload) key(buf []byte, i uint64) []byte {
	buf = append(buf[:0], w.KeyPrefix...)
	var num [20]byte
	s := strconv.AppendUint(num[:0], i, 10)
	for n := len(s); n < 10; n++ {
		buf = append(buf, '0')
	}
	return append(buf, s...)
}

// keyGen draws key numbers in [0, n). Implementations are safe for
// concurrent use; each caller passes its own random source.
type keyGen interface {
	next(rng *rand.Rand) uint64
}

func newKeyGen(w Workload) (keyGen, error) {
	n := uint64(w.Keys)
	switch strings.ToLower(w.Dist) {
	case "", "uniform":
		return uniformKeys{n: n}, nil
	case "zipfian", "zipf":
		z, err := NewZipfian(n, w.Theta)
		return z, err
	case "latest":
		z, err := NewZipfian(n, w.Theta)
		if err != nil {
			return nil, err
		}
		return latestKeys{z: z}, nil
	case "sequential":
		return &sequentialKeys{n: n}, nil
	}
	return nil, fmt.Errorf("unknown key distribution %q (want uniform, zipfian, latest or sequential)", w.Dist)
}

type uniformKeys struct{ n uint64 }

func (u uniformKeys) next(rng *rand.Rand) uint64 { return rng.Uint64N(u.n) }

// latestKeys favours the most recently written keys: the preload writes
// keys in increasing order, so rank r of a zipfian draw is key n-1-r.
type latestKeys struct{ z *Zipfian }

func (l latestKeys) next(rng *rand.Rand) uint64 { return l.z.n - 1 - l.z.next(rng) }

// sequentialKeys walks the keyspace in order, shared by all clients, and
// wraps around.
type sequentialKeys struct {
	n   uint64
	pos atomic.Uint64
}

func (s *sequentialKeys) next(*rand.Rand) uint64 { return (s.pos.Add(1) - 1) % s.n }

// Zipfian draws ranks in [0, n) with P(rank r) proportional to 1/(r+1)^θ,
// by the method of Gray et al., "Quickly Generating Billion-Record
// Synthetic Databases" (SIGMOD 1994), as YCSB does. Rank 0 is the most
// popular. Its constants are computed once (O(n)); drawing is O(1) and safe
// for concurrent use.
type Zipfian struct {
	n     uint64
	theta float64
	alpha float64
	zetan float64
	eta   float64
	half  float64 // 1 + 0.5^θ: the threshold for rank 1
}

// DefaultTheta is YCSB's zipfian constant.
const DefaultTheta = 0.99

// NewZipfian returns a generator over n ranks with skew θ (0 = DefaultTheta).
func NewZipfian(n uint64, theta float64) (*Zipfian, error) {
	if theta == 0 {
		theta = DefaultTheta
	}
	if n == 0 {
		return nil, fmt.Errorf("zipfian over an empty keyspace")
	}
	if theta <= 0 || theta == 1 || theta >= 100 {
		return nil, fmt.Errorf("zipfian theta %v must be > 0 and != 1", theta)
	}
	zetan := zeta(n, theta)
	zeta2 := zeta(2, theta)
	z := &Zipfian{
		n:     n,
		theta: theta,
		alpha: 1 / (1 - theta),
		zetan: zetan,
		half:  1 + math.Pow(0.5, theta),
	}
	z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/zetan)
	return z, nil
}

// zeta is the generalized harmonic number sum_{i=1..n} 1/i^θ.
func zeta(n uint64, theta float64) float64 {
	var s float64
	for i := uint64(1); i <= n; i++ {
		s += 1 / math.Pow(float64(i), theta)
	}
	return s
}

// Prob returns the exact probability of rank r, for tests.
func (z *Zipfian) Prob(r uint64) float64 {
	return 1 / math.Pow(float64(r+1), z.theta) / z.zetan
}

// Next draws a rank.
func (z *Zipfian) Next(rng *rand.Rand) uint64 { return z.next(rng) }

func (z *Zipfian) next(rng *rand.Rand) uint64 {
	u := rng.Float64()
	uz := u * z.zetan
	if uz < 1 {
		return 0
	}
	if uz < z.half {
		return 1
	}
	r := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	if r >= z.n {
		r = z.n - 1
	}
	return r
}
