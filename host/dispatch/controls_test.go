package dispatch

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/evorelay/evorelay/host/spool"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// arrival is one delivery as the destination saw it.
type arrival struct {
	id, instance string
	at           time.Time
}

// recorder is a destination that notes every attempt.
type recorder struct {
	mu  sync.Mutex
	all []arrival
}

func (rec *recorder) note(d *sinkv1.Delivery) {
	rec.mu.Lock()
	rec.all = append(rec.all, arrival{d.GetId(), d.GetInstance(), time.Now()})
	rec.mu.Unlock()
}

func (rec *recorder) of(instance string) []arrival {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []arrival
	for _, a := range rec.all {
		if a.instance == instance {
			out = append(out, a)
		}
	}
	return out
}

// distinct counts the deliveries of instance that arrived, each once.
func (rec *recorder) distinct(instance string) int {
	seen := map[string]bool{}
	for _, a := range rec.of(instance) {
		seen[a.id] = true
	}
	return len(seen)
}

// A rate-limited instance's backlog arrives in order, never faster than
// its limit, while another instance's events go through unhindered.
func TestRateLimit(t *testing.T) {
	rec := &recorder{}
	r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack { rec.note(d); return ok(d) }, Options{})
	const perSecond, burst, n = 100, 10, 500
	r.set("slow", fmt.Sprintf(`{"enabled":true,"events":[],"rate_limit":{"per_second":%d,"burst":%d}}`, perSecond, burst))
	r.set("fast", `{"enabled":true,"events":[]}`)
	// The slow instance's events are of five chats: under a rate limit it
	// is one lane all the same, in one order.
	var slow []string
	for i := range n {
		slow = append(slow, r.addTo("slow", fmt.Sprintf("chat%d@s.whatsapp.net", i%5), "MESSAGES_UPSERT", 1)...)
	}
	fast := r.add("fast", "MESSAGES_UPSERT", 200)
	eventually(t, "the slow instance's backlog", func() bool { return len(rec.of("slow")) >= n })

	got := rec.of("slow")
	if len(got) != n {
		t.Fatalf("%d deliveries to the slow instance, want %d (none tried twice)", len(got), n)
	}
	for i, a := range got {
		if a.id != slow[i] {
			t.Fatalf("delivery %d is %s, want %s: out of order", i, a.id, slow[i])
		}
	}
	// A token bucket lets burst go at once, then one every 1/perSecond:
	// in any second, at most burst+perSecond arrive. The receiver notes
	// an arrival a little after it was let go: allow 5 (50 ms) of jitter.
	for i, a := range got {
		in := 0
		for _, b := range got[i:] {
			if b.at.Sub(a.at) < time.Second {
				in++
			}
		}
		if in > burst+perSecond+5 {
			t.Fatalf("%d deliveries arrived within a second of delivery %d; the limit allows %d", in, i, burst+perSecond)
		}
	}
	if span, least := got[n-1].at.Sub(got[0].at), time.Duration(float64(n-burst)/perSecond*float64(time.Second)); span < least-50*time.Millisecond {
		t.Fatalf("the backlog arrived over %v; the limit spreads it over at least %v", span, least)
	}
	// The other instance is not held back: all of it arrived before the
	// slow one was half way.
	fastDone := rec.of("fast")
	if len(fastDone) != len(fast) {
		t.Fatalf("%d of the fast instance's %d events", len(fastDone), len(fast))
	}
	if last := fastDone[len(fastDone)-1].at; !last.Before(got[n/2].at) {
		t.Fatalf("the fast instance's last event arrived after the slow one's %dth: it was slowed", n/2)
	}
}

