package resp

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/storage"
)

// client returns a go-redis client for ts speaking protocol proto (2 or 3).
func (ts *testServer) client(t testing.TB, proto int) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr:                     ts.addr,
		Protocol:                 proto,
		MaxRetries:               -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// do runs a raw command and returns its result and error.
func do(rdb *redis.Client, args ...any) (any, error) {
	return rdb.Do(context.Background(), args...).Result()
}

// check asserts that a raw command answers want (compared with %v).
func check(t *testing.T, rdb *redis.Client, want any, args ...any) {
	t.Helper()
	got, err := do(rdb, args...)
	if err != nil {
		t.Fatalf("%v: error %v, want %v", args, err, want)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%v = %v, want %v", args, got, want)
	}
}

// checkNil asserts that a raw command answers a null.
func checkNil(t *testing.T, rdb *redis.Client, args ...any) {
	t.Helper()
	got, err := do(rdb, args...)
	if err != redis.Nil {
		t.Fatalf("%v = %v, %v; want nil", args, got, err)
	}
}

// checkErr asserts that a raw command fails with exactly msg.
func checkErr(t *testing.T, rdb *redis.Client, msg string, args ...any) {
	t.Helper()
	got, err := do(rdb, args...)
	if err == nil || err.Error() != msg {
		t.Fatalf("%v = %v, %v; want error %q", args, got, err, msg)
	}
}

var ctx = context.Background()

func TestGetSet(t *testing.T) {
	ts := startServer(t, nil)
	for _, proto := range []int{2, 3} {
		t.Run("resp"+strconv.Itoa(proto), func(t *testing.T) {
			rdb := ts.client(t, proto)
			do(rdb, "flushdb")
			if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
				t.Fatalf("GET = %q, %v", got, err)
			}
			if _, err := rdb.Get(ctx, "missing").Result(); err != redis.Nil {
				t.Fatalf("GET missing: %v, want nil", err)
			}
			check(t, rdb, "OK", "set", "bin", "a\x00\r\nb")
			check(t, rdb, "a\x00\r\nb", "get", "bin")
			check(t, rdb, "OK", "set", "", "empty key")
			check(t, rdb, "empty key", "get", "")
			check(t, rdb, "OK", "set", "ev", "")
			check(t, rdb, "", "get", "ev")
		})
	}
}

func TestSetOptions(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.EnableFlush = true })
	rdb := ts.client(t, 2)
	now := ts.clock.Now().UnixMilli()

	checkNil(t, rdb, "set", "k", "v", "xx")
	check(t, rdb, "OK", "set", "k", "v", "nx")
	checkNil(t, rdb, "set", "k", "v2", "nx")
	check(t, rdb, "v", "get", "k")
	check(t, rdb, "OK", "set", "k", "v2", "XX")
	check(t, rdb, "v2", "set", "k", "v3", "get")
	checkNil(t, rdb, "set", "new", "x", "get")
	check(t, rdb, "v3", "set", "k", "v4", "nx", "get") // NX fails, GET still answers
	check(t, rdb, "v3", "get", "k")
	checkNil(t, rdb, "set", "nope", "x", "xx", "get")

	check(t, rdb, "OK", "set", "e", "v", "ex", 100)
	check(t, rdb, 100, "ttl", "e")
	check(t, rdb, "OK", "set", "e", "v", "px", 1500)
	check(t, rdb, 1500, "pttl", "e")
	check(t, rdb, "OK", "set", "e", "v", "exat", now/1000+50)
	check(t, rdb, now/1000+50, "expiretime", "e")
	check(t, rdb, "OK", "set", "e", "v", "pxat", now+7000)
	check(t, rdb, now+7000, "pexpiretime", "e")
	check(t, rdb, "OK", "set", "e", "v2", "keepttl")
	check(t, rdb, now+7000, "pexpiretime", "e")
	check(t, rdb, "OK", "set", "e", "v3")
	check(t, rdb, -1, "ttl", "e")
	check(t, rdb, "OK", "set", "e", "v", "ex", 10, "ex", 20) // repeated option: last wins
	check(t, rdb, 20, "ttl", "e")
	check(t, rdb, "OK", "set", "past", "v", "exat", 1) // already expired
	checkNil(t, rdb, "get", "past")

	for _, args := range [][]any{
		{"set", "k", "v", "nx", "xx"},
		{"set", "k", "v", "xx", "nx"},
		{"set", "k", "v", "ex", 10, "px", 100},
		{"set", "k", "v", "ex", 10, "keepttl"},
		{"set", "k", "v", "keepttl", "ex", 10},
		{"set", "k", "v", "ex"},
		{"set", "k", "v", "foo"},
		{"set", "k", "v", "persist"},
		{"set", "k", "v", "exat", 10, "pxat", 10},
	} {
		checkErr(t, rdb, "ERR syntax error", args...)
	}
	checkErr(t, rdb, "ERR value is not an integer or out of range", "set", "k", "v", "ex", "abc")
	checkErr(t, rdb, "ERR value is not an integer or out of range", "set", "k", "v", "ex", "1.5")
	checkErr(t, rdb, "ERR invalid expire time in 'set' command", "set", "k", "v", "ex", 0)
	checkErr(t, rdb, "ERR invalid expire time in 'set' command", "set", "k", "v", "px", -5)
	checkErr(t, rdb, "ERR invalid expire time in 'set' command", "set", "k", "v", "ex", "9223372036854775807")
	checkErr(t, rdb, "ERR invalid expire time in 'set' command", "set", "k", "v", "px", "9223372036854775807")
	checkErr(t, rdb, "ERR wrong number of arguments for 'set' command", "set", "k")
}

