package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fulcrumdb/fulcrum/internal/hlc"
	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// List limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 10_000
)

// entryJSON is a key's value and metadata. Text goes in key/value; bytes
// that are not valid UTF-8 go base64-encoded in key_base64/value_base64.
type entryJSON struct {
	Namespace   string  `json:"namespace,omitempty"`
	Key         *string `json:"key,omitempty"`
	KeyBase64   string  `json:"key_base64,omitempty"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 string  `json:"value_base64,omitempty"`
	Version     uint64  `json:"version"`
	Created     uint64  `json:"created"`
	// Timestamp is the HLC time of the write as "wallnanos.logical"; a
	// string because wall nanoseconds overflow JSON numbers in JavaScript.
	Timestamp string `json:"timestamp"`
	// ExpireAtMs is the expiry in Unix ms, 0 for none; TTLMs the time left,
	// -1 for none (as Redis PTTL).
	ExpireAtMs int64 `json:"expire_at_ms"`
	TTLMs      int64 `json:"ttl_ms"`
}

// newEntry describes key's value v at nowMs; withValue adds the data.
func newEntry(ns string, key []byte, v kv.Value, nowMs int64, withValue bool) entryJSON {
	e := entryJSON{
		Namespace:  ns,
		Version:    v.Version,
		Created:    v.Created,
		Timestamp:  v.Timestamp.String(),
		ExpireAtMs: v.ExpireAt,
		TTLMs:      -1,
	}
	if v.ExpireAt != 0 {
		e.TTLMs = max(v.ExpireAt-nowMs, 0)
	}
	if utf8.Valid(key) {
		s := string(key)
		e.Key = &s
	} else {
		e.KeyBase64 = base64.StdEncoding.EncodeToString(key)
	}
	if withValue {
		if utf8.Valid(v.Data) {
			s := string(v.Data)
			e.Value = &s
		} else {
			e.ValueBase64 = base64.StdEncoding.EncodeToString(v.Data)
		}
	}
	return e
}

// setValueHeaders sets the headers that describe a stored value.
func setValueHeaders(w http.ResponseWriter, v kv.Value) {
	hd := w.Header()
	hd.Set("ETag", etag(v.Version))
	hd.Set("Fulcrum-Version", strconv.FormatUint(v.Version, 10))
	if v.ExpireAt != 0 {
		hd.Set("Fulcrum-Expire-At", strconv.FormatInt(v.ExpireAt, 10))
	}
}

// withWriteQuorum carries the request's w (how many replicas of an
// eventual namespace must acknowledge) in its context.
func withWriteQuorum(r *http.Request, q url.Values) (*http.Request, error) {
	if !q.Has("w") {
		return r, nil
	}
	w, err := strconv.Atoi(q.Get("w"))
	if err != nil || w < 1 {
		return r, kv.Errorf(kv.CodeInvalid, "w %q: want a number of replicas from 1", q.Get("w"))
	}
	return r.WithContext(kv.WithQuorum(r.Context(), kv.Quorum{W: w})), nil
}

// maxStalenessMs bounds ?max_staleness (as READONLY MAXSTALENESS over
// RESP): an hour behind is an outage, not a replica read.
const maxStalenessMs = 3_600_000

// withReplicaReads carries the request's replica-read choice in its
// context: ?replica (a replica of a replication=primary namespace may
// answer, whatever its lag) or ?max_staleness=ms (one that far behind at
// most; it implies ?replica).
func withReplicaReads(r *http.Request, q url.Values) (*http.Request, error) {
	replica, err := boolParam(q, "replica")
	if err != nil {
		return r, err
	}
	stale := time.Duration(-1)
	if q.Has("max_staleness") {
		s := q.Get("max_staleness")
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 || ms > maxStalenessMs {
			return r, kv.Errorf(kv.CodeInvalid, "max_staleness=%q: want milliseconds from 0 to %d", s, maxStalenessMs)
		}
		if q.Has("replica") && !replica {
			return r, kv.Errorf(kv.CodeInvalid, "max_staleness=%s with replica=%s: max_staleness is a bound on replica reads", s, q.Get("replica"))
		}
		replica, stale = true, time.Duration(ms)*time.Millisecond
	}
	if !replica {
		return r, nil
	}
	return r.WithContext(kv.WithReplicaReads(r.Context(), stale)), nil
}

// ContextHeader carries the causal context of an eventual or weak key:
// sent with every read of one, and accepted on a PUT or DELETE, which
// then replaces the siblings that read returned (without it, a write to a
// conflicts=siblings namespace is blind and adds a sibling).
const ContextHeader = "Fulcrum-Context"

// withCausalContext carries the request's Fulcrum-Context header, if any,
// in its context. A node that runs alone has no siblings and refuses one.
func (h *Handler) withCausalContext(r *http.Request) (*http.Request, error) {
	vals := r.Header.Values(ContextHeader)
	switch {
	case len(vals) == 0:
		return r, nil
	case len(vals) > 1:
		return r, kv.Errorf(kv.CodeInvalid, "%d %s headers: give the one a read returned", len(vals), ContextHeader)
	}
	if _, ok := h.opts.Store.(MetaReader); !ok {
		return r, kv.Errorf(kv.CodeInvalid, "%s: this node runs alone: its keys have one value each and no causal context", ContextHeader)
	}
	cc, err := kv.ParseCausalContext(vals[0])
	if err != nil {
		return r, err
	}
	return r.WithContext(kv.WithCausalContext(r.Context(), cc)), nil
}

// siblingJSON is one concurrent value of a key; text goes in value, other
// bytes base64-encoded in value_base64 (as in entryJSON).
type siblingJSON struct {
	Value       *string `json:"value,omitempty"`
	ValueBase64 string  `json:"value_base64,omitempty"`
	// Timestamp is the write's HLC time as "wallnanos.logical"; Writer
	// the node that coordinated it.
	Timestamp string `json:"timestamp"`
	Writer    uint64 `json:"writer"`
}

// siblingsJSON answers a read of a key with concurrent values (300
// Multiple Choices): every value, newest first, and the context a write
// passes back in Fulcrum-Context to replace them.
type siblingsJSON struct {
	Namespace string        `json:"namespace"`
	Key       *string       `json:"key,omitempty"`
	KeyBase64 string        `json:"key_base64,omitempty"`
	Siblings  []siblingJSON `json:"siblings"`
	Context   string        `json:"context"`
}

func newSiblings(ns string, key []byte, m *kv.ReadMeta) siblingsJSON {
	out := siblingsJSON{Namespace: ns, Siblings: make([]siblingJSON, len(m.Siblings)), Context: kv.FormatCausalContext(m.Context)}
	if utf8.Valid(key) {
		s := string(key)
		out.Key = &s
	} else {
		out.KeyBase64 = base64.StdEncoding.EncodeToString(key)
	}
	for i, sib := range m.Siblings {
		js := siblingJSON{Timestamp: hlc.Timestamp{WallNanos: sib.Timestamp, Logical: sib.Logical}.String(), Writer: sib.Writer}
		if utf8.Valid(sib.Value) {
			v := string(sib.Value)
			js.Value = &v
		} else {
			js.ValueBase64 = base64.StdEncoding.EncodeToString(sib.Value)
		}
		out.Siblings[i] = js
	}
	return out
}

// MetaReader is a store that can say what kind of answer a read is (a
// cluster's router).
type MetaReader interface {
	// GetMeta reads key from r replicas (0: the namespace's R).
	GetMeta(ctx context.Context, ns string, key []byte, r int) (kv.ReadMeta, error)
}

// read reads a key, and with a MetaReader also what kind of answer it is
// (meta is nil otherwise).
func (h *Handler) read(ctx context.Context, ns string, key []byte, r int) (kv.Value, bool, *kv.ReadMeta, error) {
	mr, ok := h.opts.Store.(MetaReader)
	if !ok {
		if r > 1 {
			return kv.Value{}, false, nil, kv.Errorf(kv.CodeInvalid, "r %d: this node runs alone and holds the only copy", r)
		}
		v, found, err := h.opts.Store.Get(ctx, ns, key)
		return v, found, nil, err
	}
	m, err := mr.GetMeta(ctx, ns, key, r)
	if err != nil {
		return kv.Value{}, false, nil, err
	}
	v := kv.Value{Data: m.Value, Version: m.Version, ExpireAt: m.ExpireAt, Timestamp: hlc.Timestamp{WallNanos: m.Timestamp, Logical: m.Logical}}
	return v, m.Found, &m, nil
}

// setStalenessHeaders says what a read is: for an eventual or weak one
// how many replicas answered and agreed on the newest value, the write's
// timestamp, how many read repairs it triggered, and its causal context;
// for a replication=primary one the answering replica's role, epoch and
// lag.
func setStalenessHeaders(w http.ResponseWriter, m *kv.ReadMeta) {
	hd := w.Header()
	hd.Set("Fulcrum-Consistency", m.Consistency)
	if m.Role != "" {
		// A replication=primary read: who answered, and how far behind
		// the primary it may be.
		hd.Set("Fulcrum-Role", m.Role)
		hd.Set("Fulcrum-Epoch", strconv.FormatUint(m.Epoch, 10))
		hd.Set("Fulcrum-Lag-Entries", strconv.FormatUint(m.LagEntries, 10))
		hd.Set("Fulcrum-Lag-Ms", strconv.FormatInt(m.Lag.Milliseconds(), 10))
		return
	}
	if m.Consistency != kv.ConsistencyEventual && m.Consistency != kv.ConsistencyWeak {
		return
	}
	hd.Set("Fulcrum-Timestamp", strconv.FormatInt(m.Timestamp, 10)+"."+strconv.FormatUint(uint64(m.Logical), 10))
	hd.Set("Fulcrum-Replicas-Answered", strconv.Itoa(m.Answered))
	hd.Set("Fulcrum-Replicas-Agreed", strconv.Itoa(m.Agreed))
	hd.Set("Fulcrum-Replicas-Required", strconv.Itoa(m.Required))
	hd.Set("Fulcrum-Read-Repairs", strconv.Itoa(m.Repaired))
	if m.Context != nil {
		hd.Set(ContextHeader, kv.FormatCausalContext(m.Context))
	}
}

func notFound(ns string, key []byte) error {
	return kv.Errorf(kv.CodeNotFound, "key %q not found in namespace %q", key, ns)
}

// getKey serves GET/HEAD /v1/namespaces/{ns}/keys/{key...}.
func (h *Handler) getKey(w http.ResponseWriter, r *http.Request) error {
	ns, key, err := h.target(r)
	if err != nil {
		return err
	}
	q, err := query(r, "format", "r", "replica", "max_staleness")
	if err != nil {
		return err
	}
	if r, err = withReplicaReads(r, q); err != nil {
		return err
	}
	asJSON, err := wantsJSON(r, q)
	if err != nil {
		return err
	}
	rq := 0
	if q.Has("r") {
		if rq, err = strconv.Atoi(q.Get("r")); err != nil || rq < 1 {
			return kv.Errorf(kv.CodeInvalid, "r %q: want a number of replicas from 1", q.Get("r"))
		}
	}
	v, ok, meta, err := h.read(r.Context(), ns, key, rq)
	if err != nil {
		return err
	}
	if meta != nil {
		setStalenessHeaders(w, meta)
	}
	if !ok {
		return notFound(ns, key)
	}
	if meta != nil && len(meta.Siblings) > 1 {
		// Concurrent values (a conflicts=siblings namespace): the client
		// chooses, and resolves them by writing with the context.
		writeJSON(w, http.StatusMultipleChoices, newSiblings(ns, key, meta))
		return nil
	}
	setValueHeaders(w, v)
	w.Header().Add("Vary", "Accept")
	if noneMatch(r.Header.Values("If-None-Match"), etag(v.Version)) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if asJSON {
		writeJSON(w, http.StatusOK, newEntry(ns, key, v, h.opts.Now().UnixMilli(), true))
		return nil
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(v.Data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(v.Data) // a write error means the client is gone
	return nil
}

// putBody is the JSON form of a PUT body.
type putBody struct {
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
	TTLMs       *int64  `json:"ttl_ms"`
}

// decodePutBody parses a JSON PUT body into the value and TTL (0 = none).
func decodePutBody(body []byte) (value []byte, ttlMs int64, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var pb putBody
	if err := dec.Decode(&pb); err != nil {
		return nil, 0, kv.Errorf(kv.CodeInvalid, "JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, 0, kv.Errorf(kv.CodeInvalid, "JSON body: data after the object")
	}
	switch {
	case pb.Value != nil && pb.ValueBase64 != nil:
		return nil, 0, kv.Errorf(kv.CodeInvalid, `JSON body: give "value" or "value_base64", not both`)
	case pb.Value != nil:
		value = []byte(*pb.Value)
	case pb.ValueBase64 != nil:
		value, err = base64.StdEncoding.DecodeString(*pb.ValueBase64)
		if err != nil {
			return nil, 0, kv.Errorf(kv.CodeInvalid, "JSON body: value_base64: %v", err)
		}
	default:
		return nil, 0, kv.Errorf(kv.CodeInvalid, `JSON body: "value" or "value_base64" is required`)
	}
	if pb.TTLMs != nil {
		if *pb.TTLMs < 1 {
			return nil, 0, kv.Errorf(kv.CodeInvalid, "JSON body: ttl_ms %d: must be at least 1", *pb.TTLMs)
		}
		ttlMs = *pb.TTLMs
	}
	return value, ttlMs, nil
}

// writeCond gathers a write's precondition from ?nx, ?xx, If-Match and
// If-None-Match; at most one may be given.
func writeCond(r *http.Request, params map[string]bool) (kv.Cond, uint64, error) {
	version, hasIfMatch, star, err := ifMatchVersion(r)
	if err != nil {
		return 0, 0, err
	}
	noneStar, err := ifNoneMatchAny(r)
	if err != nil {
		return 0, 0, err
	}
	var given []string
	cond := kv.CondNone
	if params["nx"] {
		given, cond = append(given, "nx"), kv.CondAbsent
	}
	if params["xx"] {
		given, cond = append(given, "xx"), kv.CondPresent
	}
	if noneStar {
		given, cond = append(given, "If-None-Match"), kv.CondAbsent
	}
	if hasIfMatch {
		given = append(given, "If-Match")
		cond = kv.CondVersion
		if star {
			cond = kv.CondPresent
		}
	}
	if len(given) > 1 {
		return 0, 0, kv.Errorf(kv.CodeInvalid, "conflicting conditions %s: give at most one", strings.Join(given, ", "))
	}
	return cond, version, nil
}

// putKey serves PUT /v1/namespaces/{ns}/keys/{key...}.
func (h *Handler) putKey(w http.ResponseWriter, r *http.Request) error {
	ns, key, err := h.target(r)
	if err != nil {
		return err
	}
	q, err := query(r, "ttl", "ttl_ms", "nx", "xx", "keepttl", "w")
	if err != nil {
		return err
	}
	if r, err = withWriteQuorum(r, q); err != nil {
		return err
	}
	if r, err = h.withCausalContext(r); err != nil {
		return err
	}
	flags := map[string]bool{}
	for _, name := range []string{"nx", "xx", "keepttl"} {
		if flags[name], err = boolParam(q, name); err != nil {
			return err
		}
	}
	op := kv.Op{Kind: kv.OpSet, Namespace: ns, Key: key, KeepTTL: flags["keepttl"]}
	if op.Cond, op.IfVersion, err = writeCond(r, flags); err != nil {
		return err
	}
	ttlMs, err := ttlParam(q)
	if err != nil {
		return err
	}
	if op.Value, ttlMs, err = h.putValue(w, r, ttlMs); err != nil {
		return err
	}
	if err := h.opts.Limits.CheckValue(len(op.Value)); err != nil {
		return err
	}
	if ttlMs != 0 && op.KeepTTL {
		return kv.Errorf(kv.CodeInvalid, "give a ttl or keepttl, not both")
	}
	nowMs := h.opts.Now().UnixMilli()
	if ttlMs != 0 {
		if op.ExpireAt, err = expireAt(nowMs, ttlMs); err != nil {
			return err
		}
	}
	res, err := h.apply(r, nowMs, op)
	if err != nil {
		return err
	}
	if !res.Applied || !res.Exists {
		return condFailed(op, res)
	}
	setValueHeaders(w, res.Cur)
	status := http.StatusOK
	if !res.PrevExists {
		status = http.StatusCreated
	}
	writeJSON(w, status, newEntry(ns, key, res.Cur, nowMs, false))
	return nil
}

// putValue reads a PUT's value: the raw body, or the "value" of a JSON
// body, whose ttl_ms must not clash with a TTL from the query.
func (h *Handler) putValue(w http.ResponseWriter, r *http.Request, queryTTL int64) ([]byte, int64, error) {
	if !isJSON(r) {
		// The body is the value: refuse an oversized one by its declared
		// length, with the value's limit in the message.
		if r.ContentLength > int64(h.opts.Limits.MaxValueSize) {
			return nil, 0, h.opts.Limits.CheckValue(int(min(r.ContentLength, math.MaxInt)))
		}
		body, err := h.readBody(w, r, min(h.opts.MaxBodySize, int64(h.opts.Limits.MaxValueSize)))
		return body, queryTTL, err
	}
	body, err := h.readBody(w, r, h.opts.MaxBodySize)
	if err != nil {
		return nil, 0, err
	}
	value, bodyTTL, err := decodePutBody(body)
	if err != nil {
		return nil, 0, err
	}
	if bodyTTL != 0 && queryTTL != 0 {
		return nil, 0, kv.Errorf(kv.CodeInvalid, "TTL given in both the query and the JSON body")
	}
	return value, max(bodyTTL, queryTTL), nil
}

// apply runs a one-op batch and returns its result, per-op error included.
func (h *Handler) apply(r *http.Request, nowMs int64, op kv.Op) (kv.Result, error) {
	res, err := h.opts.Store.Apply(r.Context(), kv.Batch{Ops: []kv.Op{op}, Now: nowMs})
	if err != nil {
		return kv.Result{}, err
	}
	if len(res) != 1 {
		return kv.Result{}, fmt.Errorf("store returned %d results for 1 op", len(res))
	}
	if res[0].Err != nil {
		return kv.Result{}, res[0].Err
	}
	return res[0], nil
}

// condFailed explains a write whose precondition did not hold.
func condFailed(op kv.Op, res kv.Result) error {
	switch {
	case op.Cond == kv.CondVersion && res.PrevExists:
		return kv.Errorf(kv.CodeConflict, "version mismatch: key is at version %d, If-Match wants %d", res.Prev.Version, op.IfVersion)
	case op.Cond == kv.CondVersion:
		return kv.Errorf(kv.CodeConflict, "key does not exist; If-Match wants version %d", op.IfVersion)
	case op.Cond == kv.CondAbsent && res.PrevExists:
		return kv.Errorf(kv.CodeConflict, "key exists at version %d", res.Prev.Version)
	case op.Cond == kv.CondPresent && !res.PrevExists:
		return kv.Errorf(kv.CodeConflict, "key does not exist")
	}
	return fmt.Errorf("store did not apply %s (applied=%t exists=%t) without a failed condition", op.Kind, res.Applied, res.Exists)
}

// deleteKey serves DELETE /v1/namespaces/{ns}/keys/{key...}. Deleting a
// missing key is 404 NOT_FOUND, like GET; If-Match is ignored then (RFC
// 9110 13.2.1: preconditions apply only where the answer would be 2xx).
func (h *Handler) deleteKey(w http.ResponseWriter, r *http.Request) error {
	ns, key, err := h.target(r)
	if err != nil {
		return err
	}
	q, err := query(r, "w")
	if err != nil {
		return err
	}
	if r, err = withWriteQuorum(r, q); err != nil {
		return err
	}
	if r, err = h.withCausalContext(r); err != nil {
		return err
	}
	if len(r.Header.Values("If-None-Match")) > 0 {
		return kv.Errorf(kv.CodeInvalid, "If-None-Match is not supported on DELETE")
	}
	version, hasIfMatch, star, err := ifMatchVersion(r)
	if err != nil {
		return err
	}
	op := kv.Op{Kind: kv.OpDelete, Namespace: ns, Key: key}
	if hasIfMatch && !star {
		op.Cond, op.IfVersion = kv.CondVersion, version
	}
	nowMs := h.opts.Now().UnixMilli()
	res, err := h.apply(r, nowMs, op)
	if err != nil {
		return err
	}
	if !res.PrevExists {
		return notFound(ns, key)
	}
	if !res.Applied {
		return condFailed(op, res)
	}
	writeJSON(w, http.StatusOK, deleteJSON{Deleted: true, Version: res.Prev.Version})
	return nil
}

// deleteJSON answers a DELETE; Version is the version that was deleted.
type deleteJSON struct {
	Deleted bool   `json:"deleted"`
	Version uint64 `json:"version"`
}

// listJSON answers a key listing. Keys not valid UTF-8 (written over RESP)
// cannot be JSON strings; they go base64-encoded in KeysBase64.
type listJSON struct {
	Namespace  string   `json:"namespace"`
	Keys       []string `json:"keys"`
	KeysBase64 []string `json:"keys_base64,omitempty"`
	Cursor     string   `json:"cursor"`
}

// listValuesJSON answers a key listing with values.
type listValuesJSON struct {
	Namespace string      `json:"namespace"`
	Entries   []entryJSON `json:"entries"`
	Cursor    string      `json:"cursor"`
}

// cursorMark leads every encoded cursor, so a cursor resuming after the
// empty key is not the empty string, which means "done".
const cursorMark = 'k'

func encodeCursor(next []byte) string {
	if next == nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(append([]byte{cursorMark}, next...))
}

func decodeCursor(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || b[0] != cursorMark {
		return nil, kv.Errorf(kv.CodeInvalid, "cursor %q was not returned by this API", s)
	}
	return b[1:], nil
}

// listKeys serves GET /v1/namespaces/{ns}/keys. A page may hold fewer
// than limit keys (expired keys count towards it); the listing is done
// when cursor is "".
func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) error {
	ns, err := namespace(r)
	if err != nil {
		return err
	}
	q, err := query(r, "prefix", "cursor", "limit", "values")
	if err != nil {
		return err
	}
	prefix := q.Get("prefix")
	if !utf8.ValidString(prefix) {
		return kv.Errorf(kv.CodeInvalid, "prefix is not valid UTF-8")
	}
	after, err := decodeCursor(q.Get("cursor"))
	if err != nil {
		return err
	}
	limit := DefaultListLimit
	if q.Has("limit") {
		s := q.Get("limit")
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			return kv.Errorf(kv.CodeInvalid, "limit=%q: want an integer from 1 to %d", s, MaxListLimit)
		}
		limit = n
	}
	values, err := boolParam(q, "values")
	if err != nil {
		return err
	}
	nowMs := h.opts.Now().UnixMilli()
	res, err := h.opts.Store.Scan(r.Context(), kv.ScanRequest{
		Namespace: ns, Prefix: []byte(prefix), After: after, Limit: limit, KeysOnly: !values, Now: nowMs,
	})
	if err != nil {
		return err
	}
	if values {
		out := listValuesJSON{Namespace: ns, Entries: make([]entryJSON, 0, len(res.Entries)), Cursor: encodeCursor(res.Next)}
		for _, e := range res.Entries {
			out.Entries = append(out.Entries, newEntry("", e.Key, e.Value, nowMs, true))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	out := listJSON{Namespace: ns, Keys: make([]string, 0, len(res.Entries)), Cursor: encodeCursor(res.Next)}
	for _, e := range res.Entries {
		if utf8.Valid(e.Key) {
			out.Keys = append(out.Keys, string(e.Key))
		} else {
			out.KeysBase64 = append(out.KeysBase64, base64.StdEncoding.EncodeToString(e.Key))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