// A destination that is down opens the circuit: the instance's deliveries
// wait untried, one probe goes out per cool-down, and once the destination
// is back everything arrives, in order, with no dead letters.
func TestCircuitHoldsBacklogUntilDestinationReturns(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	rec := &recorder{}
	circuits := NewCircuits()
	const batch, failures = 20, 5
	r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack {
		rec.note(d)
		if down.Load() && d.GetInstance() == "down" {
			return &sinkv1.Ack{Id: d.GetId(), Outcome: sinkv1.Outcome_OUTCOME_RETRY, Reason: "HTTP 503"}
		}
		return ok(d)
	}, Options{
		BatchSize: batch, Circuits: circuits,
		// A short schedule: without the circuit, the backlog would be
		// dead letters within a second.
		Policy: Policy{Schedule: []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}},
	})
	r.set("down", fmt.Sprintf(`{"enabled":true,"events":[],"circuit":{"failures":%d,"cool_down":"150ms"}}`, failures))
	r.set("up", `{"enabled":true,"events":[]}`)
	want := r.add("down", "MESSAGES_UPSERT", 300)
	up := r.add("up", "MESSAGES_UPSERT", 50)

	// Five probes: the circuit stays open across several cool-downs.
	eventually(t, "the circuit open and probed five times", func() bool {
		n := 0
		for _, a := range rec.of("down") {
			if a.id == want[0] {
				n++
			}
		}
		return len(circuits.Open()) == 1 && n >= 6
	})
	attemptsDown := rec.of("down")
	tried := map[string]int{}
	for _, a := range attemptsDown {
		tried[a.id]++
	}
	// What was at the plugin when the circuit opened was tried; after
	// that, only the probe, and it is the oldest delivery each time.
	if len(tried) > 2*batch {
		t.Fatalf("%d distinct deliveries tried while the destination was down, want at most the two batches at the plugin (%d)", len(tried), 2*batch)
	}
	probes := 0
	for i := len(attemptsDown) - 1; i >= 0 && attemptsDown[i].id == want[0]; i-- {
		probes++
	}
	if probes < 5 {
		t.Fatalf("the last attempts were not five probes of the oldest delivery %s: %v", want[0], attemptsDown[len(attemptsDown)-5:])
	}
	if oc := circuits.Open()[0]; oc.Instance != "down" || oc.Sink != "test" || oc.LastError != "HTTP 503" {
		t.Fatalf("open circuit %+v", oc)
	}
	if got := len(rec.of("up")); got != len(up) {
		t.Fatalf("the healthy instance got %d of %d while the other's circuit was open", got, len(up))
	}

	down.Store(false)
	eventually(t, "every event once the destination is back", func() bool { return rec.distinct("down") == len(want) })
	if n := r.spool.Stats().Dead["test"]; n != 0 {
		t.Fatalf("%d dead letters; the destination came back within the retry window", n)
	}
	// In order: each delivery's first successful arrival follows the
	// previous one's.
	var order []string
	done := map[string]bool{}
	for _, a := range rec.of("down")[len(attemptsDown):] {
		if !done[a.id] {
			done[a.id] = true
			order = append(order, a.id)
		}
	}
	for i, id := range order {
		if id != want[i] {
			t.Fatalf("after the destination came back, delivery %d was %s, want %s: out of order", i, id, want[i])
		}
	}
	eventually(t, "the circuit closed", func() bool { return len(circuits.Open()) == 0 })
}

// An instance whose deliveries are ordered by chat (the default) has one
// circuit for all its chats: once it opens, its chats' lanes are held
// and one probe at a time goes out, of whichever chat; once the
// destination is back, each chat's backlog arrives in order.
func TestCircuitHoldsEveryChat(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	rec := &recorder{}
	circuits := NewCircuits()
	const coolDown = 150 * time.Millisecond
	r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack {
		rec.note(d)
		if down.Load() {
			return &sinkv1.Ack{Id: d.GetId(), Outcome: sinkv1.Outcome_OUTCOME_RETRY, Reason: "HTTP 503"}
		}
		return ok(d)
	}, Options{
		BatchSize: 10, Circuits: circuits,
		Policy: Policy{Schedule: []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}},
	})
	r.set("down", `{"enabled":true,"events":[],"circuit":{"failures":5,"cool_down":"150ms"}}`)
	chats := []string{"a@s.whatsapp.net", "b@s.whatsapp.net", "c@g.us"}
	want := map[string][]string{}
	chatOf := map[string]string{}
	for range 10 {
		for _, c := range chats {
			for _, id := range r.addTo("down", c, "MESSAGES_UPSERT", 5) {
				want[c] = append(want[c], id)
				chatOf[id] = c
			}
		}
	}

	// probes are the attempts since the circuit opened and the cool-down
	// passed once: the deliveries at the plugin when it opened are tried
	// until then.
	probes := func() []arrival {
		open := circuits.Open()
		if len(open) == 0 {
			return nil
		}
		var out []arrival
		for _, a := range rec.of("down") {
			if a.at.After(open[0].Since.Add(coolDown)) {
				out = append(out, a)
			}
		}
		return out
	}
	eventually(t, "the circuit open and probed five times", func() bool { return len(probes()) >= 5 })
	tried := probes()
	for i := 1; i < len(tried); i++ {
		if gap := tried[i].at.Sub(tried[i-1].at); gap < coolDown/2 {
			t.Fatalf("attempts %s and %s came %v apart while the circuit was open; want one probe a cool-down", tried[i-1].id, tried[i].id, gap)
		}
	}
	before := len(rec.of("down"))

	down.Store(false)
	eventually(t, "every event once the destination is back", func() bool { return rec.distinct("down") == len(chatOf) })
	got := map[string][]string{}
	done := map[string]bool{}
	for _, a := range rec.of("down")[before:] {
		if !done[a.id] {
			done[a.id] = true
			got[chatOf[a.id]] = append(got[chatOf[a.id]], a.id)
		}
	}
	for _, c := range chats {
		if fmt.Sprint(got[c]) != fmt.Sprint(want[c]) {
			t.Errorf("chat %s: after the destination came back its deliveries arrived as %v, out of order", c, got[c])
		}
	}
	eventually(t, "the circuit closed", func() bool { return len(circuits.Open()) == 0 })
}

