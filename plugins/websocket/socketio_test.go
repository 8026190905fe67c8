package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// These tests talk to the sink's socket as the host's proxy does: with
// sdk.IdentityHeader for a key the host checked, or none. The client is a
// few lines of Engine.IO v4 / Socket.IO v5 over a websocket, so a test
// sees the packets themselves; host/e2e runs the real socket.io-client.

// sioEvent is one EVENT packet a client received: [name, payload, offset].
type sioEvent struct {
	name    string
	payload json.RawMessage
	offset  string
}

type sioClient struct {
	reader[sioEvent]
	prefix string // "/<instance>," or "" for "/"

	// onEvent, when set (by dialSioCounting), is called for each event
	// instead of recording it.
	onEvent func()
}

// identity is the header the host's proxy sets for a key it checked.
func identity(id sdk.Identity) http.Header {
	return http.Header{sdk.IdentityHeader: {id.String()}}
}

// dialSio opens an Engine.IO websocket to the sink and asks to join nsp
// with auth. It returns the client once joined, or the connect_error's
// message as an error.
func (s *testSink) dialSio(t testing.TB, nsp string, h http.Header, auth map[string]any) (*sioClient, error) {
	t.Helper()
	return s.dialSioCounting(t, nsp, h, auth, nil)
}

// join is dialSio with the admin key's identity, failing t unless the
// client joins nsp.
func (s *testSink) join(t testing.TB, nsp string, auth map[string]any) *sioClient {
	t.Helper()
	c, err := s.dialSio(t, nsp, identity(sdk.Identity{}), auth)
	if err != nil {
		t.Fatalf("join %s: %v", nsp, err)
	}
	return c
}

// dialSioCounting is dialSio with onEvent called for each event, which is
// then not recorded.
func (s *testSink) dialSioCounting(t testing.TB, nsp string, h http.Header, auth map[string]any, onEvent func()) (*sioClient, error) {
	t.Helper()
	conn, resp, err := dialer(s.sock).Dial("ws://evorelay/socket.io/?EIO=4&transport=websocket", h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("upgrade: %d", resp.StatusCode)
		}
		return nil, err
	}
	c := &sioClient{reader: newReader[sioEvent](conn), onEvent: onEvent}
	if nsp != "/" {
		c.prefix = nsp + ","
	}
	if _, open, err := conn.ReadMessage(); err != nil || open[0] != '0' {
		conn.Close()
		return nil, fmt.Errorf("engine.io open packet: %q, %v", open, err)
	}
	a, _ := json.Marshal(auth)
	if err := conn.WriteMessage(websocket.TextMessage, []byte("40"+c.prefix+string(a))); err != nil {
		conn.Close()
		return nil, err
	}
	for {
		_, p, err := conn.ReadMessage()
		if err != nil {
			conn.Close()
			return nil, err
		}
		switch body := string(p); {
		case body == "2":
			_ = conn.WriteMessage(websocket.TextMessage, []byte("3"))
		case strings.HasPrefix(body, "40"+c.prefix):
			go c.read(c.handle)
			t.Cleanup(c.close)
			return c, nil
		case strings.HasPrefix(body, "44"+c.prefix):
			conn.Close()
			var e struct{ Message string }
			_ = json.Unmarshal([]byte(strings.TrimPrefix(body, "44"+c.prefix)), &e)
			return nil, errors.New(e.Message)
		}
	}
}

// handle answers pings and records events.
func (c *sioClient) handle(p []byte) error {
	body := string(p)
	switch {
	case body == "2":
		_ = c.conn.WriteMessage(websocket.TextMessage, []byte("3"))
	case c.onEvent != nil && strings.HasPrefix(body, "42"+c.prefix):
		c.onEvent()
	case strings.HasPrefix(body, "42"+c.prefix):
		var args []json.RawMessage
		if err := json.Unmarshal([]byte(strings.TrimPrefix(body, "42"+c.prefix)), &args); err != nil || len(args) < 2 {
			return fmt.Errorf("bad EVENT packet %q", body)
		}
		e := sioEvent{payload: args[1]}
		_ = json.Unmarshal(args[0], &e.name)
		if len(args) > 2 {
			_ = json.Unmarshal(args[2], &e.offset)
		}
		c.add(e)
	}
	return nil
}

