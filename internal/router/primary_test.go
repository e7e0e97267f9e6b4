package router

import (
	"reflect"
	"testing"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

func TestPrimaryGetCodec(t *testing.T) {
	for _, m := range []kv.ReadMeta{
		{Role: "replica", Epoch: 3, LagEntries: 7, Lag: -1},
		{Found: true, Value: []byte("v"), Version: 9, ExpireAt: 1234, Timestamp: 5e18, Logical: 2, Role: "primary", Epoch: 4, Lag: 250 * time.Millisecond},
	} {
		got, err := decodePrimaryGet(appendPrimaryGet(nil, m))
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %+v: %+v %v", m, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {0}, {0, 1, 'x'}} {
		if _, err := decodePrimaryGet(bad); err == nil {
			t.Errorf("decodePrimaryGet(%v): no error", bad)
		}
	}
}