func TestSetVariants(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 3)

	check(t, rdb, 1, "setnx", "a", "1")
	check(t, rdb, 0, "setnx", "a", "2")
	check(t, rdb, "1", "get", "a")

	check(t, rdb, "OK", "setex", "b", 10, "x")
	check(t, rdb, 10, "ttl", "b")
	checkErr(t, rdb, "ERR invalid expire time in 'setex' command", "setex", "b", 0, "x")
	checkErr(t, rdb, "ERR value is not an integer or out of range", "setex", "b", "x", "x")
	check(t, rdb, "OK", "psetex", "c", 2500, "x")
	check(t, rdb, 2500, "pttl", "c")
	checkErr(t, rdb, "ERR invalid expire time in 'psetex' command", "psetex", "c", -1, "x")

	check(t, rdb, "x", "getset", "b", "y")
	check(t, rdb, -1, "ttl", "b") // GETSET drops the expiry
	checkNil(t, rdb, "getset", "fresh", "1")
	check(t, rdb, "y", "getdel", "b")
	checkNil(t, rdb, "getdel", "b")
	check(t, rdb, 0, "exists", "b")

	// MSET/MGET/MSETNX
	check(t, rdb, "OK", "mset", "m1", "1", "m2", "2")
	check(t, rdb, "[1 2 <nil> 1]", "mget", "m1", "m2", "nope", "m1")
	checkErr(t, rdb, "ERR wrong number of arguments for 'mset' command", "mset", "m1", "1", "m2")
	check(t, rdb, 0, "msetnx", "m1", "x", "m3", "3")
	check(t, rdb, 0, "exists", "m3")
	check(t, rdb, 1, "msetnx", "m3", "3", "m4", "4")
	check(t, rdb, "[3 4]", "mget", "m3", "m4")
	checkErr(t, rdb, "ERR wrong number of arguments for 'msetnx' command", "msetnx", "m5")
}

func TestGetEx(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)
	now := ts.clock.Now().UnixMilli()

	check(t, rdb, "OK", "set", "k", "v")
	check(t, rdb, "v", "getex", "k")
	check(t, rdb, -1, "ttl", "k")
	check(t, rdb, "v", "getex", "k", "ex", 100)
	check(t, rdb, 100, "ttl", "k")
	check(t, rdb, "v", "getex", "k", "px", 5000)
	check(t, rdb, 5000, "pttl", "k")
	check(t, rdb, "v", "getex", "k", "exat", now/1000+30)
	check(t, rdb, now/1000+30, "expiretime", "k")
	check(t, rdb, "v", "getex", "k", "pxat", now+4000)
	check(t, rdb, now+4000, "pexpiretime", "k")
	check(t, rdb, "v", "getex", "k", "persist")
	check(t, rdb, -1, "ttl", "k")
	check(t, rdb, "v", "getex", "k", "pxat", 1) // in the past: deleted, value returned
	check(t, rdb, 0, "exists", "k")

	checkNil(t, rdb, "getex", "missing", "ex", 10)
	checkNil(t, rdb, "getex", "missing", "ex", "abc") // Redis looks the key up first
	check(t, rdb, "OK", "set", "k", "v")
	checkErr(t, rdb, "ERR syntax error", "getex", "k", "persist", "ex", 10)
	checkErr(t, rdb, "ERR syntax error", "getex", "k", "ex", 10, "persist")
	checkErr(t, rdb, "ERR syntax error", "getex", "k", "nx")
	checkErr(t, rdb, "ERR syntax error", "getex", "k", "keepttl")
	checkErr(t, rdb, "ERR syntax error", "getex", "k", "ex")
	checkErr(t, rdb, "ERR invalid expire time in 'getex' command", "getex", "k", "ex", 0)
	checkErr(t, rdb, "ERR value is not an integer or out of range", "getex", "k", "ex", "abc")
}

func TestCounters(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 3)

	check(t, rdb, 1, "incr", "n")
	check(t, rdb, 11, "incrby", "n", 10)
	check(t, rdb, 10, "decr", "n")
	check(t, rdb, -5, "decrby", "n", 15)
	if got, err := rdb.Incr(ctx, "n").Result(); err != nil || got != -4 {
		t.Fatalf("INCR = %d, %v", got, err)
	}
	check(t, rdb, "OK", "set", "big", "9223372036854775807")
	checkErr(t, rdb, "ERR increment or decrement would overflow", "incr", "big")
	checkErr(t, rdb, "ERR decrement would overflow", "decrby", "n", "-9223372036854775808")
	checkErr(t, rdb, "ERR value is not an integer or out of range", "incrby", "n", "x")
	checkErr(t, rdb, "ERR value is not an integer or out of range", "incrby", "n", "1.5")
	check(t, rdb, "OK", "set", "s", "abc")
	checkErr(t, rdb, "ERR value is not an integer or out of range", "incr", "s")
	check(t, rdb, "abc", "get", "s")

	check(t, rdb, "OK", "set", "f", "10.5", "ex", 100)
	check(t, rdb, "11", "incrbyfloat", "f", "0.5")
	check(t, rdb, 100, "ttl", "f") // increments keep the expiry
	check(t, rdb, "8.5", "incrbyfloat", "f", "-2.5")
	check(t, rdb, "3", "incrbyfloat", "newf", "3")
	check(t, rdb, "19", "incrbyfloat", "newf", "0x10") // hex, as strtold reads it
	checkErr(t, rdb, "ERR value is not a valid float", "incrbyfloat", "f", "abc")
	checkErr(t, rdb, "ERR value is not a valid float", "incrbyfloat", "f", "nan")
	checkErr(t, rdb, "ERR value is not a valid float", "incrbyfloat", "s", "1")
	checkErr(t, rdb, "ERR increment would produce NaN or Infinity", "incrbyfloat", "f", "inf")
	checkErr(t, rdb, "ERR wrong number of arguments for 'incr' command", "incr")
}

func TestStringRanges(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)

	check(t, rdb, 5, "append", "s", "Hello")
	check(t, rdb, 11, "append", "s", " World")
	check(t, rdb, 11, "strlen", "s")
	check(t, rdb, 0, "strlen", "nope")
	for _, tc := range []struct {
		start, end any
		want       string
	}{
		{0, 3, "Hell"}, {-3, -1, "rld"}, {0, -1, "Hello World"}, {10, 100, "d"}, {5, 3, ""},
		{-1, -5, ""}, {-100, 2, "Hel"}, {20, 30, ""}, {-1, -1, "d"},
	} {
		check(t, rdb, tc.want, "getrange", "s", tc.start, tc.end)
	}
	check(t, rdb, "", "getrange", "nope", 0, -1)
	check(t, rdb, "Hell", "substr", "s", 0, 3)
	checkErr(t, rdb, "ERR value is not an integer or out of range", "getrange", "s", "a", 1)

	check(t, rdb, 11, "setrange", "s", 6, "Redis")
	check(t, rdb, "Hello Redis", "get", "s")
	check(t, rdb, 8, "setrange", "pad", 5, "abc")
	check(t, rdb, "\x00\x00\x00\x00\x00abc", "get", "pad")
	check(t, rdb, 0, "setrange", "none", 10, "")
	check(t, rdb, 0, "exists", "none")
	check(t, rdb, 11, "setrange", "s", 100, "") // empty value: only the length
	checkErr(t, rdb, "ERR offset is out of range", "setrange", "s", -1, "x")
	checkErr(t, rdb, "ERR value is not an integer or out of range", "setrange", "s", "x", "x")
	checkErr(t, rdb, "TOO_LARGE value is 2000001 bytes, limit is 1048576", "setrange", "s", 2000000, "x")
	checkErr(t, rdb, "ERR string exceeds maximum allowed size (proto-max-bulk-len)", "setrange", "s", 1<<40, "x")
}

