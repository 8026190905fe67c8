package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
	"github.com/evorelay/evorelay/sdk/sinktest/faultproxy"
)

// hostSim plays the host: it hands the sink a stream of deliveries in
// batches and hands back, with the next attempt number, every delivery
// acked with an error, until each one has been acked as delivered.
type hostSim struct {
	t        *testing.T
	s        *Sink
	instance string
	settings string

	mu        sync.Mutex
	queue     []sdk.Delivery // to deliver
	delivered map[string]bool
	produced  int
	producing bool

	retries atomic.Int64
}

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
			h.queue = append(h.queue, delivery(h.t, fmt.Sprintf("%s-%06d", h.instance, h.produced), h.instance, "MESSAGES_UPSERT", h.settings))
		}
		n := min(len(h.queue), 10)
		batch := append([]sdk.Delivery(nil), h.queue[:n]...)
		h.queue = h.queue[n:]
		h.mu.Unlock()
		if len(batch) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}

		r := sinktest.NewAcks()
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

// The broker goes away while deliveries stream in — its connections cut,
// reset or stalled by a proxy between sink and broker; the machine's
// broker itself stays up for everyone else: the sink answers retries while
// it is cut off (never hangs), reconnects on its own once the way is clear
// again, and in the end every delivery was confirmed and is in the queue
// at least once.
func TestBrokerOutage(t *testing.T) {
	for _, fault := range []faultproxy.Fault{faultproxy.Cut, faultproxy.Reset, faultproxy.Stall} {
		t.Run(fault.String(), func(t *testing.T) { brokerOutage(t, fault) })
	}
}

func brokerOutage(t *testing.T, fault faultproxy.Fault) {
	proxy := faultproxy.Start(t, brokerAddr)
	s := openSinkAt(t, "amqp://guest:guest@"+proxy.Addr()+"/", events.NamingSeed,
		map[string]string{"heartbeat": "1s", "reconnect_max_delay": "1s", "confirm_timeout": "5s"})
	inst := unique("t-outage")
	cleanupBroker(t, inst, instanceQueues(inst)...)
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"]}`
	if _, err := s.Validate(context.Background(), inst, []byte(settings)); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	h := &hostSim{t: t, s: s, instance: inst, settings: settings, delivered: map[string]bool{}, producing: true}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { h.run(stop) })
	defer func() { close(stop); wg.Wait() }()

	sinktest.Eventually(t, "200 deliveries before the outage", time.Minute, func() bool { _, d := h.counts(); return d >= 200 })
	before := h.retries.Load()
	proxy.Inject(fault)
	sinktest.Eventually(t, "the sink to report the outage", time.Minute, func() bool { return !s.Health(context.Background()).Ready })
	sinktest.Eventually(t, "deliveries retried during the outage", time.Minute, func() bool { return h.retries.Load() > before+20 })
	t.Logf("during the outage: %s", s.Health(context.Background()).Detail)
	proxy.Restore()
	sinktest.Eventually(t, "the sink to reconnect", 2*time.Minute, func() bool { return s.Health(context.Background()).Ready })
	_, mark := h.counts()
	sinktest.Eventually(t, "deliveries after the outage", time.Minute, func() bool { _, d := h.counts(); return d >= mark+200 })
	h.mu.Lock()
	h.producing = false
	h.mu.Unlock()
	sinktest.Eventually(t, "every delivery acked as delivered", 3*time.Minute, func() bool { p, d := h.counts(); return d == p })

	produced, _ := h.counts()
	seen := map[string]int{}
	for _, m := range dialBroker(t).drain(inst + ".messages.upsert") {
		seen[m.MessageId]++
	}
	dups := 0
	for i := 1; i <= produced; i++ {
		id := fmt.Sprintf("%s-%06d", inst, i)
		switch n := seen[id]; {
		case n == 0:
			t.Errorf("delivery %s was acked as delivered but is not in the queue", id)
		case n > 1:
			dups += n - 1
			t.Logf("delivery %s is in the queue %d times (at-least-once)", id, n)
		}
	}
	t.Logf("%d deliveries, %d retries, %d duplicates in the queue", produced, h.retries.Load(), dups)
}