func (c *sioClient) offsets() []string {
	var out []string
	for _, e := range c.received() {
		out = append(out, e.offset)
	}
	return out
}

func TestSocketIOEventsAndEnvelope(t *testing.T) {
	s := openSink(t, nil, events.NamingEvolution)
	sa := s.join(t, "/sales", nil)
	sb := s.join(t, "/support", nil)
	all := s.join(t, "/", nil)
	s.deliver(t, "sales", "s1", "s2")
	s.deliver(t, "support", "p1")
	eventually(t, "/ got 3 events", func() bool { return len(all.received()) == 3 })
	eventually(t, "/sales got 2 events", func() bool { return len(sa.received()) == 2 })
	eventually(t, "/support got 1 event", func() bool { return len(sb.received()) == 1 })
	if got := sa.offsets(); !equal(got, []string{"s1", "s2"}) {
		t.Errorf("/sales got %v", got)
	}
	if got := sb.offsets(); !equal(got, []string{"p1"}) {
		t.Errorf("/support got %v", got)
	}
	if got := all.offsets(); !equal(got, []string{"s1", "s2", "p1"}) {
		t.Errorf("/ got %v", got)
	}
	e := sa.received()[0]
	want, _ := events.WithEvent(delivery("s1", "sales", "MESSAGES_UPSERT", "").Envelope, "messages.upsert")
	if e.name != "messages.upsert" || string(e.payload) != strings.TrimSpace(string(want)) {
		t.Errorf("event %q %s; want messages.upsert and the envelope as the engine sent it, event in wire naming:\n%s", e.name, e.payload, want)
	}
}

func TestSocketIOKeys(t *testing.T) {
	host := fakeHostSocket(t, map[string]sdk.Identity{"admin-key": {}, "sales-key": {Instance: "sales"}})
	s := openSinkConfig(t, sdk.Config{Naming: events.NamingSeed, HostSocket: host})
	scoped := identity(sdk.Identity{Instance: "sales"})
	for _, c := range []struct {
		name string
		nsp  string
		h    http.Header
		auth map[string]any
		err  string // "" when it joins
	}{
		{"admin key, an instance", "/sales", identity(sdk.Identity{}), nil, ""},
		{"admin key, every instance", "/", identity(sdk.Identity{}), nil, ""},
		{"scoped key, its instance", "/sales", scoped, nil, ""},
		{"scoped key, another instance", "/support", scoped, nil, "this API key may not see namespace /support (instance support); it is scoped to instance sales"},
		{"scoped key, every instance", "/", scoped, nil, `this API key may not see namespace "/" (every instance); it is scoped to instance sales`},
		{"no key", "/sales", nil, nil, errNoKey.Error()},
		{"auth payload, admin", "/", nil, map[string]any{"apikey": "admin-key"}, ""},
		{"auth payload, scoped, its instance", "/sales", nil, map[string]any{"apikey": "sales-key"}, ""},
		{"auth payload, scoped, another", "/support", nil, map[string]any{"apikey": "sales-key"}, "this API key may not see namespace /support (instance support); it is scoped to instance sales"},
		{"auth payload, unknown key", "/sales", identity(sdk.Identity{}), map[string]any{"apikey": "nope"}, "invalid API key in the Socket.IO auth payload; send the key the sidecar is configured with"},
		{"a forged identity header is not an identity", "/sales", http.Header{sdk.IdentityHeader: {"root"}}, nil, `sdk: "root" is not an identity; expected admin or instance=<name>`},
	} {
		_, err := s.dialSio(t, c.nsp, c.h, c.auth)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v; want it to join", c.name, err)
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%s: %v; want %q", c.name, err, c.err)
		}
	}
}

// fakeHostSocket answers sdk.Identify as the host does, from keys.
func fakeHostSocket(t *testing.T, keys map[string]sdk.Identity) string {
	t.Helper()
	sock := filepath.Join(filepath.Dir(socketPath(t)), "h.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := keys[r.Header.Get("apikey")]
		if r.URL.Path != sdk.IdentifyPath || !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(id.String()))
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return sock
}