func TestKeyCommands(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 3)

	check(t, rdb, "OK", "mset", "a", "1", "b", "2", "c", "3")
	check(t, rdb, 3, "exists", "a", "b", "nope", "a")
	check(t, rdb, 2, "touch", "a", "b", "nope")
	check(t, rdb, 2, "del", "a", "b", "a", "nope")
	check(t, rdb, 1, "unlink", "c")
	check(t, rdb, 0, "exists", "a", "b", "c")
	check(t, rdb, "OK", "set", "s", "x")
	check(t, rdb, "string", "type", "s")
	check(t, rdb, "none", "type", "nope")
	check(t, rdb, 1, "dbsize")
	checkErr(t, rdb, "ERR wrong number of arguments for 'del' command", "del")
}

func TestExpire(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)
	now := ts.clock.Now().UnixMilli()

	check(t, rdb, 0, "expire", "nope", 10)
	check(t, rdb, -2, "ttl", "nope")
	check(t, rdb, -2, "pttl", "nope")
	check(t, rdb, -2, "expiretime", "nope")
	check(t, rdb, "OK", "set", "k", "v")
	check(t, rdb, -1, "ttl", "k")
	check(t, rdb, -1, "pexpiretime", "k")
	check(t, rdb, 1, "expire", "k", 100)
	check(t, rdb, 100, "ttl", "k")
	check(t, rdb, 100000, "pttl", "k")
	check(t, rdb, now/1000+100, "expiretime", "k")
	check(t, rdb, 1, "pexpire", "k", 50500)
	check(t, rdb, 51, "ttl", "k") // rounded to nearest second
	check(t, rdb, 1, "expireat", "k", now/1000+200)
	check(t, rdb, 200, "ttl", "k")
	check(t, rdb, 1, "pexpireat", "k", now+300000)
	check(t, rdb, 300, "ttl", "k")

	// Options.
	check(t, rdb, 0, "expire", "k", 10, "nx")
	check(t, rdb, 1, "expire", "k", 400, "xx")
	check(t, rdb, 0, "expire", "k", 100, "gt")
	check(t, rdb, 1, "expire", "k", 500, "gt")
	check(t, rdb, 0, "expire", "k", 600, "lt")
	check(t, rdb, 1, "expire", "k", 450, "LT")
	check(t, rdb, 450, "ttl", "k")
	check(t, rdb, 1, "expire", "k", 440, "xx", "lt")
	check(t, rdb, 1, "expire", "k", 460, "xx", "gt")
	check(t, rdb, 1, "persist", "k")
	check(t, rdb, 0, "persist", "k")
	check(t, rdb, 0, "expire", "k", 10, "xx")
	check(t, rdb, 0, "expire", "k", 10, "gt") // no expiry counts as infinite
	check(t, rdb, 0, "expire", "k", 10, "xx", "lt")
	check(t, rdb, 1, "expire", "k", 10, "lt")
	check(t, rdb, 0, "persist", "nope")
	check(t, rdb, 1, "persist", "k")
	check(t, rdb, 1, "expire", "k", 10, "nx", "NX")

	checkErr(t, rdb, "ERR NX and XX, GT or LT options at the same time are not compatible", "expire", "k", 10, "nx", "xx")
	checkErr(t, rdb, "ERR NX and XX, GT or LT options at the same time are not compatible", "expire", "k", 10, "gt", "nx")
	checkErr(t, rdb, "ERR GT and LT options at the same time are not compatible", "expire", "k", 10, "gt", "lt")
	checkErr(t, rdb, "ERR Unsupported option foo", "expire", "k", 10, "foo")
	checkErr(t, rdb, "ERR value is not an integer or out of range", "expire", "k", "ten")
	checkErr(t, rdb, "ERR invalid expire time in 'expire' command", "expire", "k", "9223372036854775807")
	checkErr(t, rdb, "ERR invalid expire time in 'pexpire' command", "pexpire", "k", "9223372036854775807")
	checkErr(t, rdb, "ERR wrong number of arguments for 'expire' command", "expire", "k")

	// A time in the past deletes the key.
	check(t, rdb, 1, "expire", "k", -1)
	check(t, rdb, 0, "exists", "k")
	check(t, rdb, "OK", "set", "k", "v")
	check(t, rdb, 1, "pexpireat", "k", 1)
	checkNil(t, rdb, "get", "k")
}

func TestTTLWithClock(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 3)

	check(t, rdb, "OK", "set", "k", "v", "ex", 100)
	ts.clock.Advance(30 * time.Second)
	check(t, rdb, 70, "ttl", "k")
	check(t, rdb, 70000, "pttl", "k")
	ts.clock.Advance(69*time.Second + 400*time.Millisecond)
	check(t, rdb, 1, "ttl", "k") // 600ms rounds up
	check(t, rdb, 600, "pttl", "k")
	ts.clock.Advance(600 * time.Millisecond)
	checkNil(t, rdb, "get", "k")
	check(t, rdb, -2, "ttl", "k")
	check(t, rdb, 0, "exists", "k")

	// SET ... PX then advance past it; INCR after expiry starts from zero.
	check(t, rdb, "OK", "set", "n", "41", "px", 10)
	check(t, rdb, 42, "incr", "n")
	check(t, rdb, 10, "pttl", "n")
	ts.clock.Advance(10 * time.Millisecond)
	check(t, rdb, 1, "incr", "n")
	check(t, rdb, -1, "pttl", "n")
}

