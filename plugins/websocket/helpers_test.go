package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// patience bounds every wait in these tests. It is a guard against a
// hang, not a timing assertion: a working sink is never near it.
const patience = 60 * time.Second

// eventually polls cond until it holds, failing t after patience.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	sinktest.Eventually(t, what, patience, cond)
}

// socketPath returns a short Unix socket path (they are limited to about
// 100 bytes, and t.TempDir can be longer).
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ws")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// testSink is an open sink on a real Unix socket, closed at cleanup.
type testSink struct {
	*Sink
	sock string
}

func openSink(t testing.TB, settings map[string]string, naming events.Naming) *testSink {
	t.Helper()
	return openSinkConfig(t, sdk.Config{Settings: settings, Naming: naming})
}

// openSinkConfig is openSink with more of the Config; ListenSocket and
// Logger are set here.
func openSinkConfig(t testing.TB, cfg sdk.Config) *testSink {
	t.Helper()
	s := New()
	sock := socketPath(t)
	cfg.ListenSocket = sock
	cfg.Logger = sinktest.TestLogger(t, hclog.Info)
	err := s.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testSink{Sink: s, sock: sock}
}

// ackLog records acknowledgements.
type ackLog struct {
	mu   sync.Mutex
	errs map[string]error
	n    map[string]int
}

func newAckLog() *ackLog { return &ackLog{errs: map[string]error{}, n: map[string]int{}} }

func (a *ackLog) Done(id string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs[id] = err
	a.n[id]++
}

// delivery is a delivery of event for instance whose data is
// {"key":{"id":id}} merged with extra (a JSON object's members, or "").
func delivery(id, instance, event, extra string) sdk.Delivery {
	data := `{"key":{"id":"` + id + `"}`
	if extra != "" {
		data += "," + extra
	}
	data += "}"
	// Written as an engine would, without escaping < > &, to show that the
	// sink passes data on byte for byte.
	var env bytes.Buffer
	enc := json.NewEncoder(&env)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(events.Envelope{
		Event: event, Instance: instance, Data: json.RawMessage(data),
		DateTime: "2024-01-01T12:00:00.000Z", APIKey: "engine-key",
	})
	return sdk.Delivery{ID: id, Instance: instance, Event: event, Attempt: 1, Envelope: env.Bytes(),
		Settings: json.RawMessage(`{"enabled":true,"events":[]}`)}
}

// seq returns ids prefix-0001 … prefix-n.
func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s-%04d", prefix, i))
	}
	return out
}

// deliver sends one batch of MESSAGES_UPSERT deliveries for instance and
// fails t unless each is acked once, delivered.
func (s *testSink) deliver(t testing.TB, instance string, ids ...string) {
	t.Helper()
	batch := make([]sdk.Delivery, len(ids))
	for i, id := range ids {
		batch[i] = delivery(id, instance, "MESSAGES_UPSERT", "")
	}
	s.deliverBatch(t, batch)
}

func (s *testSink) deliverBatch(t testing.TB, batch []sdk.Delivery) *ackLog {
	t.Helper()
	acks := newAckLog()
	if err := s.Deliver(context.Background(), batch, acks); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	for _, d := range batch {
		if n := acks.n[d.ID]; n != 1 || acks.errs[d.ID] != nil {
			t.Fatalf("delivery %s: acked %d times, last with %v; want once, nil", d.ID, n, acks.errs[d.ID])
		}
	}
	return acks
}

func (s *testSink) stats() stats { return s.hub.snapshot() }

// dialer connects to the sink's socket as the host's proxy does.
func dialer(sock string) *websocket.Dialer {
	return &websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		HandshakeTimeout: patience,
	}
}

// msg is one message a client received.
type msg struct {
	Event    string          `json:"event"`
	Instance *string         `json:"instance"`
	Data     json.RawMessage `json:"data"`
	ID       string          `json:"id"`
	Since    string          `json:"since"`
	Oldest   *string         `json:"oldest"`
	raw      []byte
}