func TestSocketIOResume(t *testing.T) {
	s := openSink(t, nil, events.NamingSeed)
	s.deliver(t, "sales", seq("m", 1, 5)...)
	c := s.join(t, "/sales", map[string]any{"pid": "any", "offset": "m-0002"})
	s.deliver(t, "sales", "m-0006")
	eventually(t, "the replay and the live event", func() bool { return len(c.received()) == 4 })
	if got := c.offsets(); !equal(got, seq("m", 3, 6)) {
		t.Errorf("resumed from m-0002: got %v", got)
	}

	gone := s.join(t, "/sales", map[string]any{"offset": "unknown"})
	eventually(t, "the gap and the window", func() bool { return len(gone.received()) == 7 })
	got := gone.received()
	var gap gapFrame
	if err := json.Unmarshal(got[0].payload, &gap); err != nil || got[0].name != gapEvent || gap.Since != "unknown" || gap.Oldest == nil || *gap.Oldest != "m-0001" {
		t.Errorf("first event %q %s; want the gap message since unknown, oldest m-0001", got[0].name, got[0].payload)
	}
	if ids := gone.offsets()[1:]; !equal(ids, seq("m", 1, 6)) {
		t.Errorf("after the gap: %v", ids)
	}
}

// A socket that does not read is dropped once its queue and what the
// engine holds for it fill, and the others get every event.
func TestSocketIOSlowClientDropped(t *testing.T) {
	s := openSink(t, map[string]string{"send_buffer": "4"}, events.NamingSeed)
	reader := s.join(t, "/sales", nil)
	stuck := s.join(t, "/sales", nil)
	_ = stuck.conn.UnderlyingConn().(*net.UnixConn).SetReadBuffer(4096)
	// Stop reading: the client's read loop blocks once the socket's
	// buffers are full. Big events fill them sooner.
	stuck.mu.Lock()
	big := `"blob":"` + strings.Repeat("x", 64<<10) + `"`
	var sent []string
	for i := 0; s.stats().slow == 0; i++ {
		id := fmt.Sprintf("b-%06d", i)
		sent = append(sent, id)
		s.deliverBatch(t, []sdk.Delivery{delivery(id, "sales", "MESSAGES_UPSERT", big)})
		eventually(t, "the reader keeps up", func() bool { return len(reader.received()) == len(sent) })
	}
	stuck.mu.Unlock()
	if got := reader.offsets(); !equal(got, sent) {
		t.Errorf("the reading client got %d of %d events", len(got), len(sent))
	}
	eventually(t, "the slow client's connection ends", func() bool {
		select {
		case <-stuck.done:
			return true
		default:
			return false
		}
	})
}

func TestSocketIOOrigins(t *testing.T) {
	s := openSink(t, map[string]string{"cors_origins": "https://dash.example.com"}, events.NamingSeed)
	for _, c := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://evorelay", true},
		{"https://dash.example.com", true},
		{"https://evil.example.com", false},
	} {
		h := identity(sdk.Identity{})
		if c.origin != "" {
			h.Set("Origin", c.origin)
		}
		_, err := s.dialSio(t, "/sales", h, nil)
		if (err == nil) != c.ok {
			t.Errorf("origin %q: %v; want allowed=%v", c.origin, err, c.ok)
		}
	}
	// A browser's preflight from a listed origin is answered with CORS
	// headers; the default sink answers none.
	req, _ := http.NewRequest("OPTIONS", "http://evorelay/socket.io/?EIO=4&transport=polling", nil)
	req.Header.Set("Origin", "https://dash.example.com")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "apikey")
	resp, err := unixClient(s.sock).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://dash.example.com" {
		t.Errorf("preflight Access-Control-Allow-Origin %q", got)
	}
	closed := openSink(t, nil, events.NamingSeed)
	resp, err = unixClient(closed.sock).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("default sink: Access-Control-Allow-Origin %q; want none", got)
	}
}

func unixClient(sock string) *http.Client {
	d := dialer(sock)
	return &http.Client{Transport: &http.Transport{DialContext: d.NetDialContext}}
}