func TestScan(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)
	want := map[string]bool{}
	pipe := rdb.Pipeline()
	for i := 0; i < 250; i++ {
		k := fmt.Sprintf("key:%03d", i)
		want[k] = true
		pipe.Set(ctx, k, i, 0)
	}
	pipe.Set(ctx, "other", 1, 0)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	// Full iteration with go-redis's typed SCAN, then with MATCH.
	seen := map[string]int{}
	var cursor uint64
	calls := 0
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "key:*", 20).Result()
		if err != nil {
			t.Fatal(err)
		}
		calls++
		for _, k := range keys {
			seen[k]++
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if len(seen) != 250 {
		t.Fatalf("SCAN MATCH key:* saw %d keys, want 250", len(seen))
	}
	for k, n := range seen {
		if n != 1 || !want[k] {
			t.Fatalf("key %q seen %d times", k, n)
		}
	}
	if calls < 250/20 {
		t.Fatalf("COUNT 20 took only %d calls", calls)
	}
	iter := rdb.Scan(ctx, 0, "", 0).Iterator()
	n := 0
	for iter.Next(ctx) {
		n++
	}
	if iter.Err() != nil || n != 251 {
		t.Fatalf("iterator saw %d keys, err %v; want 251", n, iter.Err())
	}
	keys, _, err := rdb.Scan(ctx, 0, "key:1[0-1]?", 1000).Result()
	if err != nil || len(keys) != 20 {
		t.Fatalf("SCAN MATCH key:1[0-1]? = %d keys, %v; want 20", len(keys), err)
	}
	keys, next, err := rdb.ScanType(ctx, 0, "", 1000, "hash").Result()
	if err != nil || len(keys) != 0 || next != 0 {
		t.Fatalf("SCAN TYPE hash = %v, %d, %v", keys, next, err)
	}
	keys, _, err = rdb.ScanType(ctx, 0, "", 1000, "string").Result()
	if err != nil || len(keys) != 251 {
		t.Fatalf("SCAN TYPE string = %d keys, %v", len(keys), err)
	}

	// A cursor is stable: the same page again, from another connection.
	_, c1, err := rdb.Scan(ctx, 0, "", 10).Result()
	if err != nil || c1 == 0 {
		t.Fatalf("first page: cursor %d, %v", c1, err)
	}
	page1, _, _ := rdb.Scan(ctx, c1, "", 10).Result()
	other := ts.client(t, 3)
	page2, _, err := other.Scan(ctx, c1, "", 10).Result()
	if err != nil || strings.Join(page1, ",") != strings.Join(page2, ",") || len(page1) != 10 {
		t.Fatalf("same cursor gave %v then %v (%v)", page1, page2, err)
	}

	checkErr(t, rdb, "ERR invalid cursor", "scan", "abc")
	checkErr(t, rdb, "ERR invalid cursor", "scan", "-1")
	checkErr(t, rdb, "ERR invalid cursor", "scan", "12345")
	checkErr(t, rdb, "ERR syntax error", "scan", 0, "count", 0)
	checkErr(t, rdb, "ERR syntax error", "scan", 0, "count")
	checkErr(t, rdb, "ERR syntax error", "scan", 0, "foo", "bar")
	checkErr(t, rdb, "ERR value is not an integer or out of range", "scan", 0, "count", "x")
	// A cursor belongs to its namespace.
	check(t, rdb, "OK", "namespace", "elsewhere")
	checkErr(t, rdb, "ERR invalid cursor", "scan", c1)
}

func TestScanCursorEviction(t *testing.T) {
	clock := time.Unix(1000, 0)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	tab := newCursorTable(3, time.Minute, now)
	ids := []uint64{tab.put("ns", []byte("a")), tab.put("ns", []byte("b")), tab.put("ns", []byte("c"))}
	if after, ok := tab.get(ids[0], "ns"); !ok || string(after) != "a" {
		t.Fatalf("get = %q, %v", after, ok)
	}
	tab.put("ns", []byte("d")) // evicts the least recently used: ids[1]
	if _, ok := tab.get(ids[1], "ns"); ok {
		t.Fatal("LRU cursor survived eviction")
	}
	if _, ok := tab.get(ids[0], "other"); ok {
		t.Fatal("cursor served another namespace")
	}
	mu.Lock()
	clock = clock.Add(2 * time.Minute)
	mu.Unlock()
	if _, ok := tab.get(ids[0], "ns"); ok {
		t.Fatal("idle cursor did not expire")
	}
	if n := tab.len(); n != 0 {
		t.Fatalf("%d cursors left after expiry", n)
	}
}

// The same position reuses its cursor, and the table's resume keys stay
// within a byte budget however many large-key pages are scanned.
func TestScanCursorsReusedAndBounded(t *testing.T) {
	now := func() time.Time { return time.Unix(1000, 0) }
	tab := newCursorTable(1_000_000, time.Hour, now)
	a := tab.put("ns", []byte("k"))
	if b := tab.put("ns", []byte("k")); b != a {
		t.Fatalf("same position got cursors %d and %d, want one", a, b)
	}
	if c := tab.put("other", []byte("k")); c == a {
		t.Fatal("another namespace's position shared a cursor")
	}
	big := make([]byte, 16<<10)
	for i := 0; i < 2*maxCursorBytes/len(big); i++ {
		big[0], big[1], big[2] = byte(i), byte(i>>8), byte(i>>16)
		tab.put("ns", big)
	}
	tab.mu.Lock()
	bytes := tab.mu.bytes
	tab.mu.Unlock()
	if bytes > maxCursorBytes {
		t.Fatalf("cursor table holds %d bytes of keys, budget %d", bytes, maxCursorBytes)
	}
}

// An error answered while writes are queued is counted under its code.
func TestErrorCodeCountedAfterQueuedWrites(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 1)
	pipe := rdb.Pipeline()
	pipe.Set(ctx, "k", "v", 0)
	pipe.Do(ctx, "nosuchcommand")
	_, _ = pipe.Exec(ctx)
	mfs, err := ts.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "fulcrum_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "ERR" && m.GetCounter().GetValue() > 0 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Fatal("the unknown command after a queued SET was not counted as an ERR result")
	}
}

func TestKeys(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.MaxKeysCommand = 5 })
	rdb := ts.client(t, 2)
	check(t, rdb, "OK", "mset", "user:1", "a", "user:2", "b", "item:1", "c", "h?llo", "d")
	got, err := rdb.Keys(ctx, "user:*").Result()
	if err != nil || strings.Join(got, ",") != "user:1,user:2" {
		t.Fatalf("KEYS user:* = %v, %v", got, err)
	}
	check(t, rdb, "[h?llo]", "keys", "h\\?llo")
	check(t, rdb, "[]", "keys", "nomatch*")
	check(t, rdb, "[item:1]", "keys", "item:1")
	check(t, rdb, "OK", "mset", "x1", "1", "x2", "2")
	checkErr(t, rdb, "ERR KEYS refused: namespace 'default' holds 6 keys, more than the limit of 5; iterate with SCAN instead", "keys", "*")
}

