package sinktest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// Acks is an in-memory sdk.Acks for a plugin's own tests: it records every
// outcome. It is safe for concurrent use.
type Acks struct {
	mu  sync.Mutex
	got map[string][]error
	n   int
}

// NewAcks returns an empty recorder.
func NewAcks() *Acks { return &Acks{got: map[string][]error{}} }

// Done records an outcome.
func (a *Acks) Done(id string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got[id] = append(a.got[id], err)
	a.n++
}

// Outcomes returns every outcome recorded for id, in order.
func (a *Acks) Outcomes(id string) []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]error(nil), a.got[id]...)
}

// Len is how many acks were recorded, for every id.
func (a *Acks) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// Deliver hands batch to s.Deliver as the SDK does in a plugin process,
// with each envelope's event written per naming, and returns each
// delivery's outcome. It fails t if Deliver returns an error or a delivery
// is not acknowledged exactly once by the time Deliver returns. The batch
// is one instance's, as the host sends it; its deliveries carry Settings.
func Deliver(t testing.TB, s sdk.Sink, naming events.Naming, batch ...sdk.Delivery) map[string]error {
	t.Helper()
	named := make([]sdk.Delivery, len(batch))
	for i, d := range batch {
		if env, err := events.WithEvent(d.Envelope, naming.Name(d.Event)); err == nil {
			d.Envelope = env
		}
		named[i] = d
	}
	acks := NewAcks()
	if err := s.Deliver(context.Background(), named, acks); err != nil {
		t.Fatalf("Deliver returned %v", err)
	}
	out := map[string]error{}
	for _, d := range batch {
		got := acks.Outcomes(d.ID)
		if len(got) != 1 {
			t.Fatalf("delivery %s acknowledged %d times, want once: %v", d.ID, len(got), got)
		}
		out[d.ID] = got[0]
	}
	return out
}

// Eventually polls cond every 20ms until it holds, and fails t with what
// it was waiting for after limit. It is for conditions a test cannot be
// told about (a message reaching a broker), not a measure of speed: give a
// generous limit.
func Eventually(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Outcome writes an ack's error as the host reads it: "ok", "retry: …"
// or "reject: …".
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case sdk.IsPermanent(err):
		return "reject: " + err.Error()
	}
	return "retry: " + err.Error()
}

// FieldError fails t unless err is sdk.FieldErrors with one on field whose
// message contains msg, as Validate must answer settings it refuses.
func FieldError(t testing.TB, err error, field, msg string) {
	t.Helper()
	fe, ok := err.(sdk.FieldErrors)
	if !ok {
		t.Fatalf("error %v (%T), want sdk.FieldErrors", err, err)
	}
	for _, e := range fe {
		if e.Field == field && strings.Contains(e.Message, msg) {
			return
		}
	}
	t.Fatalf("field errors %v, want one on %q containing %q", fe, field, msg)
}

// DeliverOK is Deliver that fails t, after naming each one, unless every
// delivery of batch was acked as delivered.
func DeliverOK(t testing.TB, s sdk.Sink, naming events.Naming, batch ...sdk.Delivery) {
	t.Helper()
	failed := false
	for id, err := range Deliver(t, s, naming, batch...) {
		if err != nil {
			t.Errorf("delivery %s acked %v, want delivered", id, err)
			failed = true
		}
	}
	if failed {
		t.FailNow()
	}
}