// reader reads a websocket connection in a goroutine of its own until it
// ends, keeps what the client embedding it makes of the messages (a list
// of T), and records why reading stopped.
type reader[T any] struct {
	conn *websocket.Conn
	mu   sync.Mutex
	got  []T
	err  error // why reading stopped
	done chan struct{}
}

func newReader[T any](conn *websocket.Conn) reader[T] {
	return reader[T]{conn: conn, done: make(chan struct{})}
}

// read hands each message to handle until the connection ends or handle
// returns an error.
func (r *reader[T]) read(handle func([]byte) error) {
	defer close(r.done)
	for {
		_, b, err := r.conn.ReadMessage()
		if err == nil {
			err = handle(b)
		}
		if err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return
		}
	}
}

// add keeps v.
func (r *reader[T]) add(v T) {
	r.mu.Lock()
	r.got = append(r.got, v)
	r.mu.Unlock()
}

// received returns what was kept so far.
func (r *reader[T]) received() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.got...)
}

// close closes the connection and waits for the reader.
func (r *reader[T]) close() {
	_ = r.conn.Close()
	<-r.done
}

// waitEnd waits until the connection ends and returns why.
func (r *reader[T]) waitEnd(t testing.TB) error {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(patience):
		t.Fatalf("the connection did not end within %s", patience)
	}
	return r.readErr()
}

func (r *reader[T]) readErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// wsClient is a connected client that reads every message into a list.
type wsClient struct {
	reader[msg]
	resp *http.Response
}

// connect dials path (e.g. /ws/a?since=x) and starts reading; it fails t
// unless the upgrade succeeds. The connection is closed at cleanup.
func (s *testSink) connect(t testing.TB, path string) *wsClient {
	t.Helper()
	c, err := s.tryConnect(t, path, nil, dialer(s.sock))
	if err != nil {
		t.Fatalf("connect %s: %v", path, err)
	}
	return c
}

func (s *testSink) tryConnect(t testing.TB, path string, h http.Header, d *websocket.Dialer) (*wsClient, error) {
	t.Helper()
	return s.connectWith(t, path, h, d, nil)
}

// connectWith is tryConnect that lets prepare set the connection's
// handlers before reading starts.
func (s *testSink) connectWith(t testing.TB, path string, h http.Header, d *websocket.Dialer, prepare func(*websocket.Conn)) (*wsClient, error) {
	t.Helper()
	conn, resp, err := d.Dial("ws://evorelay"+path, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w: status %d", err, resp.StatusCode)
		}
		return nil, err
	}
	c := &wsClient{reader: newReader[msg](conn), resp: resp}
	if prepare != nil {
		prepare(conn)
	}
	go c.read(c.record)
	t.Cleanup(c.close)
	return c, nil
}

// record keeps one message.
func (c *wsClient) record(b []byte) error {
	var m msg
	if err := json.Unmarshal(b, &m); err != nil {
		m.Event = "unparsable: " + err.Error()
	}
	m.raw = b
	c.add(m)
	return nil
}

func (c *wsClient) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// ids lists the ids of the messages received.
func (c *wsClient) ids() []string {
	var out []string
	for _, m := range c.received() {
		out = append(out, m.ID)
	}
	return out
}

// waitFor waits until the client has received a message with id.
func (c *wsClient) waitFor(t testing.TB, id string) {
	t.Helper()
	eventually(t, "a message with id "+id, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i := len(c.got) - 1; i >= 0; i-- {
			if c.got[i].ID == id {
				return true
			}
		}
		return c.err != nil
	})
	if !c.has(id) {
		t.Fatalf("the connection ended (%v) before %s arrived; got %v", c.readErr(), id, c.ids())
	}
}

func (c *wsClient) has(id string) bool {
	for _, got := range c.ids() {
		if got == id {
			return true
		}
	}
	return false
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