func TestRandomKey(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)
	checkNil(t, rdb, "randomkey")
	check(t, rdb, "OK", "set", "only", "1")
	for i := 0; i < 20; i++ {
		check(t, rdb, "only", "randomkey")
	}
	check(t, rdb, "OK", "mset", "a", "1", "zzz", "2")
	for i := 0; i < 20; i++ {
		k, err := rdb.RandomKey(ctx).Result()
		if err != nil || (k != "a" && k != "only" && k != "zzz") {
			t.Fatalf("RANDOMKEY = %q, %v", k, err)
		}
	}
}

func TestFlush(t *testing.T) {
	t.Run("disabled", func(t *testing.T) {
		ts := startServer(t, nil)
		rdb := ts.client(t, 2)
		check(t, rdb, "OK", "set", "k", "v")
		checkErr(t, rdb, "DISABLED FLUSHDB is disabled on this server; enable flush commands in Fulcrum's configuration to allow it", "flushdb")
		checkErr(t, rdb, "DISABLED FLUSHALL is disabled on this server; enable flush commands in Fulcrum's configuration to allow it", "flushall")
		checkErr(t, rdb, "ERR syntax error", "flushdb", "later")
		check(t, rdb, "v", "get", "k")
	})
	t.Run("enabled", func(t *testing.T) {
		ts := startServer(t, func(o *Options) { o.EnableFlush = true })
		rdb := ts.client(t, 2)
		check(t, rdb, "OK", "mset", "a", "1", "b", "2")
		check(t, rdb, "OK", "namespace", "other")
		check(t, rdb, "OK", "set", "c", "3")
		check(t, rdb, "OK", "flushdb", "async")
		check(t, rdb, 0, "dbsize")
		check(t, rdb, "OK", "namespace", "default")
		check(t, rdb, 2, "dbsize")
		check(t, rdb, "OK", "namespace", "other")
		check(t, rdb, "OK", "set", "c", "3")
		check(t, rdb, "OK", "flushall", "SYNC")
		check(t, rdb, 0, "dbsize")
		check(t, rdb, "OK", "namespace", "default")
		check(t, rdb, 0, "dbsize")
		checkErr(t, rdb, "ERR syntax error", "flushall", "async", "sync")
	})
}

func TestNamespaces(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)
	other := ts.client(t, 2)
	check(t, rdb, "default", "namespace")
	check(t, rdb, "OK", "set", "k", "default-value")
	rdb2 := redis.NewClient(&redis.Options{
		Addr: ts.addr, Protocol: 2, MaxRetries: -1, PoolSize: 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.Do(ctx, "namespace", "tenant-a").Err()
		},
	})
	defer rdb2.Close()
	check(t, rdb2, "tenant-a", "namespace")
	checkNil(t, rdb2, "get", "k")
	check(t, rdb2, "OK", "set", "k", "tenant-value")
	check(t, rdb2, 1, "dbsize")
	check(t, other, "default-value", "get", "k")
	checkErr(t, rdb, "INVALID namespace name \"a/b\": character '/' not allowed (use A-Z a-z 0-9 _ . -)", "namespace", "a/b")
	checkErr(t, rdb, "ERR wrong number of arguments for 'namespace' command", "namespace", "a", "b")

	info, err := rdb.Info(ctx, "keyspace").Result()
	if err != nil || !strings.Contains(info, "db0:keys=1,expires=0,avg_ttl=0\r\n") ||
		!strings.Contains(info, "ns_tenant-a:keys=1,expires=0,avg_ttl=0\r\n") ||
		!strings.Contains(info, "ns_default:keys=1,expires=0,avg_ttl=0\r\n") {
		t.Fatalf("INFO keyspace = %q, %v", info, err)
	}
}

