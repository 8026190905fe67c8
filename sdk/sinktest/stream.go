package sinktest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// Envelope is an event as the host hands it to a sink, with data as its
// data member and fixed values for the other members.
func Envelope(t testing.TB, instance, event string, data any) []byte {
	t.Helper()
	d, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(events.Envelope{
		Event: event, Instance: instance, Data: d,
		DateTime: "2024-01-01T12:00:00.000Z", Sender: "5511999999999@s.whatsapp.net",
		ServerURL: "http://engine:8080", APIKey: "engine-key",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Delivery is a first attempt of event for instance, its data a message
// key carrying id, with settings as the instance's settings.
func Delivery(t testing.TB, id, instance, event, settings string) sdk.Delivery {
	return sdk.Delivery{
		ID: id, Instance: instance, Event: event, Attempt: 1,
		Envelope: Envelope(t, instance, event, map[string]any{"key": map[string]any{"id": id}}),
		Settings: json.RawMessage(settings),
	}
}

// StreamOutage takes a destination away while deliveries stream in, as
// the host sends them, and brings it back. Run checks that the sink
// answers retries while the destination is gone (never hangs), reports
// itself not ready, reconnects on its own once it is back, and that in the
// end every delivery acked as delivered is at the destination.
type StreamOutage struct {
	// Sink is open; Settings have been validated for Instance.
	Sink     sdk.Sink
	Instance string
	Settings string
	// Down takes the destination away; Up brings it back.
	Down, Up func(t testing.TB)
	// WhileDown, if set, runs once the sink has reported the outage.
	WhileDown func(t testing.TB)
	// Stored counts, by delivery ID, the MESSAGES_UPSERT deliveries that
	// reached the destination.
	Stored func(t testing.TB) map[string]int
	// Where names the destination in messages ("queue", "stream").
	Where string
}

// Run streams MESSAGES_UPSERT deliveries with IDs Instance-000001, … to
// Sink through the outage.
func (o StreamOutage) Run(t *testing.T) {
	t.Helper()
	h := &hostSim{t: t, s: o.Sink, instance: o.Instance, settings: o.Settings, delivered: map[string]bool{}, producing: true}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { h.run(stop) })
	defer func() { close(stop); wg.Wait() }()
	ready := func() bool { return o.Sink.Health(context.Background()).Ready }

	Eventually(t, "200 deliveries before the outage", time.Minute, func() bool { _, d := h.counts(); return d >= 200 })
	before := h.retries.Load()
	o.Down(t)
	Eventually(t, "the sink to report the outage", time.Minute, func() bool { return !ready() })
	Eventually(t, "deliveries retried during the outage", time.Minute, func() bool { return h.retries.Load() > before+20 })
	t.Logf("during the outage: %s", o.Sink.Health(context.Background()).Detail)
	if o.WhileDown != nil {
		o.WhileDown(t)
	}
	o.Up(t)
	Eventually(t, "the sink to reconnect", 2*time.Minute, ready)
	_, mark := h.counts()
	Eventually(t, "deliveries after the outage", time.Minute, func() bool { _, d := h.counts(); return d >= mark+200 })
	h.mu.Lock()
	h.producing = false
	h.mu.Unlock()
	Eventually(t, "every delivery acked as delivered", 3*time.Minute, func() bool { p, d := h.counts(); return d == p })

	produced, _ := h.counts()
	seen := o.Stored(t)
	dups := 0
	for i := 1; i <= produced; i++ {
		id := h.id(i)
		switch n := seen[id]; {
		case n == 0:
			t.Errorf("delivery %s was acked as delivered but is not in the %s", id, o.Where)
		case n > 1:
			dups += n - 1
			t.Logf("delivery %s is in the %s %d times (at-least-once)", id, o.Where, n)
		}
	}
	t.Logf("%d deliveries, %d retries, %d duplicates in the %s", produced, h.retries.Load(), dups, o.Where)
}

// hostSim plays the host: it hands the sink a stream of deliveries in
// batches and hands back, with the next attempt number, every delivery
// acked with an error, until each one has been acked as delivered.
type hostSim struct {
	t        *testing.T
	s        sdk.Sink
	instance string
	settings string

	mu        sync.Mutex
	queue     []sdk.Delivery // to deliver
	delivered map[string]bool
	produced  int
	producing bool

	retries atomic.Int64
}

func (h *hostSim) id(i int) string { return fmt.Sprintf("%s-%06d", h.instance, i) }

func (h *hostSim) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		h.mu.Lock()
		for h.producing && len(h.queue) < 10 {
			h.produced++
			h.queue = append(h.queue, Delivery(h.t, h.id(h.produced), h.instance, "MESSAGES_UPSERT", h.settings))
		}
		n := min(len(h.queue), 10)
		batch := append([]sdk.Delivery(nil), h.queue[:n]...)
		h.queue = h.queue[n:]
		h.mu.Unlock()
		if len(batch) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}

		r := NewAcks()
		_ = h.s.Deliver(context.Background(), batch, r)
		failed := 0
		h.mu.Lock()
		for _, d := range batch {
			got := r.Outcomes(d.ID)
			switch {
			case len(got) != 1:
				h.t.Errorf("delivery %s acked %d times: %v", d.ID, len(got), got)
			case got[0] == nil:
				h.delivered[d.ID] = true
			case sdk.IsPermanent(got[0]):
				h.t.Errorf("delivery %s rejected as permanent: %v", d.ID, got[0])
			default:
				failed++
				d.Attempt++
				h.queue = append(h.queue, d)
			}
		}
		h.mu.Unlock()
		h.retries.Add(int64(failed))
		if failed > 0 {
			time.Sleep(100 * time.Millisecond) // the host's retry backoff
		} else {
			time.Sleep(5 * time.Millisecond) // a steady stream, not a flood
		}
	}
}

func (h *hostSim) counts() (produced, delivered int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.produced, len(h.delivered)
}
