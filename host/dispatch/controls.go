package dispatch

import (
	"container/heap"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/time/rate"

	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/host/store"
)

// The per-instance delivery controls the host applies to every sink, from
// the instance's settings: a rate limit ("rate_limit"), a circuit breaker
// ("circuit", on by default) and an expiry ("expire_after").
//
// A lane that must wait (its circuit is open, or its rate limit has more
// waiting than one batch) holds its deliveries on the spool's schedule
// untried, no attempt counted: they are "held". Held deliveries keep the
// instance's order: while one of an instance's held deliveries is away, a
// newer delivery of that instance is held behind it, at a due time no
// earlier, and the spool's schedule orders equal due times by id (ingest
// order). The record of what is held is in memory: after a restart the
// backlog flows again at once, and its order is the schedule's.

// Circuit is the process's circuit breaker, which an instance's "circuit"
// settings override.
type Circuit struct {
	// Failures is how many consecutive failed attempts open an instance's
	// circuit; 0 turns circuit breaking off.
	Failures int
	// CoolDown is how long an open circuit holds deliveries before one
	// probe goes out.
	CoolDown time.Duration
}

// DefaultCircuit opens after 20 consecutive failures and probes every 30 s.
var DefaultCircuit = Circuit{Failures: 20, CoolDown: 30 * time.Second}

// For is the breaker with an instance's own parts in place of the
// process's.
func (c Circuit) For(o *store.Circuit) Circuit {
	if o == nil {
		return c
	}
	if o.Failures != nil {
		c.Failures = *o.Failures
	}
	if o.CoolDown > 0 {
		c.CoolDown = o.CoolDown
	}
	return c
}

// ExpiredReason starts the reason of every dead letter that expired.
const ExpiredReason = "expired"

// heldStale is how long past its due a held delivery may stay away before
// the instance's order stops waiting for it (it was lost to a spool error,
// or the spool is slow to lease it); it is delivered when it comes back.
const heldStale = 2 * time.Minute

// circuitState is where an instance's circuit is.
type circuitState int

const (
	closed  circuitState = iota
	open                 // holding deliveries until probeAt
	probing              // one delivery out; the others wait for its answer
)

// control is one instance's controls within a sink's worker. Guarded by
// worker.mu.
type control struct {
	circuit  Circuit
	limit    *store.RateLimit
	limiter  *rate.Limiter
	wakeAt   time.Time // when a pump is already due for the limiter
	state    circuitState
	failures int                  // consecutive failed attempts
	streak   map[string]time.Time // those attempts' deliveries → their retry's due
	opened   time.Time
	probeAt  time.Time
	lastErr  string
	probe    string // the delivery sent as the probe

	held    map[string]time.Time // ids held on the schedule → due
	order   idHeap               // the same ids (and some returned), smallest first
	heldDue time.Time            // the latest due given; newer ones are held no earlier
}

// configure applies an instance's current settings.
func (c *control) configure(s store.Settings, process Circuit) {
	c.circuit = process.For(s.Circuit)
	switch {
	case s.RateLimit == nil:
		c.limit, c.limiter = nil, nil
	case c.limit == nil || *c.limit != *s.RateLimit:
		c.limit = s.RateLimit
		c.limiter = rate.NewLimiter(rate.Limit(s.RateLimit.PerSecond), s.RateLimit.Burst)
	}
}

// returned notes that a held delivery was leased again.
func (c *control) returned(id string) { delete(c.held, id) }

// hold records id as held until due, and returns due.
func (c *control) hold(id string, due time.Time) time.Time {
	if c.held == nil {
		c.held = map[string]time.Time{}
	}
	c.held[id] = due
	heap.Push(&c.order, id)
	if len(c.order) > 2*len(c.held)+64 {
		// Ids that came back stay in the heap until they reach its top;
		// a backlog held again every cool-down would pile them up.
		c.order = c.order[:0]
		for held := range c.held {
			c.order = append(c.order, held)
		}
		heap.Init(&c.order)
	}
	if due.After(c.heldDue) {
		c.heldDue = due
	}
	return due
}

// olderHeld reports whether a delivery older than id is held away.
func (c *control) olderHeld(id string, now time.Time) bool {
	for c.order.Len() > 0 {
		top := c.order[0]
		due, ok := c.held[top]
		if ok && now.Sub(due) < heldStale {
			return top < id
		}
		if ok {
			delete(c.held, top)
		}
		heap.Pop(&c.order)
	}
	c.heldDue = time.Time{}
	return false
}

// waitDue is when a delivery held now should come back: no earlier than
// those held before it, and not before the lane can take it.
func (c *control) waitDue(now time.Time, queued int) time.Time {
	due := now
	switch {
	case c.blocked(now):
		due = c.probeAt
	case c.state != closed:
		// A probe is out, or about to go: wait a little for its answer.
		due = now.Add(min(c.circuit.CoolDown, time.Second))
	}
	if c.limit != nil {
		due = maxTime(due, now.Add(time.Duration(float64(queued+1)/c.limit.PerSecond*float64(time.Second))))
	}
	return maxTime(due, c.heldDue)
}