func TestConnectionCommands(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)

	check(t, rdb, "PONG", "ping")
	check(t, rdb, "hi", "ping", "hi")
	checkErr(t, rdb, "ERR wrong number of arguments for 'ping' command", "ping", "a", "b")
	check(t, rdb, "hello", "echo", "hello")
	checkErr(t, rdb, "ERR wrong number of arguments for 'echo' command", "echo")
	check(t, rdb, "OK", "select", 0)
	checkErr(t, rdb, "ERR DB index is out of range", "select", 1)
	checkErr(t, rdb, "ERR value is not an integer or out of range", "select", "x")
	checkErr(t, rdb, "ERR value is out of range, value must between -2147483648 and 2147483647", "select", "99999999999")
	checkErr(t, rdb, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?", "auth", "pw")
	check(t, rdb, "OK", "auth", "default", "anything")
	checkErr(t, rdb, "WRONGPASS invalid username-password pair or user is disabled.", "auth", "bob", "pw")
	checkErr(t, rdb, "ERR syntax error", "auth", "a", "b", "c")

	tm, err := rdb.Time(ctx).Result()
	if err != nil || !tm.Equal(ts.clock.Now()) {
		t.Fatalf("TIME = %v, %v; want %v", tm, err, ts.clock.Now())
	}

	// CLIENT
	id, err := rdb.ClientID(ctx).Result()
	if err != nil || id <= 0 {
		t.Fatalf("CLIENT ID = %d, %v", id, err)
	}
	conn := rdb.Conn()
	defer conn.Close()
	if _, err := conn.ClientGetName(ctx).Result(); err != redis.Nil {
		t.Fatalf("CLIENT GETNAME on an unnamed client: %v, want nil", err)
	}
	if err := conn.ClientSetName(ctx, "worker-1").Err(); err != nil {
		t.Fatal(err)
	}
	if name, err := conn.ClientGetName(ctx).Result(); err != nil || name != "worker-1" {
		t.Fatalf("CLIENT GETNAME = %q, %v", name, err)
	}
	if err := conn.Do(ctx, "client", "setname", "a b").Err(); err == nil ||
		err.Error() != "ERR Client names cannot contain spaces, newlines or special characters." {
		t.Fatalf("CLIENT SETNAME 'a b': %v", err)
	}
	if err := conn.Do(ctx, "client", "setinfo", "lib-name", "mylib").Err(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Do(ctx, "client", "setinfo", "lib-ver", "1.2").Err(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Do(ctx, "client", "setinfo", "color", "red").Err(); err == nil || err.Error() != "ERR Unrecognized option 'color'" {
		t.Fatalf("CLIENT SETINFO color: %v", err)
	}
	list, err := rdb.ClientList(ctx).Result()
	if err != nil || !strings.Contains(list, "name=worker-1 ") || !strings.Contains(list, "lib-name=mylib lib-ver=1.2") || !strings.Contains(list, "cmd=client|list") {
		t.Fatalf("CLIENT LIST = %q, %v", list, err)
	}
	info, err := conn.ClientInfo(ctx).Result()
	if err != nil || info.Name != "worker-1" || info.LibName != "mylib" || info.ID <= 0 {
		t.Fatalf("CLIENT INFO = %+v, %v", info, err)
	}
	checkErr(t, rdb, "ERR unknown subcommand 'foo'. Try CLIENT HELP.", "client", "foo")
	checkErr(t, rdb, "ERR wrong number of arguments for 'client|setname' command", "client", "setname")
	checkErr(t, rdb, "ERR wrong number of arguments for 'client' command", "client")
	if got, err := do(rdb, "client", "help"); err != nil || len(got.([]any)) < 4 {
		t.Fatalf("CLIENT HELP = %v, %v", got, err)
	}
}

func TestHello(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)
	conn := rdb.Conn()
	defer conn.Close()

	got, err := conn.Do(ctx, "hello").Result()
	if err != nil {
		t.Fatal(err)
	}
	fields := got.([]any) // RESP2: a flat array
	if len(fields) != 14 || fields[0] != "server" || fields[4] != "proto" || fields[5] != int64(2) {
		t.Fatalf("HELLO = %v", fields)
	}
	m, err := conn.Do(ctx, "hello", 3, "auth", "default", "pw", "setname", "h3").Result()
	if err != nil {
		t.Fatal(err)
	}
	hm, ok := m.(map[any]any) // go-redis reads a RESP3 map
	if !ok || hm["proto"] != int64(3) || hm["mode"] != "standalone" || hm["role"] != "master" || hm["version"] != "test" {
		t.Fatalf("HELLO 3 = %#v", m)
	}
	if name, _ := conn.ClientGetName(ctx).Result(); name != "h3" {
		t.Fatalf("HELLO SETNAME: name %q", name)
	}
	// RESP3 nulls and maps on this connection now.
	if v, err := conn.Do(ctx, "get", "missing").Result(); err != redis.Nil {
		t.Fatalf("GET missing in RESP3 = %v, %v", v, err)
	}
	for _, tc := range []struct {
		args []any
		msg  string
	}{
		{[]any{"hello", 4}, "NOPROTO unsupported protocol version"},
		{[]any{"hello", 1}, "NOPROTO unsupported protocol version"},
		{[]any{"hello", "x"}, "ERR Protocol version is not an integer or out of range"},
		{[]any{"hello", 3, "foo"}, "ERR Syntax error in HELLO option 'foo'"},
		{[]any{"hello", 3, "auth", "u"}, "ERR Syntax error in HELLO option 'auth'"},
		{[]any{"hello", 3, "auth", "bob", "pw"}, "WRONGPASS invalid username-password pair or user is disabled."},
		{[]any{"hello", 3, "setname", "a b"}, "ERR Client names cannot contain spaces, newlines or special characters."},
	} {
		if err := conn.Do(ctx, tc.args...).Err(); err == nil || err.Error() != tc.msg {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.msg)
		}
	}
}

func TestRESP3Client(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.ConfigValues = map[string]string{"appendonly": "yes"} })
	rdb := ts.client(t, 3)
	cfg, err := rdb.ConfigGet(ctx, "*max*").Result()
	if err != nil || cfg["maxmemory"] != "0" || cfg["maxclients"] != "10000" || len(cfg) != 3 {
		t.Fatalf("CONFIG GET *max* = %v, %v", cfg, err)
	}
	cfg, err = rdb.ConfigGet(ctx, "APPENDONLY").Result()
	if err != nil || cfg["appendonly"] != "yes" {
		t.Fatalf("CONFIG GET APPENDONLY = %v, %v", cfg, err)
	}
	raw, err := do(rdb, "config", "get", "save", "databases")
	if m, ok := raw.(map[any]any); err != nil || !ok || m["save"] != "" || m["databases"] != "1" {
		t.Fatalf("CONFIG GET save databases = %#v, %v", raw, err)
	}
	info, err := rdb.Info(ctx).Result()
	if err != nil || !strings.HasPrefix(info, "# Server\r\n") || !strings.Contains(info, "redis_version:") {
		t.Fatalf("INFO in RESP3 = %q, %v", info, err)
	}
	if v, err := do(rdb, "incrbyfloat", "f", "1.5"); err != nil || v != "1.5" {
		t.Fatalf("INCRBYFLOAT in RESP3 = %#v, %v", v, err)
	}
}

func TestConfig(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)
	cfg, err := rdb.ConfigGet(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"save": "", "appendonly": "no", "maxmemory": "0", "databases": "1",
		"proto-max-bulk-len": "4194304"} {
		if got, ok := cfg[k]; !ok || got != v {
			t.Errorf("CONFIG GET %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	check(t, rdb, "[]", "config", "get", "nonexistent")
	checkErr(t, rdb, "ERR CONFIG SET is not supported by Fulcrum; change the server's configuration and restart it", "config", "set", "maxmemory", "1")
	check(t, rdb, "OK", "config", "resetstat")
	checkErr(t, rdb, "ERR unknown subcommand 'foo'. Try CONFIG HELP.", "config", "foo")
	checkErr(t, rdb, "ERR wrong number of arguments for 'config|get' command", "config", "get")
}

func TestInfo(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.ExtraInfo = []InfoSection{{Name: "Persistence", Fields: func() []InfoField {
			return []InfoField{{"aof_enabled", "1"}, {"fulcrum_sync", "always"}}
		}}}
	})
	rdb := ts.client(t, 2)
	check(t, rdb, "OK", "set", "k", "v", "ex", 10)
	info, err := rdb.Info(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Server\r\n", "redis_version:" + RedisVersion + "\r\n", "fulcrum_version:test\r\n",
		"\r\n\r\n# Clients\r\n", "connected_clients:1\r\n", "# Stats\r\n", "total_commands_processed:",
		"# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=0\r\n", "# Persistence\r\naof_enabled:1\r\nfulcrum_sync:always\r\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO lacks %q:\n%s", want, info)
		}
	}
	only, err := rdb.Info(ctx, "persistence", "CLIENTS").Result()
	if err != nil || strings.Contains(only, "# Server") || !strings.Contains(only, "# Clients") || !strings.Contains(only, "# Persistence") {
		t.Fatalf("INFO persistence clients = %q, %v", only, err)
	}
	if none, err := rdb.Info(ctx, "nosuch").Result(); err != nil || none != "" {
		t.Fatalf("INFO nosuch = %q, %v", none, err)
	}
}

