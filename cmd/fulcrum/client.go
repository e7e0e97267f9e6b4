package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrumdb/fulcrum/internal/kv"
)

// maxPage is the page size scan asks for; the HTTP API allows up to 10000.
const maxPage = 1000

// maxErrorBody bounds how much of a non-JSON error body is quoted.
const maxErrorBody = 512

const clientUsageTail = `
The node is reached over its HTTP API (--addr). Errors print as
"error: CODE message" with exit status 1. Put -- before a KEY or VALUE that
starts with '-'.
`

// clientMain holds what the client subcommands share: where the node is,
// which namespace, and how long one request may take.
type clientMain struct {
	name           string
	Stdout, Stderr io.Writer
	HTTPClient     *http.Client

	Addr      string
	Namespace string
	Timeout   time.Duration

	base *url.URL // parsed Addr
}

func (m *Main) clientMain(name string) clientMain {
	return clientMain{name: name, Stdout: m.Stdout, Stderr: m.Stderr, HTTPClient: m.HTTPClient}
}

// cmdline returns the subcommand's flag set with the shared flags on it.
func (c *clientMain) cmdline(usage string) *cmdline {
	cl := newCmdline(c.name, usage+clientUsageTail, c.Stdout, c.Stderr)
	cl.fs.StringVar(&c.Addr, "addr", "http://127.0.0.1:7380", "`URL` of the node's HTTP API")
	cl.fs.StringVar(&c.Namespace, "namespace", kv.DefaultNamespace, "`namespace` of the keys")
	cl.fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "time limit of each request")
	return cl
}

// check validates the shared flags after parsing.
func (c *clientMain) check(cl *cmdline) error {
	addr := c.Addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr // "127.0.0.1:7380" is what people type
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return cl.usageErr("--addr %q is not an http:// or https:// URL", c.Addr)
	}
	u.Path, u.RawPath = strings.TrimSuffix(u.Path, "/"), ""
	c.base = u
	if err := kv.ValidateNamespace(c.Namespace); err != nil {
		msg := err.Error()
		if e := (*kv.Error)(nil); errors.As(err, &e) {
			msg = e.Message // without the INVALID code: this is a usage error
		}
		return cl.usageErr("--namespace: %s", msg)
	}
	if c.Timeout <= 0 {
		return cl.usageErr("--timeout must be > 0")
	}
	return nil
}

// keyURL is the URL of one key. Every byte but the unreserved ones is
// percent-encoded, '.' included, so that no key ("a/b", "..", "") changes
// the path's shape; the server decodes it back.
func (c *clientMain) keyURL(key string, q url.Values) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		ch := key[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '~' {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return c.nsURL("/keys/"+b.String(), q)
}

func (c *clientMain) nsURL(suffix string, q url.Values) string {
	s := c.base.String() + "/v1/namespaces/" + url.PathEscape(c.Namespace) + suffix
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// do sends one request under its own timeout and returns the status and
// the whole body. Statuses of 400 and above become *kv.Error from the
// API's JSON error body; NOT_FOUND is returned like any other code.
func (c *clientMain) do(ctx context.Context, method, target string, body []byte, header http.Header) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, nil, kv.Errorf(kv.CodeInvalid, "%v", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, c.transportError(ctx, err)
	}
	if resp.StatusCode >= 400 {
		return resp.StatusCode, nil, apiError(resp.StatusCode, data)
	}
	return resp.StatusCode, data, nil
}

func (c *clientMain) transportError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return kv.Errorf(kv.CodeTimeout, "no answer from %s within %s", c.base.Host, c.Timeout)
	}
	return kv.Errorf(kv.CodeUnavailable, "%v", err)
}

// apiError decodes the API's {"code","message"} error body; anything else
// (a proxy's HTML page, say) is reported by status with the start of the
// body.
func apiError(status int, body []byte) error {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		return &kv.Error{Code: kv.Code(e.Code), Message: e.Message}
	}
	text := strings.TrimSpace(string(body))
	if len(text) > maxErrorBody {
		text = text[:maxErrorBody] + "..."
	}
	return &kv.Error{Code: kv.Code("HTTP_" + strconv.Itoa(status)), Message: text}
}

// GetMain is "fulcrum get KEY".
type GetMain struct {
	clientMain
	Key string
}

// ParseFlags takes the key.
func (m *GetMain) ParseFlags(ctx context.Context, args []string) error {
	cl := m.cmdline("Usage: fulcrum get [flags] KEY\n\nPrint the value of KEY exactly as stored (no newline is added).\nA missing key prints (nil) to stderr and exits with status 1.\n")
	pos, err := cl.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cl.usageErr("want exactly one KEY, got %d arguments", len(pos))
	}
	m.Key = pos[0]
	return m.check(cl)
}

// Run fetches the raw value.
func (m *GetMain) Run(ctx context.Context) error {
	h := http.Header{"Accept": {"application/octet-stream"}}
	_, body, err := m.do(ctx, http.MethodGet, m.keyURL(m.Key, nil), nil, h)
	if kv.CodeOf(err) == kv.CodeNotFound {
		fmt.Fprintln(m.Stderr, "(nil)")
		return exitCode(1)
	}
	if err != nil {
		return err
	}
	_, err = m.Stdout.Write(body)
	return err
}