// blocked reports whether the circuit holds every delivery now.
func (c *control) blocked(now time.Time) bool {
	return c.state == open && now.Before(c.probeAt)
}

// controlled reports whether the lane must keep at most one batch
// waiting, holding the rest on the schedule.
func (c *control) controlled() bool { return c.limiter != nil || c.state != closed }

// tokens says how many deliveries the rate limit lets go now, up to want,
// and takes them; with none, it says when the next one is.
func (c *control) tokens(now time.Time, want int) (int, time.Time) {
	if c.limiter == nil {
		return want, time.Time{}
	}
	n := min(want, int(c.limiter.TokensAt(now)))
	if n < 1 {
		missing := 1 - c.limiter.TokensAt(now)
		return 0, now.Add(time.Duration(missing / c.limit.PerSecond * float64(time.Second)))
	}
	c.limiter.AllowN(now, n)
	return n, time.Time{}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// expired returns the dead-letter reason of a delivery accepted longer ago
// than the instance's expire_after, or "". A replayed dead letter (tried
// afresh, with the reason it died) is exempt: replaying is asking for it.
func expired(d spool.Delivery, s store.Settings, now time.Time) string {
	if s.ExpireAfter <= 0 || (d.Attempt == 1 && d.LastError != "") {
		return ""
	}
	id, err := ulid.ParseStrict(d.ID)
	if err != nil {
		return ""
	}
	accepted := ulid.Time(id.Time())
	if now.Sub(accepted) <= s.ExpireAfter {
		return ""
	}
	return fmt.Sprintf("%s: not delivered within expire_after %s of its acceptance at %s", ExpiredReason, s.ExpireAfter, accepted.UTC().Format(time.RFC3339))
}

// idHeap is a min-heap of delivery ids (ULIDs sort by time).
type idHeap []string

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(string)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// OpenCircuit is one instance's open circuit to a sink, as /readyz shows it.
type OpenCircuit struct {
	Sink      string    `json:"sink"`
	Instance  string    `json:"instance"`
	Since     time.Time `json:"since"`
	NextProbe time.Time `json:"next_probe"`
	LastError string    `json:"last_error"`
}

// Circuits is every sink's open circuits, for /readyz. A nil *Circuits
// records nothing.
type Circuits struct {
	mu   sync.Mutex
	open map[string]map[string]OpenCircuit // sink → instance
}

// NewCircuits returns an empty board for Options.Circuits.
func NewCircuits() *Circuits { return &Circuits{open: map[string]map[string]OpenCircuit{}} }

// Open lists the open circuits, by sink, then instance.
func (b *Circuits) Open() []OpenCircuit {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []OpenCircuit{}
	for _, in := range b.open {
		for _, c := range in {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sink != out[j].Sink {
			return out[i].Sink < out[j].Sink
		}
		return out[i].Instance < out[j].Instance
	})
	return out
}

// set records c open, or closed when open is false.
func (b *Circuits) set(c OpenCircuit, open bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	in := b.open[c.Sink]
	if in == nil {
		in = map[string]OpenCircuit{}
		b.open[c.Sink] = in
	}
	if open {
		in[c.Instance] = c
	} else {
		delete(in, c.Instance)
	}
}

// control returns the instance's controls, made on first use. w.mu is held.
func (w *worker) control(instance string) *control {
	c := w.controls[instance]
	if c == nil {
		c = &control{circuit: w.opts.Circuit}
		w.controls[instance] = c
	}
	return c
}

// controlled reports whether an instance's lane is under a rate limit or
// a circuit that is not closed: it then has one batch at a time. w.mu is
// held.
func (w *worker) controlled(instance string) bool {
	c := w.controls[instance]
	return c != nil && c.controlled()
}

// admit decides, at lease time, what becomes of a delivery the instance's
// settings want: expired (a dead letter), held on the schedule, or queued
// in its lane (nil). w.mu is held.
func (w *worker) admit(d spool.Delivery, s store.Settings, l *lane, now time.Time) *spool.Result {
	c := w.control(d.Instance)
	c.returned(d.ID)
	c.configure(s, w.opts.Circuit)
	if c.circuit.Failures == 0 {
		w.closeCircuit(d.Instance, c, now, "circuit closed: the instance's settings turned it off")
	}
	if reason := expired(d, s, now); reason != "" {
		w.logger.Info("delivery expired; dead-lettered", "instance", d.Instance, "event", d.Event.Event, "delivery_id", d.ID, "expire_after", s.ExpireAfter)
		w.opts.Metrics.count(w.sink, "expired", 1)
		return &spool.Result{ID: d.ID, Outcome: spool.Dead, Reason: reason}
	}
	if c.blocked(now) || w.probeOut(c) || c.olderHeld(d.ID, now) || (c.controlled() && len(l.queue) >= w.opts.BatchSize) {
		due := c.hold(d.ID, c.waitDue(now, len(l.queue)))
		w.opts.Metrics.count(w.sink, "held", 1)
		return &spool.Result{ID: d.ID, Outcome: spool.Defer, Due: due}
	}
	return nil
}

// take says how many of the lane's queue, whose oldest is head, to send
// now, at most max: one probe when the circuit is due for one, what the
// rate limit allows, none while the circuit is open or its probe is out
// (an instance's chats are lanes of one circuit: the probe's answer
// decides for all). w.mu is held.
func (w *worker) take(inst, head string, max int, now time.Time) int {
	c := w.controls[inst]
	if c == nil {
		return max
	}
	switch {
	case c.blocked(now), w.probeOut(c):
		return 0
	case c.state != closed:
		// Due for a probe, or the probe never answered (its plugin
		// stopped): this one is the probe.
		c.state, c.probe = probing, head
		max = 1
	}
	n, next := c.tokens(now, max)
	if n == 0 && (!c.wakeAt.After(now) || next.Before(c.wakeAt)) {
		c.wakeAt = next
		time.AfterFunc(next.Sub(now), w.signal)
	}
	return n
}

// probeOut reports whether the instance's probe is at the plugin: its
// answer decides for all the instance's lanes, so no other delivery goes,
// nor waits in a lane (the instance's chats would each keep a batch in the
// sink's window). w.mu is held.
func (w *worker) probeOut(c *control) bool {
	return c.state == probing && w.sent[c.probe] != nil
}

// settleControls turns an ack's result into what the instance's circuit
// makes of it, and opens or closes the circuit. w.mu is held.
func (w *worker) settleControls(d spool.Delivery, ok bool, r spool.Result, now time.Time) (spool.Result, []spool.Result) {
	c := w.control(d.Instance)
	if ok {
		w.closeCircuit(d.Instance, c, now, "circuit closed: deliveries flow again")
		return r, nil
	}
	if c.circuit.Failures == 0 || r.Outcome == spool.Dead {
		return r, nil
	}
	reason := r.Reason
	c.lastErr = reason
	switch c.state {
	case probing:
		// The probe (or a delivery sent beside it) failed: it did not
		// count, and the circuit stays open for another cool-down.
		c.state, c.probeAt = open, now.Add(c.circuit.CoolDown)
		w.logger.Debug("circuit probe failed; still open", "instance", d.Instance, "next_probe", c.probeAt, "error", reason)
		w.opts.Circuits.set(w.openCircuit(d.Instance, c), true)
		r = spool.Result{ID: d.ID, Outcome: spool.Defer, Due: c.hold(d.ID, c.probeAt)}
		return r, w.holdLanes(d.Instance, c, c.probeAt)
	case open:
		// Sent before the circuit opened: tried, and tried again after
		// the cool-down, in order.
		r.Due = c.hold(d.ID, c.probeAt)
		return r, nil
	}
	c.failures++
	if c.streak == nil {
		c.streak = map[string]time.Time{}
	}
	c.streak[d.ID] = r.Due
	if c.failures < c.circuit.Failures {
		return r, nil
	}
	c.state, c.opened, c.probeAt = open, now, now.Add(c.circuit.CoolDown)
	for id, due := range c.streak {
		c.hold(id, due)
	}
	c.streak = nil
	r.Due = c.hold(d.ID, maxTime(r.Due, c.probeAt))
	w.logger.Warn("circuit opened: the instance's deliveries wait, untried, for a probe after the cool-down",
		"instance", d.Instance, "failures", c.failures, "cool_down", c.circuit.CoolDown, "error", reason)
	w.opts.Circuits.set(w.openCircuit(d.Instance, c), true)
	w.open++
	w.opts.Metrics.circuits(w.sink, w.open)
	return r, w.holdLanes(d.Instance, c, c.probeAt)
}

// closeCircuit closes the instance's circuit, if open. w.mu is held.
func (w *worker) closeCircuit(instance string, c *control, now time.Time, why string) {
	if c.state != closed {
		w.logger.Info(why, "instance", instance, "open_for", now.Sub(c.opened).Round(time.Millisecond))
		w.opts.Circuits.set(OpenCircuit{Sink: w.sink, Instance: instance}, false)
		w.open--
		w.opts.Metrics.circuits(w.sink, w.open)
	}
	c.state, c.failures, c.streak = closed, 0, nil
}

func (w *worker) openCircuit(instance string, c *control) OpenCircuit {
	return OpenCircuit{Sink: w.sink, Instance: instance, Since: c.opened.UTC(), NextProbe: c.probeAt.UTC(), LastError: c.lastErr}
}

// holdLanes holds what waits in the instance's lanes until due. w.mu is
// held.
func (w *worker) holdLanes(instance string, c *control, due time.Time) []spool.Result {
	var out []spool.Result
	for k, l := range w.lanes {
		if k.instance != instance {
			continue
		}
		for _, p := range l.queue {
			out = append(out, spool.Result{ID: p.d.ID, Outcome: spool.Defer, Due: c.hold(p.d.ID, due)})
		}
		w.leased -= len(l.queue)
		l.queue = nil
	}
	w.opts.Metrics.count(w.sink, "held", len(out))
	return out
}