func TestCommandCommand(t *testing.T) {
	ts := startServer(t, nil)
	for _, proto := range []int{2, 3} {
		rdb := ts.client(t, proto)
		n, err := do(rdb, "command", "count")
		if err != nil || n.(int64) < 50 {
			t.Fatalf("COMMAND COUNT = %v, %v", n, err)
		}
		infos, err := rdb.Command(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		get := infos["get"]
		if get == nil || get.Arity != 2 || get.FirstKeyPos != 1 || get.LastKeyPos != 1 || get.StepCount != 1 ||
			!get.ReadOnly || len(infos) != int(n.(int64)) {
			t.Fatalf("COMMAND get = %+v (of %d)", get, len(infos))
		}
		mset := infos["mset"]
		if mset == nil || mset.Arity != -3 || mset.LastKeyPos != -1 || mset.StepCount != 2 {
			t.Fatalf("COMMAND mset = %+v", mset)
		}
		one, err := do(rdb, "command", "info", "SET", "nosuch")
		if arr, ok := one.([]any); err != nil || !ok || len(arr) != 2 || arr[1] != nil ||
			fmt.Sprint(arr[0].([]any)[:2]) != "[set -3]" {
			t.Fatalf("COMMAND INFO set nosuch = %v, %v", one, err)
		}
		docs, err := do(rdb, "command", "docs", "get")
		if err != nil || !strings.Contains(fmt.Sprint(docs), "Get the value of a key") {
			t.Fatalf("COMMAND DOCS get = %v, %v", docs, err)
		}
		list, err := rdb.CommandList(ctx, nil).Result()
		if err != nil || len(list) != int(n.(int64)) {
			t.Fatalf("COMMAND LIST = %d names, %v", len(list), err)
		}
		checkErr(t, rdb, "ERR unknown subcommand 'foo'. Try COMMAND HELP.", "command", "foo")
	}
}

func TestErrorTexts(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)
	checkErr(t, rdb, "ERR unknown command 'foo', with args beginning with: 'a' 'b' ", "foo", "a", "b")
	checkErr(t, rdb, "ERR unknown command 'foo', with args beginning with: ", "foo")
	long := strings.Repeat("x", 200)
	checkErr(t, rdb, "ERR unknown command '"+strings.Repeat("x", 128)+"', with args beginning with: '"+strings.Repeat("y", 128)+"' ",
		long, strings.Repeat("y", 200), "z")
	checkErr(t, rdb, "ERR unknown command 'foo', with args beginning with: 'a  b' ", "foo", "a\r\nb")
	checkErr(t, rdb, "ERR wrong number of arguments for 'get' command", "GET")
	checkErr(t, rdb, "ERR wrong number of arguments for 'get' command", "get", "a", "b")
	checkErr(t, rdb, "ERR wrong number of arguments for 'getrange' command", "getrange", "a", 1)
	checkErr(t, rdb, "ERR syntax error", "set", "a", "b", "c")
}

func TestOversizeValues(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.Limits = kv.Limits{MaxKeySize: 10, MaxValueSize: 100}
		o.MaxFrameSize = 1000
	}, func(so *storage.Options) { so.Limits = kv.Limits{MaxKeySize: 10, MaxValueSize: 100} })
	rdb := ts.client(t, 2)
	big := strings.Repeat("v", 101)
	checkErr(t, rdb, "TOO_LARGE value is 101 bytes, limit is 100", "set", "k", big)
	checkErr(t, rdb, "TOO_LARGE key is 11 bytes, limit is 10", "set", strings.Repeat("k", 11), "v")
	checkErr(t, rdb, "TOO_LARGE value is 101 bytes, limit is 100", "mset", "a", "1", "k", big)
	checkErr(t, rdb, "TOO_LARGE value is 101 bytes, limit is 100", "getset", "k", big)
	checkErr(t, rdb, "TOO_LARGE value is 101 bytes, limit is 100", "setex", "k", 10, big)
	checkErr(t, rdb, "TOO_LARGE value is 101 bytes, limit is 100", "append", "k", big)
	checkErr(t, rdb, "TOO_LARGE value is 101 bytes, limit is 100", "setrange", "k", 1, strings.Repeat("v", 100))
	check(t, rdb, 0, "exists", "a")
	// Appending past the limit is refused by the store.
	check(t, rdb, "OK", "set", "k", strings.Repeat("v", 60))
	checkErr(t, rdb, "TOO_LARGE value is 120 bytes, limit is 100", "append", "k", strings.Repeat("w", 60))
	check(t, rdb, 60, "strlen", "k")
	// The connection keeps serving.
	check(t, rdb, "PONG", "ping")
	// A frame over MaxFrameSize closes the connection, after the error.
	raw := dialRaw(t, ts.addr)
	raw.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\n")
	if got := raw.reply(); got != "-TOO_LARGE frame of 2000 bytes exceeds limit 1000\r\n" {
		t.Fatalf("got %q", got)
	}
	raw.expectClosed()
}

func TestPipelineBatching(t *testing.T) {
	var applies atomic.Int64
	ts := startServer(t, func(o *Options) {
		o.Store = &countingStore{Store: o.Store, applies: &applies}
	})
	rdb := ts.client(t, 2)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	pipe := rdb.Pipeline()
	var sets []*redis.StatusCmd
	for i := 0; i < 100; i++ {
		sets = append(sets, pipe.Set(ctx, "k"+strconv.Itoa(i), i, 0))
	}
	incr := pipe.Incr(ctx, "k5")
	get := pipe.Get(ctx, "k5") // a read: the writes before it are applied first
	del := pipe.Del(ctx, "k1", "k2", "k2", "nope")
	nx := pipe.SetNX(ctx, "k3", "x", 0)
	bad := pipe.Do(ctx, "set", "k4", "v", "ex", "0")
	exp := pipe.Expire(ctx, "k6", time.Minute)
	get2 := pipe.Get(ctx, "k1")
	before := applies.Load()
	if _, err := pipe.Exec(ctx); err != nil && !strings.Contains(err.Error(), "invalid expire") {
		t.Fatal(err)
	}
	for _, s := range sets {
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
	}
	if incr.Val() != 6 || get.Val() != "6" || del.Val() != 2 || nx.Val() || exp.Val() != true || get2.Err() != redis.Nil {
		t.Fatalf("incr %v get %v del %v setnx %v expire %v get2 %v", incr.Val(), get.Val(), del.Val(), nx.Val(), exp.Val(), get2.Err())
	}
	if bad.Err() == nil || bad.Err().Error() != "ERR invalid expire time in 'set' command" {
		t.Fatalf("bad SET: %v", bad.Err())
	}
	// 101 writes before the GET, then DEL+SETNX before the error, then
	// EXPIRE: the pipeline arrives in one or a few reads, so far fewer
	// Apply calls than commands.
	if n := applies.Load() - before; n > 10 {
		t.Fatalf("%d Apply calls for a pipeline of 106 commands", n)
	}
}

