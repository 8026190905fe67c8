package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestRoutesByInstance(t *testing.T) {
	s := openSink(t, nil, events.NamingSeed)
	a := s.connect(t, "/ws/a")
	b := s.connect(t, "/ws/b")
	all := s.connect(t, "/ws")
	// A name with a space and an accent travels escaped in the path.
	sp := s.connect(t, "/ws/loja%20S%C3%A3o%20Paulo")
	// No wait: a client joins before its handshake completes, so it gets
	// every delivery after Dial returns.

	var wantA, wantB, wantAll []string
	for i := 1; i <= 10; i++ {
		ida, idb := fmt.Sprintf("a-%02d", i), fmt.Sprintf("b-%02d", i)
		s.deliver(t, "a", ida)
		s.deliver(t, "b", idb)
		wantA, wantB, wantAll = append(wantA, ida), append(wantB, idb), append(wantAll, ida, idb)
	}
	s.deliver(t, "loja São Paulo", "sp-01")
	// End markers: anything misrouted before them has arrived by then,
	// since a client's messages keep their order.
	s.deliver(t, "a", "a-end")
	s.deliver(t, "b", "b-end")
	wantA, wantB = append(wantA, "a-end"), append(wantB, "b-end")
	wantAll = append(wantAll, "sp-01", "a-end", "b-end")

	for _, c := range []struct {
		name string
		c    *wsClient
		want []string
	}{{"/ws/a", a, wantA}, {"/ws/b", b, wantB}, {"/ws", all, wantAll}, {"/ws/loja São Paulo", sp, []string{"sp-01"}}} {
		c.c.waitFor(t, c.want[len(c.want)-1])
		if got := c.c.ids(); !equal(got, c.want) {
			t.Errorf("%s got %v\nwant %v", c.name, got, c.want)
		}
	}
	for _, m := range a.received() {
		if m.Instance == nil || *m.Instance != "a" {
			t.Errorf("/ws/a got a message of instance %v", m.Instance)
		}
	}
}

