package server

import (
	"github.com/fulcrumdb/fulcrum/internal/kv"
	"github.com/fulcrumdb/fulcrum/internal/storage"
)

var errClosedForTest = storage.ErrClosed

func kvBatchForTest() kv.Batch {
	return kv.Batch{Ops: []kv.Op{{Kind: kv.OpSet, Namespace: "default", Key: []byte("k")}}}
}
