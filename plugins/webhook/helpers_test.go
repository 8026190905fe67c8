package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// seen is one request as a receiver observed it.
type seen struct {
	method string
	path   string
	query  string
	header http.Header
	body   []byte
}

// receiver is an HTTP server on 127.0.0.1 that records every request and
// answers with respond (200 when nil).
type receiver struct {
	*httptest.Server
	got  chan seen
	done chan struct{} // closed when the test ends: hanging handlers return
}

func newReceiver(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, done <-chan struct{})) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan seen, 64), done: make(chan struct{})}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: read the body: %v", err)
		}
		rc.got <- seen{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(), body: b}
		if respond != nil {
			respond(w, r, rc.done)
		}
	}))
	t.Cleanup(rc.Close)
	t.Cleanup(func() { close(rc.done) }) // runs before Close
	return rc
}

// one returns the one request the receiver got, failing when it got none.
func (rc *receiver) one(t *testing.T) seen {
	t.Helper()
	select {
	case s := <-rc.got:
		return s
	default:
		t.Fatal("the receiver got no request")
		return seen{}
	}
}

// none fails when the receiver got a request.
func (rc *receiver) none(t *testing.T) {
	t.Helper()
	select {
	case s := <-rc.got:
		t.Fatalf("the receiver got %s %s, want nothing", s.method, s.path)
	default:
	}
}

// ack is one Acks.Done call.
type ack struct {
	id  string
	err error
}

// testAcks records acknowledgements on a channel.
type testAcks struct{ ch chan ack }

func newAcks(n int) *testAcks                 { return &testAcks{ch: make(chan ack, n)} }
func (a *testAcks) Done(id string, err error) { a.ch <- ack{id, err} }

// openSink opens a sink with process settings and naming, and an egress
// policy that allows loopback, where the tests' receivers listen (as
// EVORELAY_EGRESS_ALLOW=127.0.0.0/8,::1 does); it is closed when the test
// ends.
func openSink(t *testing.T, settings map[string]string, naming events.Naming) *Sink {
	t.Helper()
	return openSinkWith(t, settings, naming, policy(t, loopback, ""))
}

// loopback is the allow list under which the tests' receivers are
// reachable.
const loopback = "127.0.0.0/8,::1"

// openSinkWith is openSink with the egress policy p.
func openSinkWith(t *testing.T, settings map[string]string, naming events.Naming, p egress.Policy) *Sink {
	t.Helper()
	s := New()
	err := s.Open(context.Background(), sdk.Config{
		Settings:  settings,
		Naming:    naming,
		ServerURL: "https://evorelay.example.com",
		Logger:    sinktest.TestLogger(t, hclog.Debug),
		Egress:    p,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// policy is the egress policy of the comma-separated CIDRs in
// EVORELAY_EGRESS_ALLOW and EVORELAY_EGRESS_DENY.
func policy(t *testing.T, allow, deny string) egress.Policy {
	t.Helper()
	a, err := egress.ParseCIDRs(allow)
	if err != nil {
		t.Fatal(err)
	}
	d, err := egress.ParseCIDRs(deny)
	if err != nil {
		t.Fatal(err)
	}
	return egress.New(a, d)
}

// settings validates a settings object through the sink, as the host
// does before storing it.
func settings(t *testing.T, s *Sink, raw string) json.RawMessage {
	t.Helper()
	out, err := s.Validate(context.Background(), "shop-1", json.RawMessage(raw))
	if err != nil {
		t.Fatalf("Validate(%s): %v", raw, err)
	}
	return out
}

// envelope reads testdata/envelope.json, or a variant of it.
func envelope(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func delivery(id, event string, env []byte, set json.RawMessage) sdk.Delivery {
	return sdk.Delivery{ID: id, Instance: "shop-1", Event: event, Attempt: 1, Envelope: env, Settings: set}
}

// deliver runs one batch and returns each delivery's outcome, failing
// when a delivery is acked twice or never.
func deliver(t *testing.T, s *Sink, batch ...sdk.Delivery) map[string]error {
	t.Helper()
	acks := newAcks(len(batch) * 2)
	if err := s.Deliver(context.Background(), batch, acks); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	close(acks.ch)
	got := map[string]error{}
	count := map[string]int{}
	for a := range acks.ch {
		count[a.id]++
		got[a.id] = a.err
	}
	for _, d := range batch {
		if count[d.ID] != 1 {
			t.Errorf("delivery %s acked %d times, want once", d.ID, count[d.ID])
		}
	}
	return got
}

// verdict is what the host is told of an outcome.
type verdict struct {
	kind    string // ok, retry or reject
	after   time.Duration
	disable bool
}

// verdictOf reads an outcome as the SDK's adapter does when it builds the
// ack (OK, RETRY with retry_after, REJECT with disable). The SDK exports
// no accessor for the delay or the disable flag, so this reads its error
// types' fields; a renamed field makes the tests that expect a delay or a
// disable fail, not pass.
func verdictOf(err error) verdict {
	if err == nil {
		return verdict{kind: "ok"}
	}
	v := verdict{kind: "retry"}
	if sdk.IsPermanent(err) {
		v.kind = "reject"
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		rv := reflect.ValueOf(e)
		if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
			continue
		}
		st := rv.Elem()
		if f := st.FieldByName("after"); f.IsValid() && f.Type() == reflect.TypeFor[time.Duration]() && v.kind == "retry" {
			v.after = time.Duration(f.Int())
		}
		if f := st.FieldByName("disable"); f.IsValid() && f.Kind() == reflect.Bool {
			v.disable = f.Bool()
		}
	}
	return v
}

// fields lists the fields FieldErrors name, sorted.
func fields(err error) []string {
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) {
		return nil
	}
	out := make([]string, 0, len(fe))
	for _, e := range fe {
		out = append(out, e.Field)
	}
	sort.Strings(out)
	return out
}