// TestFrameShape compares the exact bytes of messages with golden files,
// in both naming modes.
func TestFrameShape(t *testing.T) {
	for _, naming := range []events.Naming{events.NamingSeed, events.NamingEvolution} {
		t.Run(naming.String(), func(t *testing.T) {
			s := openSink(t, nil, naming)
			c := s.connect(t, "/ws/shop")
			s.deliverBatch(t, []sdk.Delivery{
				delivery("01J9Z8Q4M6W2K7V3T5X8Y1Z0AB", "shop", "MESSAGES_UPSERT",
					`"pushName":"Ana <Souza> & Co","message":{"conversation":"Olá! 🚚"}`),
				delivery("01J9Z8Q4M6W2K7V3T5X8Y1Z0AC", "shop", "GROUP_UPDATE", `"subject":"Orders"`),
				delivery("01J9Z8Q4M6W2K7V3T5X8Y1Z0AD", "shop", "GROUP_PARTICIPANTS_UPDATE", `"action":"add"`),
			})
			c.waitFor(t, "01J9Z8Q4M6W2K7V3T5X8Y1Z0AD")
			var got bytes.Buffer
			for _, m := range c.received() {
				got.Write(m.raw)
				got.WriteByte('\n')
			}
			golden(t, filepath.Join("testdata", "frames_"+naming.String()+".golden"), got.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("messages differ from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestThousandClients connects 1,000 clients, 900 to one instance and 100
// to /ws, and checks each receives every event of a burst, in order.
func TestThousandClients(t *testing.T) {
	// No ping while the test runs: on a loaded machine it can outlast the
	// first ping, and a client's pong may miss gorilla's 1s write deadline.
	// Pings have tests of their own.
	s := openSink(t, map[string]string{"ping_interval": "1h"}, events.NamingSeed)
	const perInstance, global, burst = 900, 100, 100
	clients := make([]*wsClient, perInstance+global)
	var wg sync.WaitGroup
	var failed atomic.Value
	sem := make(chan struct{}, 16)
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			path := "/ws/crowd"
			if i >= perInstance {
				path = "/ws"
			}
			c, err := s.tryConnect(t, path, nil, dialer(s.sock))
			if err != nil {
				failed.Store(err)
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("connect: %v", err)
	}
	eventually(t, "1,000 clients joined", func() bool {
		st := s.stats()
		return st.clients == perInstance && st.allClients == global
	})
	want := seq("burst", 1, burst)
	for i := 0; i < burst; i += 10 {
		s.deliver(t, "crowd", want[i:i+10]...)
	}
	next := 0 // clients before next have it all (or ended)
	eventually(t, "every client got the whole burst", func() bool {
		for next < len(clients) && (clients[next].count() >= burst || clients[next].readErr() != nil) {
			next++
		}
		return next == len(clients)
	})
	for i, c := range clients {
		if got := c.ids(); !equal(got, want) {
			t.Fatalf("client %d got %d messages (ended: %v), want the %d of the burst in order", i, len(got), c.readErr(), burst)
		}
	}
	if st := s.stats(); st.slow != 0 || st.delivered != burst {
		t.Errorf("stats %+v: want no client dropped and %d delivered", st, burst)
	}
}

// TestSlowClientDropped keeps delivering while one client never reads,
// until that client is dropped, and checks the others got everything.
func TestSlowClientDropped(t *testing.T) {
	s := openSink(t, map[string]string{
		"send_buffer": "8",
		// Long enough that the only reason to drop the slow client is its
		// full buffer, not a missed pong or a stuck write.
		"ping_interval": "1h", "write_timeout": "1h",
	}, events.NamingSeed)
	slowConn, _, err := dialer(s.sock).Dial("ws://evorelay/ws/busy", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slowConn.Close()
	fast := []*wsClient{s.connect(t, "/ws/busy"), s.connect(t, "/ws/busy"), s.connect(t, "/ws")}

	payload := `"blob":"` + strings.Repeat("x", 16<<10) + `"`
	var sent []string
	for round := 0; s.stats().slow == 0; round++ {
		if round == 2000 {
			t.Fatalf("the slow client was not dropped after %d messages", len(sent))
		}
		var batch []sdk.Delivery
		for i := range 4 {
			id := fmt.Sprintf("m-%05d", round*4+i)
			batch = append(batch, delivery(id, "busy", "MESSAGES_UPSERT", payload))
			sent = append(sent, id)
		}
		s.deliverBatch(t, batch)
		// The fast clients keep up: wait for them before the next round,
		// so only the one that does not read falls behind.
		last := sent[len(sent)-1]
		for _, c := range fast {
			c.waitFor(t, last)
		}
	}
	t.Logf("slow client dropped after %d messages", len(sent))

	// Now it reads: what it got is a prefix of what was sent, then the
	// close frame with the policy code and the reason.
	var got []string
	var closeErr *websocket.CloseError
	for {
		_, b, err := slowConn.ReadMessage()
		if err != nil {
			if !errors.As(err, &closeErr) {
				t.Fatalf("the slow client's connection ended with %v, want a close frame", err)
			}
			break
		}
		var m msg
		_ = json.Unmarshal(b, &m)
		got = append(got, m.ID)
	}
	if closeErr.Code != websocket.ClosePolicyViolation && closeErr.Code != websocket.CloseTryAgainLater {
		t.Errorf("close code %d, want 1008 or 1013", closeErr.Code)
	}
	if !strings.Contains(closeErr.Text, "send buffer full") || !strings.Contains(closeErr.Text, "since") {
		t.Errorf("close reason %q, want it to say the buffer is full and how to resume", closeErr.Text)
	}
	if len(got) == 0 || len(got) >= len(sent) || !equal(got, sent[:len(got)]) {
		t.Errorf("the slow client got %d messages, want a strict prefix of the %d sent", len(got), len(sent))
	}

	// The others go on receiving, all of it, in order.
	s.deliver(t, "busy", "after-1", "after-2")
	sent = append(sent, "after-1", "after-2")
	for i, c := range fast {
		c.waitFor(t, "after-2")
		if !equal(c.ids(), sent) {
			t.Errorf("fast client %d did not get every message in order", i)
		}
	}
	if st := s.stats(); st.slow != 1 || st.clients != 2 || st.allClients != 1 {
		t.Errorf("stats %+v: want 1 slow client dropped and 3 clients left", st)
	}
	if h := s.Health(context.Background()); !strings.Contains(h.Detail, "1 slow clients dropped") {
		t.Errorf("Health detail %q does not count the dropped client", h.Detail)
	}
}

func TestResumeSince(t *testing.T) {
	s := openSink(t, nil, events.NamingSeed)
	s.deliver(t, "a", seq("e", 1, 10)...)
	s.deliver(t, "b", "b-0001")

	c := s.connect(t, "/ws/a?since=e-0007")
	s.deliver(t, "a", "e-0011")
	c.waitFor(t, "e-0011")
	if got, want := c.ids(), seq("e", 8, 11); !equal(got, want) {
		t.Errorf("since=e-0007 got %v, want %v", got, want)
	}

	newest := s.connect(t, "/ws/a?since=e-0011")
	plain := s.connect(t, "/ws/a")
	empty := s.connect(t, "/ws/a?since=")
	s.deliver(t, "a", "e-0012")
	for name, c := range map[string]*wsClient{"since the newest": newest, "no since": plain, "empty since": empty} {
		c.waitFor(t, "e-0012")
		if got := c.ids(); !equal(got, []string{"e-0012"}) {
			t.Errorf("%s got %v, want only the live e-0012", name, got)
		}
	}

	all := s.connect(t, "/ws?since=e-0009")
	all.waitFor(t, "e-0012")
	if got, want := all.ids(), []string{"e-0010", "b-0001", "e-0011", "e-0012"}; !equal(got, want) {
		t.Errorf("/ws since=e-0009 got %v, want %v", got, want)
	}
}

// TestResumeUnderLoad reconnects with since while events keep coming and
// checks that the two connections together got every event exactly once,
// in order.
func TestResumeUnderLoad(t *testing.T) {
	s := openSink(t, map[string]string{"resume_window": "30000", "send_buffer": "30000"}, events.NamingSeed)
	first := s.connect(t, "/ws/live")

	stop := make(chan struct{})
	total := make(chan int, 1)
	go func() {
		n := 0
		defer func() { total <- n }()
		for n < 20000 {
			select {
			case <-stop:
				return
			default:
			}
			n++
			d := delivery(fmt.Sprintf("e-%05d", n), "live", "MESSAGES_UPSERT", "")
			_ = s.Deliver(context.Background(), []sdk.Delivery{d}, newAckLog())
		}
	}()

	eventually(t, "300 messages on the first connection", func() bool { return first.count() >= 300 })
	first.close()
	got1 := first.ids()
	second := s.connect(t, "/ws/live?since="+got1[len(got1)-1])
	eventually(t, "500 messages on the second connection", func() bool { return second.count() >= 500 })
	close(stop)
	n := <-total
	s.deliver(t, "live", "end")
	second.waitFor(t, "end")
	got2 := second.ids()
	got2 = got2[:len(got2)-1]

	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("e-%05d", i))
	}
	joined := append(append([]string(nil), got1...), got2...)
	if !equal(joined, want) {
		t.Errorf("the two connections got %d + %d messages; together they are not e-00001…e-%05d exactly once in order", len(got1), len(got2), n)
	}
	t.Logf("%d events; the first connection got %d, the second %d (replayed and live)", n, len(got1), len(got2))
}

func TestGap(t *testing.T) {
	s := openSink(t, map[string]string{"resume_window": "5", "resume_window_global": "3"}, events.NamingEvolution)
	s.deliver(t, "a", seq("e", 1, 20)...)

	c := s.connect(t, "/ws/a?since=e-0003")
	s.deliver(t, "a", "e-0021")
	c.waitFor(t, "e-0021")
	got := c.received()
	if len(got) == 0 || string(got[0].raw) != `{"event":"evorelay.gap","instance":"a","since":"e-0003","oldest":"e-0016"}` {
		t.Fatalf("first message %s, want the gap message", got[0].raw)
	}
	if ids := c.ids()[1:]; !equal(ids, seq("e", 16, 21)) {
		t.Errorf("after the gap got %v, want e-0016…e-0021", ids)
	}

	all := s.connect(t, "/ws?since=not-an-id")
	all.waitFor(t, "e-0021")
	got = all.received()
	if string(got[0].raw) != `{"event":"evorelay.gap","instance":null,"since":"not-an-id","oldest":"e-0019"}` {
		t.Fatalf("/ws first message %s, want the gap message", got[0].raw)
	}
	if ids := all.ids()[1:]; !equal(ids, seq("e", 19, 21)) {
		t.Errorf("/ws after the gap got %v, want e-0019…e-0021", ids)
	}

	// A window with nothing in it: the gap has no oldest.
	empty := s.connect(t, "/ws/quiet?since=e-0001")
	eventually(t, "the gap message", func() bool { return empty.count() == 1 })
	if got := string(empty.received()[0].raw); got != `{"event":"evorelay.gap","instance":"quiet","since":"e-0001","oldest":null}` {
		t.Errorf("empty window: %s", got)
	}
}

func TestConnectionLimits(t *testing.T) {
	s := openSink(t, map[string]string{"max_connections": "3", "max_connections_per_instance": "2"}, events.NamingSeed)
	a1 := s.connect(t, "/ws/a")
	s.connect(t, "/ws/a")
	refused := func(path, want string) {
		t.Helper()
		conn, resp, err := dialer(s.sock).Dial("ws://evorelay"+path, nil)
		if err == nil {
			conn.Close()
			t.Fatalf("%s: connected, want 503", path)
		}
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s: %v, want 503", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), want) || !strings.Contains(string(body), `"status":503`) {
			t.Errorf("%s: body %s, want the error envelope naming %s", path, body, want)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", path)
		}
	}
	refused("/ws/a", "EVORELAY_WEBSOCKET_MAX_CONNECTIONS_PER_INSTANCE")
	s.connect(t, "/ws")
	refused("/ws/b", "EVORELAY_WEBSOCKET_MAX_CONNECTIONS)")

	a1.close()
	eventually(t, "a slot is free again", func() bool {
		conn, _, err := dialer(s.sock).Dial("ws://evorelay/ws/b", nil)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
}

// TestPingDropsDeadClient runs two clients with short ping settings: one
// answers pings (gorilla does while reading), one does not. The silent one
// is dropped; the other stays.
func TestPingDropsDeadClient(t *testing.T) {
	s := openSink(t, map[string]string{"ping_interval": "100ms", "pong_timeout": "2s"}, events.NamingSeed)
	dead, err := s.connectWith(t, "/ws/p", nil, dialer(s.sock), func(c *websocket.Conn) {
		c.SetPingHandler(func(string) error { return nil }) // never pong
	})
	if err != nil {
		t.Fatal(err)
	}
	var pings atomic.Int32
	alive, err := s.connectWith(t, "/ws/p", nil, dialer(s.sock), func(c *websocket.Conn) {
		c.SetPingHandler(func(data string) error {
			pings.Add(1)
			return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(patience))
		})
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := dead.waitEnd(t); err == nil {
		t.Fatal("the silent client's connection ended without an error")
	}
	eventually(t, "the dead client counted", func() bool { return s.stats().noPong == 1 })
	// The live one has answered pings well past the dead one's end.
	n := pings.Load()
	eventually(t, "10 more pings to the live client", func() bool { return pings.Load() >= n+10 })
	if st := s.stats(); st.clients != 1 || st.noPong != 1 {
		t.Fatalf("stats %+v: want the live client connected and one dropped", st)
	}
	s.deliver(t, "p", "still-here")
	alive.waitFor(t, "still-here")
	if h := s.Health(context.Background()); !strings.Contains(h.Detail, "1 dead clients dropped (no pong)") {
		t.Errorf("Health detail %q", h.Detail)
	}
}

// countingConn counts the bytes read from the socket.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestCompression(t *testing.T) {
	big := `"text":"` + strings.Repeat("compress me ", 8000) + `"`
	try := func(t *testing.T, s *testSink, offer bool) (negotiated bool, wire int64) {
		var n atomic.Int64
		d := dialer(s.sock)
		d.EnableCompression = offer
		d.NetDialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, "unix", s.sock)
			return countingConn{c, &n}, err
		}
		c, err := s.tryConnect(t, "/ws/z", nil, d)
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		before := n.Load()
		id := fmt.Sprintf("z-%v", offer)
		s.deliverBatch(t, []sdk.Delivery{delivery(id, "z", "MESSAGES_UPSERT", big)})
		c.waitFor(t, id)
		if got := c.received()[0]; !strings.Contains(string(got.Data), "compress me compress me") {
			t.Fatalf("data lost: %.80s", got.Data)
		}
		wire = n.Load() - before
		c.close()
		eventually(t, "the client left", func() bool { return s.stats().clients == 0 })
		return strings.Contains(c.resp.Header.Get("Sec-Websocket-Extensions"), "permessage-deflate"), wire
	}
	t.Run("on", func(t *testing.T) {
		s := openSink(t, nil, events.NamingSeed)
		on, small := try(t, s, true)
		off, full := try(t, s, false)
		if !on || off {
			t.Fatalf("negotiated: offered %v, not offered %v; want true, false", on, off)
		}
		if small*10 > full {
			t.Errorf("compressed message took %d bytes on the wire, uncompressed %d", small, full)
		}
		t.Logf("on the wire: %d bytes compressed, %d not", small, full)
	})
	t.Run("disabled", func(t *testing.T) {
		s := openSink(t, map[string]string{"compression": "false"}, events.NamingSeed)
		if on, _ := try(t, s, true); on {
			t.Error("compression negotiated though EVORELAY_WEBSOCKET_COMPRESSION is false")
		}
	})
}

func TestOrigin(t *testing.T) {
	try := func(s *testSink, origin string) int {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		conn, resp, err := dialer(s.sock).Dial("ws://evorelay/ws/o", h)
		if err == nil {
			conn.Close()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatalf("origin %q: %v", origin, err)
		}
		if resp.StatusCode == http.StatusForbidden {
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), "EVORELAY_WEBSOCKET_ALLOWED_ORIGINS") {
				t.Errorf("403 body %s does not say how to allow the origin", body)
			}
		}
		return resp.StatusCode
	}
	tests := []struct {
		allowed string
		origin  string
		want    int
	}{
		{"", "", 101},
		{"", "http://evorelay", 101}, // the Host it was sent to
		{"", "https://EVORELAY", 101},
		{"", "http://evil.example", 403},
		{"", "null", 403},
		{"https://app.example.com", "https://app.example.com", 101},
		{"https://app.example.com", "http://app.example.com", 403},
		{"https://app.example.com", "http://evorelay", 101},
		{"https://app.example.com", "https://other.example.com", 403},
		{"*", "https://anything.example", 101},
	}
	for _, tt := range tests {
		t.Run(tt.allowed+" "+tt.origin, func(t *testing.T) {
			s := openSink(t, map[string]string{"allowed_origins": tt.allowed}, events.NamingSeed)
			if got := try(s, tt.origin); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
}

func TestAckWithNoClient(t *testing.T) {
	s := openSink(t, nil, events.NamingSeed)
	if h := s.Health(context.Background()); !h.Ready || h.Detail != "0 clients (0 on /ws); 0 delivered, 0 with no client" {
		t.Errorf("Health = %+v", h)
	}
	s.deliver(t, "nobody", seq("n", 1, 3)...) // deliver fails t unless each is acked nil
	c := s.connect(t, "/ws/nobody")
	s.deliver(t, "nobody", "n-0004")
	c.waitFor(t, "n-0004")
	if h := s.Health(context.Background()); !h.Ready || h.Detail != "1 clients (0 on /ws); 4 delivered, 3 with no client" {
		t.Errorf("Health = %+v", h)
	}
	h := s.Health(context.Background())
	if g, c := h.Gauges, h.Counters; g["connections"] != 1 || c["delivered"] != 4 || c["delivered_no_client"] != 3 {
		t.Fatalf("health gauges %v, counters %v; want 1 connection, 4 delivered, 3 with no client", g, c)
	}
}

func TestRepeatedDeliveryNotResent(t *testing.T) {
	s := openSink(t, nil, events.NamingSeed)
	c := s.connect(t, "/ws/r")
	s.deliver(t, "r", "r-1", "r-2")
	s.deliver(t, "r", "r-2", "r-3") // the host sent r-2 again
	c.waitFor(t, "r-3")
	if got := c.ids(); !equal(got, []string{"r-1", "r-2", "r-3"}) {
		t.Errorf("got %v", got)
	}
	if st := s.stats(); st.duplicates != 1 {
		t.Errorf("duplicates = %d, want 1", st.duplicates)
	}
}

func TestMalformedEnvelopeDeadLettered(t *testing.T) {
	s := openSink(t, nil, events.NamingSeed)
	acks := newAckLog()
	batch := []sdk.Delivery{{ID: "bad", Instance: "x", Event: "CALL", Envelope: json.RawMessage(`not json`)}, delivery("good", "x", "CALL", "")}
	if err := s.Deliver(context.Background(), batch, acks); err != nil {
		t.Fatal(err)
	}
	if err := acks.errs["bad"]; !sdk.IsPermanent(err) {
		t.Errorf("bad envelope acked %v, want a permanent error", err)
	}
	if n, err := acks.n["good"], acks.errs["good"]; n != 1 || err != nil {
		t.Errorf("good delivery acked %d times with %v", n, err)
	}
}

func TestCloseSaysGoingAway(t *testing.T) {
	s := openSink(t, nil, events.NamingSeed)
	c := s.connect(t, "/ws/bye")
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ce *websocket.CloseError
	if err := c.waitEnd(t); !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("connection ended with %v, want close 1001", err)
	}
	if h := s.Health(context.Background()); h.Ready {
		t.Errorf("Health after Close = %+v, want not ready", h)
	}
	if _, err := os.Stat(s.sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestHTTPAnswers(t *testing.T) {
	s := openSink(t, nil, events.NamingSeed)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", s.sock)
		},
	}}
	defer client.CloseIdleConnections()
	get := func(path string) (*http.Response, string) {
		resp, err := client.Get("http://evorelay" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := get("/ws-console")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(body, "/ws/") || !strings.Contains(body, "since=") || !strings.Contains(body, `id="apikey"`) {
		t.Errorf("GET /ws-console = %d %s, %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	for _, ext := range []string{"http://", "https://", "//cdn"} {
		if strings.Contains(body, ext) {
			t.Errorf("the console refers to %q: it must load nothing from elsewhere", ext)
		}
	}

	resp, body = get("/ws/a")
	if resp.StatusCode != 400 || !strings.Contains(body, "websocket") || !strings.Contains(body, `"status":400`) {
		t.Errorf("plain GET /ws/a = %d %s", resp.StatusCode, body)
	}
	resp, _ = get("/elsewhere")
	if resp.StatusCode != 404 {
		t.Errorf("GET /elsewhere = %d", resp.StatusCode)
	}
	resp, body = get("/ws?since=" + strings.Repeat("x", 300))
	if resp.StatusCode != 400 {
		t.Errorf("long since = %d %s", resp.StatusCode, body)
	}
}

func TestOpen(t *testing.T) {
	t.Run("needs a socket", func(t *testing.T) {
		err := New().Open(context.Background(), sdk.Config{})
		if err == nil || !strings.Contains(err.Error(), "ListenSocket") {
			t.Errorf("Open without a socket = %v", err)
		}
	})
	t.Run("bad setting", func(t *testing.T) {
		sinktest.OpenFails(t, New(), map[string]string{"send_buffer": "none"}, "EVORELAY_WEBSOCKET_SEND_BUFFER")
	})
	t.Run("replaces a stale socket", func(t *testing.T) {
		sock := socketPath(t)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		// A crashed process leaves its socket file behind.
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
		s := New()
		if err := s.Open(context.Background(), sdk.Config{ListenSocket: sock}); err != nil {
			t.Fatalf("Open over a stale socket: %v", err)
		}
		defer s.Close(context.Background())
		fi, err := os.Stat(sock)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket %v, %v; want mode 0600", fi.Mode(), err)
		}
	})
	t.Run("refuses to remove a file", func(t *testing.T) {
		path := socketPath(t)
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := New().Open(context.Background(), sdk.Config{ListenSocket: path}); err == nil {
			t.Error("Open over a regular file succeeded")
		}
	})
}