// SetMain is "fulcrum set KEY VALUE".
type SetMain struct {
	clientMain
	Key, Value string
	TTL        time.Duration
	NX, XX     bool
}

// ParseFlags takes the key, the value and the write's options.
func (m *SetMain) ParseFlags(ctx context.Context, args []string) error {
	cl := m.cmdline("Usage: fulcrum set [flags] KEY VALUE\n\nStore VALUE under KEY and print OK. With --nx or --xx a failed condition\nis the error CONFLICT.\n")
	cl.fs.DurationVar(&m.TTL, "ttl", 0, "expire the key after this `duration` (0: never)")
	cl.fs.BoolVar(&m.NX, "nx", false, "only if the key does not exist")
	cl.fs.BoolVar(&m.XX, "xx", false, "only if the key exists")
	pos, err := cl.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return cl.usageErr("want KEY and VALUE, got %d arguments", len(pos))
	}
	if m.NX && m.XX {
		return cl.usageErr("--nx and --xx exclude each other")
	}
	if m.TTL < 0 {
		return cl.usageErr("--ttl must not be negative")
	}
	m.Key, m.Value = pos[0], pos[1]
	return m.check(cl)
}

// Run stores the value.
func (m *SetMain) Run(ctx context.Context) error {
	q := url.Values{}
	if m.TTL > 0 {
		q.Set("ttl", m.TTL.String())
	}
	if m.NX {
		q.Set("nx", "true")
	}
	if m.XX {
		q.Set("xx", "true")
	}
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	if _, _, err := m.do(ctx, http.MethodPut, m.keyURL(m.Key, q), []byte(m.Value), h); err != nil {
		return err
	}
	_, err := fmt.Fprintln(m.Stdout, "OK")
	return err
}

// DelMain is "fulcrum del KEY...".
type DelMain struct {
	clientMain
	Keys []string
}

// ParseFlags takes one or more keys.
func (m *DelMain) ParseFlags(ctx context.Context, args []string) error {
	cl := m.cmdline("Usage: fulcrum del [flags] KEY...\n\nDelete the keys, one request each, and print how many existed.\n")
	pos, err := cl.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return cl.usageErr("missing KEY")
	}
	m.Keys = pos
	return m.check(cl)
}

// Run deletes the keys in order and stops at the first error.
func (m *DelMain) Run(ctx context.Context) error {
	deleted := 0
	for _, k := range m.Keys {
		_, _, err := m.do(ctx, http.MethodDelete, m.keyURL(k, nil), nil, nil)
		switch {
		case err == nil:
			deleted++
		case kv.CodeOf(err) == kv.CodeNotFound:
		case len(m.Keys) > 1:
			return fmt.Errorf("%w (after deleting %d of %d keys)", err, deleted, len(m.Keys))
		default:
			return err
		}
	}
	_, err := fmt.Fprintln(m.Stdout, deleted)
	return err
}

// ScanMain is "fulcrum scan".
type ScanMain struct {
	clientMain
	Prefix string
	Limit  int
}

// ParseFlags takes the listing's options.
func (m *ScanMain) ParseFlags(ctx context.Context, args []string) error {
	cl := m.cmdline("Usage: fulcrum scan [flags]\n\nPrint the keys of the namespace in order, one a line, following the\nlisting's pages until the end. Keys that are not valid UTF-8 are printed\nraw after the others of their page.\n")
	cl.fs.StringVar(&m.Prefix, "prefix", "", "only keys starting with `prefix`")
	cl.fs.IntVar(&m.Limit, "limit", 0, "print at most `N` keys (0: all)")
	pos, err := cl.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cl.usageErr("unexpected argument %q", pos[0])
	}
	if m.Limit < 0 {
		return cl.usageErr("--limit must not be negative")
	}
	return m.check(cl)
}

// Run pages through the listing.
func (m *ScanMain) Run(ctx context.Context) error {
	cursor, printed := "", 0
	for {
		page := maxPage
		if m.Limit > 0 {
			page = min(page, m.Limit-printed)
		}
		q := url.Values{"limit": {strconv.Itoa(page)}}
		if m.Prefix != "" {
			q.Set("prefix", m.Prefix)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		_, body, err := m.do(ctx, http.MethodGet, m.nsURL("/keys", q), nil, http.Header{"Accept": {"application/json"}})
		if err != nil {
			return err
		}
		var resp struct {
			Keys       []string `json:"keys"`
			KeysBase64 []string `json:"keys_base64"`
			Cursor     string   `json:"cursor"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			return kv.Errorf(kv.CodeInternal, "listing is not the expected JSON: %v", err)
		}
		keys := resp.Keys
		for _, k := range resp.KeysBase64 {
			raw, err := base64.StdEncoding.DecodeString(k)
			if err != nil {
				return kv.Errorf(kv.CodeInternal, "listing has a bad keys_base64 entry %q", k)
			}
			keys = append(keys, string(raw))
		}
		for _, k := range keys {
			if m.Limit > 0 && printed == m.Limit {
				return nil
			}
			if _, err := fmt.Fprintln(m.Stdout, k); err != nil {
				return err
			}
			printed++
		}
		if resp.Cursor == "" || (m.Limit > 0 && printed == m.Limit) {
			return nil
		}
		if resp.Cursor == cursor {
			return kv.Errorf(kv.CodeInternal, "listing returned cursor %q again; stopping", cursor)
		}
		cursor = resp.Cursor
	}
}