// countingStore counts Apply calls.
type countingStore struct {
	Store
	applies *atomic.Int64
}

func (s *countingStore) Apply(ctx context.Context, b kv.Batch) ([]kv.Result, error) {
	s.applies.Add(1)
	return s.Store.Apply(ctx, b)
}

func TestConcurrentClients(t *testing.T) {
	ts := startServer(t, nil)
	const clients, ops = 40, 100
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rdb := redis.NewClient(&redis.Options{Addr: ts.addr, PoolSize: 1, MaxRetries: -1,
				MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
			defer rdb.Close()
			own := "own:" + strconv.Itoa(i)
			for j := 0; j < ops; j++ {
				if err := rdb.Incr(ctx, "shared").Err(); err != nil {
					errs <- err
					return
				}
				if err := rdb.Set(ctx, own, j, 0).Err(); err != nil {
					errs <- err
					return
				}
				if v, err := rdb.Get(ctx, own).Int(); err != nil || v != j {
					errs <- fmt.Errorf("client %d: GET %s = %d, %v; want %d", i, own, v, err, j)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rdb := ts.client(t, 2)
	check(t, rdb, clients*ops, "get", "shared")
	check(t, rdb, clients+1, "dbsize")
}

func TestMaxClients(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.MaxClients = 2 })
	a, b := dialRaw(t, ts.addr), dialRaw(t, ts.addr)
	a.send("PING\r\n")
	b.send("PING\r\n")
	if a.reply() != "+PONG\r\n" || b.reply() != "+PONG\r\n" {
		t.Fatal("first two clients not served")
	}
	c := dialRaw(t, ts.addr)
	if got := c.reply(); got != "-ERR max number of clients reached\r\n" {
		t.Fatalf("third client got %q", got)
	}
	c.expectClosed()
	a.close()
	// Once a slot frees, a new client is served.
	waitFor(t, "slot to free", func() bool { return ts.srv.numConns() < 2 })
	d := dialRaw(t, ts.addr)
	d.send("PING\r\n")
	if got := d.reply(); got != "+PONG\r\n" {
		t.Fatalf("client after a slot freed got %q", got)
	}
	if got := ts.srv.stats.rejected.Load(); got != 1 {
		t.Fatalf("rejected = %d, want 1", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.IdleTimeout = 50 * time.Millisecond })
	c := dialRaw(t, ts.addr)
	c.send("PING\r\n")
	if c.reply() != "+PONG\r\n" {
		t.Fatal("no PONG")
	}
	c.expectClosed() // within the read deadline of expectClosed
}

func TestMetrics(t *testing.T) {
	ts := startServer(t, nil)
	rdb := ts.client(t, 2)
	check(t, rdb, "OK", "set", "k", "v")
	check(t, rdb, "v", "get", "k")
	checkErr(t, rdb, "ERR syntax error", "set", "k", "v", "bogus")
	checkErr(t, rdb, "ERR unknown command 'nope', with args beginning with: ", "nope")
	// Counts are published when a connection flushes; poll for them.
	waitFor(t, "metrics", func() bool {
		mf, err := ts.metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]float64{}
		for _, f := range mf {
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				switch f.GetName() {
				case "fulcrum_requests_total":
					found[labels["command"]+"/"+labels["result"]] = m.GetCounter().GetValue()
				case "fulcrum_bytes_in_total":
					found["in"] = m.GetCounter().GetValue()
				case "fulcrum_connections_total":
					found["conns"] = m.GetCounter().GetValue()
				case "fulcrum_request_duration_seconds":
					found["lat/"+labels["command"]] = float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		return found["set/ok"] == 1 && found["get/ok"] == 1 && found["set/ERR"] == 1 &&
			found["unknown/ERR"] == 1 && found["in"] > 0 && found["conns"] >= 1 && found["lat/set"] == 2
	})
}

func TestQuit(t *testing.T) {
	ts := startServer(t, nil)
	c := dialRaw(t, ts.addr)
	c.send("SET a 1\r\nQUIT\r\nGET a\r\n")
	if got := c.reply(); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if got := c.reply(); got != "+OK\r\n" {
		t.Fatalf("QUIT: %q", got)
	}
	c.expectClosed()
}

// TestGetMetaAlone: a node that runs alone answers FULCRUM.GETMETA from
// its one copy ("local"), in RESP2 (flat array) and RESP3 (map).
func TestGetMetaAlone(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	r3 := ts.client(t, 3)
	if err := r3.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := r3.Do(ctx, "FULCRUM.GETMETA", "k").Result()
	m, _ := got.(map[any]any)
	if err != nil || m["value"] != "v" || m["consistency"] != "local" || m["answered"] != int64(1) || m["agreed"] != int64(1) {
		t.Fatalf("RESP3 GETMETA k: %v %v", got, err)
	}
	r2 := ts.client(t, 2)
	arr, err := r2.Do(ctx, "FULCRUM.GETMETA", "missing").Slice()
	if err != nil || len(arr) != 16 || arr[0] != "value" || arr[1] != nil || arr[3] != "local" || arr[9] != int64(0) {
		t.Fatalf("RESP2 GETMETA missing: %v %v", arr, err)
	}
	if err := r2.Do(ctx, "FULCRUM.GETMETA").Err(); err == nil || !strings.Contains(err.Error(), "wrong number of arguments") {
		t.Fatalf("GETMETA without a key: %v", err)
	}
	if err := r2.Do(ctx, "FULCRUM.GETMETA", "k", "R", "2").Err(); err == nil || !strings.Contains(err.Error(), "INVALID r 2: this node runs alone") {
		t.Fatalf("GETMETA R 2 alone: %v", err)
	}
	if err := r2.Do(ctx, "FULCRUM.GETMETA", "k", "R").Err(); err == nil || !strings.Contains(err.Error(), "INVALID R needs a value: usage: FULCRUM.GETMETA") {
		t.Fatalf("GETMETA k R: %v", err)
	}
	if err := r2.Do(ctx, "FULCRUM.GETMETA", "k", "R", "1").Err(); err != nil {
		t.Fatalf("GETMETA R 1 alone: %v", err)
	}
}