// A circuit of failures 0 never opens: the retry schedule alone decides.
func TestCircuitOff(t *testing.T) {
	r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack {
		return &sinkv1.Ack{Id: d.GetId(), Outcome: sinkv1.Outcome_OUTCOME_RETRY, Reason: "HTTP 503"}
	}, Options{Circuit: Circuit{Failures: 1, CoolDown: time.Hour}, Policy: Policy{Schedule: []time.Duration{0, time.Millisecond}}})
	r.set("x", `{"enabled":true,"events":[],"circuit":{"failures":0}}`)
	r.add("x", "MESSAGES_UPSERT", 30)
	eventually(t, "every delivery dead after its two attempts", func() bool { return r.spool.Stats().Dead["test"] == 30 })
}

// newULID is an event id accepted at t.
func newULID(t time.Time) string {
	return ulid.MustNew(ulid.Timestamp(t), rand.Reader).String()
}

// Deliveries accepted longer ago than expire_after become dead letters
// with reason expired; the others are delivered; a replayed one is
// delivered too.
func TestExpireAfter(t *testing.T) {
	rec := &recorder{}
	r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack { rec.note(d); return ok(d) }, Options{})
	r.set("x", `{"enabled":true,"events":[],"expire_after":"1h"}`)
	var old, fresh []string
	var evs []spool.Event
	for i := range 6 {
		at, list := time.Now().Add(-2*time.Hour), &old
		if i%2 == 1 {
			at, list = time.Now().Add(-time.Minute), &fresh
		}
		id := newULID(at)
		*list = append(*list, id)
		evs = append(evs, spool.Event{ID: id, Instance: "x", Event: "MESSAGES_UPSERT", Envelope: []byte(`{}`)})
	}
	if err := r.spool.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	eventually(t, "three dead letters", func() bool { return r.spool.Stats().Dead["test"] == 3 })
	eventually(t, "three deliveries", func() bool { return len(rec.of("x")) == 3 })
	for i, a := range rec.of("x") {
		if a.id != fresh[i] {
			t.Fatalf("delivered %s, want the fresh %s", a.id, fresh[i])
		}
	}
	dl, err := r.spool.DeadLetters("test", "x", 0, "")
	if err != nil || len(dl) != 3 {
		t.Fatalf("dead letters %+v (%v)", dl, err)
	}
	for _, d := range dl {
		if !strings.HasPrefix(d.Reason, "expired: ") {
			t.Fatalf("dead letter %s: reason %q, want expired", d.ID, d.Reason)
		}
	}
	if n, err := r.spool.Replay("test", "x", []string{old[1]}); n != 1 || err != nil {
		t.Fatalf("replay: %d %v", n, err)
	}
	eventually(t, "the replayed one delivered", func() bool { return len(rec.of("x")) == 4 })
	if got := rec.of("x")[3].id; got != old[1] {
		t.Fatalf("delivered %s after the replay, want %s", got, old[1])
	}
}

// Holding the same backlog again and again keeps the record of what is
// held as small as the backlog.
func TestHeldRecordStaysSmall(t *testing.T) {
	var c control
	now := time.Now()
	for round := range 50 {
		for i := range 1000 {
			id := fmt.Sprintf("%06d", i)
			c.returned(id)
			c.hold(id, now.Add(time.Duration(round)*time.Second))
		}
	}
	if len(c.held) != 1000 || len(c.order) > 2*1000+64 {
		t.Fatalf("%d held, %d in the order heap; want 1000 and at most %d", len(c.held), len(c.order), 2*1000+64)
	}
	if !c.olderHeld("000500", now) || c.olderHeld("000000", now) {
		t.Fatal("olderHeld wrong after the heap was rebuilt")
	}
}
