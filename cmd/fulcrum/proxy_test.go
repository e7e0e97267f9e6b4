package main

import (
	"context"
	"strings"
	"testing"
)

func TestProxyFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"proxy"},
		{"proxy", "--namespace", "orders"},
		{"proxy", "--nodes", "http://127.0.0.1:7380"},
		{"proxy", "--namespace", "orders", "--nodes", "127.0.0.1:7380"},
		{"proxy", "--namespace", "orders", "--nodes", "http://127.0.0.1:7380", "--poll", "0s"},
		{"proxy", "--namespace", "orders", "--nodes", "http://127.0.0.1:7380", "extra"},
	} {
		m, _, stderr := testMain(t)
		if code := m.Run(context.Background(), args); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %s)", args, code, stderr)
		}
	}
	m, stdout, _ := testMain(t)
	if code := m.Run(context.Background(), []string{"proxy", "-h"}); code != 0 || !strings.Contains(stdout.String(), "fulcrum proxy --namespace NS") {
		t.Errorf("proxy -h: exit %d\n%s", code, stdout)
	}
}
