// Package dispatch moves events from the spool to the sink plugins: per
// sink, lease a batch, keep the deliveries whose instance has that sink
// enabled and subscribed to the event, send them to the plugin in one
// stream message, and settle each by its ack: done, retry on the policy's
// schedule, or dead letter. Each sink has its own worker, position and
// in-flight window, so a slow sink never holds up another.
//
// Within a sink, each instance's deliveries go in lanes: one per chat
// (events.Chat; events without a chat share the instance's own lane), or
// one for the whole instance with "ordering": "instance" or a rate limit.
// A lane's deliveries go to the plugin in ingest order, at most two
// batches of them at a time (the next batch travels while the plugin works
// on the previous one; the SDK runs a lane's batches one after the other),
// while other lanes run concurrently. Batches the plugin said are on their way (a
// broker sink published them and awaits their confirms: sdk.Sent) do not
// count against those two, up to eight batches of a lane at the plugin. A
// lane under a rate limit or an open circuit has one batch at a time, and
// so does every lane of a plugin built with an SDK of protocol 1. So
// without failures a lane's events reach a sink in the order they were
// accepted. A lane whose batch has had no ack for StallAfter is stalled
// (its destination hangs): its waiting deliveries, and the newer ones
// leased while it stays stalled, are deferred to the spool's schedule (no
// attempt counted), so they do not fill the window other instances need. A
// delivery that fails is retried on the schedule and does not block the
// ones behind it. Retries and stalls are where a lane's order can change.
//
// It knows the spool's leases and the plugin's stream, not HTTP. Settings
// are read from memory; delivering an event never reads the disk for them.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk/events"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// Spool is what dispatch needs of the spool.
type Spool interface {
	Lease(ctx context.Context, sink string, max int) ([]spool.Delivery, error)
	Resolve(sink string, results []spool.Result) error
}

// WhereLeaser is a spool that settles the events a sink does not want
// while it leases (the embedded one): an instance without settings for
// the sink then costs the sink no lease and no Resolve per event, and a
// sink no instance has enabled does not even read the events.
type WhereLeaser interface {
	LeaseWhere(ctx context.Context, sink string, max int, want spool.Want) ([]spool.Delivery, int, error)
}

// Settings is what dispatch needs of the settings store.
type Settings interface {
	Get(sink, instance string) (store.Settings, bool)
	AnyEnabled(sink string) bool
	Disable(ctx context.Context, sink, instance, reason string) error
}

// Plugin is what dispatch needs of a plugin: a client of its current
// process, waiting while it restarts.
type Plugin interface {
	Name() string
	Client(ctx context.Context) (sinkv1.SinkClient, error)
}

// Options tune the workers.
type Options struct {
	// BatchSize is the most deliveries leased at once, and the most of one
	// instance sent to the plugin at once.
	BatchSize int
	// MaxBatchBytes splits a batch into several stream messages.
	MaxBatchBytes int
	// MaxInFlight is the most deliveries one sink holds leased: sent and
	// not yet acked, or waiting in their instance's lane.
	MaxInFlight int
	// StallAfter is how long a lane's batch may go without an ack before
	// the lane counts as stalled.
	StallAfter time.Duration
	// DeferFor is how long a stalled lane's delivery waits in the spool's
	// schedule before it is leased again.
	DeferFor time.Duration
	// Grace is how long Run waits for in-flight acks after ctx ends.
	Grace  time.Duration
	Policy Policy
	// Circuit is the process's circuit breaker; zero means
	// DefaultCircuit.
	Circuit Circuit
	// Circuits, if not nil, is told which circuits are open.
	Circuits *Circuits
	Logger   hclog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	Now     func() time.Time
	// RetryLogEvery is how often a retry of one instance's deliveries is
	// logged as a warning (the others at debug); default a minute.
	RetryLogEvery time.Duration
}

func (o *Options) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 4 << 20
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1000
	}
	if o.StallAfter <= 0 {
		o.StallAfter = 5 * time.Second
	}
	if o.DeferFor <= 0 {
		o.DeferFor = 5 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 15 * time.Second
	}
	if len(o.Policy.Schedule) == 0 {
		o.Policy = DefaultPolicy
	}
	if o.RetryLogEvery <= 0 {
		o.RetryLogEvery = retryLogEvery
	}
	if o.Circuit.CoolDown <= 0 {
		o.Circuit = DefaultCircuit
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Run delivers sink p's events until ctx ends, then waits up to
// Options.Grace for what is at the plugin. What is still unacked after that
// stays unresolved in the spool, so it is delivered after the next start.
func Run(ctx context.Context, sp Spool, st Settings, p Plugin, opts Options) {
	opts.defaults()
	w := &worker{
		sink: p.Name(), plugin: p, spool: sp, settings: st, opts: opts,
		logger:   opts.Logger.Named("dispatch").With("sink", p.Name()),
		lanes:    map[laneKey]*lane{},
		controls: map[string]*control{},
		retries:  newRetryLog(opts.RetryLogEvery),
		sent:     map[string]*sentDelivery{},
		wake:     make(chan struct{}, 1),
		roomWake: make(chan struct{}, 1),
		resWake:  make(chan struct{}, 1),
	}
	stop := make(chan struct{})
	resolved := make(chan struct{})
	go func() { defer close(resolved); w.resolver(stop) }()
	defer func() { close(stop); <-resolved }()
	for ctx.Err() == nil {
		client, err := p.Client(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.logger.Warn("no plugin client", "error", err)
				time.Sleep(time.Second)
			}
			continue
		}
		err = w.session(ctx, client)
		if n := w.releaseAll(); n > 0 && ctx.Err() == nil {
			w.logger.Warn("plugin stream ended with deliveries leased; they are sent again", "count", n, "error", err)
		}
	}
}

type worker struct {
	sink     string
	plugin   Plugin
	spool    Spool
	settings Settings
	opts     Options
	logger   hclog.Logger
	retries  *retryLog

	mu    sync.Mutex
	lanes map[laneKey]*lane
	// controls are the instances' rate limits and circuits (controls.go).
	controls map[string]*control
	open     int                      // instances whose circuit is open
	sent     map[string]*sentDelivery // id → at the plugin
	leased   int                      // held in lanes + sent
	perLane  int                      // batches of a lane at the plugin at once, not said on their way
	wake     chan struct{}            // something changed: pump
	roomWake chan struct{}            // acks came: the window may have room

	resMu      sync.Mutex
	pendingRes []spool.Result // waiting for the resolver
	resWake    chan struct{}
}

// laneBatches is how many batches of one lane may be at the plugin at once
// that it has not said are on their way, unless the plugin's client says
// otherwise (LaneBatcher).
const laneBatches = 2

// laneBatchesMax is how many batches of one lane may be at the plugin at
// once, those on their way included; the sink's in-flight window
// (MaxInFlight) bounds them too. A broker sink publishes a lane's next
// batch while the confirms of the earlier ones come back, and a batch
// leaves the lane only once all of it is acked: with two batches in all, a
// lane to NATS or RabbitMQ waited for that round trip between batches.
const laneBatchesMax = 8

// LaneBatcher is implemented by a plugin client whose plugin does not run
// an instance's batches in order (one built with an SDK of protocol 1): it
// says how many of a lane's batches may be at the plugin at once.
type LaneBatcher interface {
	LaneBatches() int
}

// laneKey names a lane: an instance, and its chat when the instance's
// deliveries are ordered by chat ("" for the events without one).
type laneKey struct{ instance, chat string }

// keyOf returns the lane of d, for an instance with settings s. An
// instance under a rate limit is one lane whatever its ordering: the limit
// is the instance's, and what waits for it waits in one queue of at most a
// batch, not one per chat.
func keyOf(d spool.Delivery, s store.Settings) laneKey {
	if !s.ByChat || s.RateLimit != nil {
		return laneKey{instance: d.Instance}
	}
	return laneKey{instance: d.Instance, chat: events.Chat(d.Envelope)}
}

// lane is the deliveries of one lane waiting for the plugin, in order.
type lane struct {
	queue    []pending
	busy     int       // deliveries of the lane's batches still at the plugin
	batches  int       // batches with deliveries still at the plugin
	unsent   int       // of those, the ones the plugin has not said are on their way
	progress time.Time // when a batch was sent or last acked
}

// sentBatch counts the deliveries of one batch still at the plugin, and
// its stream messages the plugin said are on their way.
type sentBatch struct {
	left   int
	chunks int // stream messages it went in
	onWay  int // of those, the ones said sent
}

// stalled reports whether the lane's batch has gone without an ack for
// too long.
func (l *lane) stalled(now time.Time, after time.Duration) bool {
	return l.busy > 0 && now.Sub(l.progress) > after
}

type pending struct {
	d        spool.Delivery
	settings []byte
}

type sentDelivery struct {
	d     spool.Delivery
	lane  *lane
	batch *sentBatch
}

func (w *worker) signal() { notify(w.wake) }

// notify leaves one pending signal on c.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// session runs one Deliver stream until it breaks or ctx ends.
func (w *worker) session(ctx context.Context, client sinkv1.SinkClient) error {
	streamCtx, cancelStream := context.WithCancel(context.Background())
	defer cancelStream()
	stream, err := client.Deliver(streamCtx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	perLane := laneBatches
	if lb, ok := client.(LaneBatcher); ok {
		perLane = max(1, lb.LaneBatches())
	}
	w.mu.Lock()
	w.perLane = perLane
	w.mu.Unlock()
	recvErr := make(chan error, 1)
	go func() { recvErr <- w.receive(stream) }()

	leaseCtx, cancelLease := context.WithCancel(ctx)
	defer cancelLease()
	leaseDone := make(chan struct{})
	go func() { defer close(leaseDone); w.lease(leaseCtx) }()
	defer func() { cancelLease(); <-leaseDone }()

	for {
		if err := w.pump(stream); err != nil {
			return err
		}
		select {
		case <-w.wake:
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return w.drain(stream, recvErr)
		}
	}
}

// drain waits, after ctx ended, for what is at the plugin.
func (w *worker) drain(stream sinkv1.Sink_DeliverClient, recvErr <-chan error) error {
	timer := time.NewTimer(w.opts.Grace)
	defer timer.Stop()
	for w.atPlugin() > 0 {
		select {
		case <-w.wake:
		case err := <-recvErr:
			return err
		case <-timer.C:
			return errors.New("shutdown grace period over")
		}
	}
	_ = stream.CloseSend()
	return nil
}

func (w *worker) atPlugin() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sent)
}

// lease fills the lanes from the spool while the window has room.
func (w *worker) lease(ctx context.Context) {
	for {
		room := w.room(ctx)
		if ctx.Err() != nil {
			return
		}
		leased, skipped, err := w.leaseSome(ctx, min(room, w.opts.BatchSize))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.logger.Error("lease failed", "error", err)
			time.Sleep(time.Second)
			continue
		}
		var settled []spool.Result
		deferred := 0
		now := w.opts.Now()
		due := now.Add(w.opts.DeferFor)
		w.mu.Lock()
		for _, d := range leased {
			s, ok := w.settings.Get(w.sink, d.Instance)
			if !ok || !s.Wants(d.Event.Event) {
				settled = append(settled, spool.Result{ID: d.ID, Outcome: spool.Done})
				skipped++
				continue
			}
			k := keyOf(d, s)
			l := w.lanes[k]
			if l == nil {
				l = &lane{}
				w.lanes[k] = l
			}
			if r := w.admit(d, s, l, now); r != nil {
				settled = append(settled, *r)
				continue
			}
			if l.stalled(now, w.opts.StallAfter) {
				settled = append(settled, spool.Result{ID: d.ID, Outcome: spool.Defer, Due: due})
				deferred++
				continue
			}
			l.queue = append(l.queue, pending{d: d, settings: s.Plugin})
			w.leased++
		}
		w.mu.Unlock()
		w.resolve(settled)
		w.opts.Metrics.count(w.sink, "skipped", skipped)
		w.opts.Metrics.count(w.sink, "deferred", deferred)
		w.signal()
	}
}

// leaseSome leases up to n deliveries, and says how many events the spool
// settled because the sink does not want them (nothing without
// WhereLeaser: lease then settles them itself).
func (w *worker) leaseSome(ctx context.Context, n int) ([]spool.Delivery, int, error) {
	if wl, ok := w.spool.(WhereLeaser); ok {
		return wl.LeaseWhere(ctx, w.sink, n, wanted{w.settings, w.sink})
	}
	ds, err := w.spool.Lease(ctx, w.sink, n)
	return ds, 0, err
}

// wanted is the spool.Want of a sink: what its settings take.
type wanted struct {
	settings Settings
	sink     string
}

func (x wanted) Any() bool { return x.settings.AnyEnabled(x.sink) }

func (x wanted) Wants(instance, event string) bool {
	s, ok := x.settings.Get(x.sink, instance)
	return ok && s.Wants(event)
}

// room blocks until the window has room, and returns it; acks wake it.
// While it waits, the deliveries waiting in stalled lanes go back to the
// schedule.
func (w *worker) room(ctx context.Context) int {
	var check *time.Timer
	defer func() {
		if check != nil {
			check.Stop()
		}
	}()
	for {
		w.mu.Lock()
		n := w.leased
		w.mu.Unlock()
		if n < w.opts.MaxInFlight {
			return w.opts.MaxInFlight - n
		}
		w.deferStalled()
		if check == nil {
			check = time.NewTimer(stallCheck)
		} else {
			check.Reset(stallCheck)
		}
		select {
		case <-ctx.Done():
			return 0
		case <-w.roomWake:
		case <-check.C:
		}
	}
}

// stallCheck is how often a full window looks for stalled lanes when no
// ack comes.
const stallCheck = 100 * time.Millisecond

// deferStalled moves the waiting deliveries of stalled lanes to the
// spool's schedule.
func (w *worker) deferStalled() {
	now := w.opts.Now()
	due := now.Add(w.opts.DeferFor)
	var settled []spool.Result
	w.mu.Lock()
	for _, l := range w.lanes {
		if !l.stalled(now, w.opts.StallAfter) || len(l.queue) == 0 {
			continue
		}
		for _, p := range l.queue {
			settled = append(settled, spool.Result{ID: p.d.ID, Outcome: spool.Defer, Due: due})
		}
		w.leased -= len(l.queue)
		l.queue = nil
	}
	w.mu.Unlock()
	w.resolve(settled)
	w.opts.Metrics.count(w.sink, "deferred", len(settled))
}

// batch is one lane's deliveries for the plugin, with the instance's
// settings as of the newest of them, in the stream messages they go in.
type batch struct {
	lane     laneKey
	settings []byte
	chunks   [][]*sinkv1.Delivery
}

// pump sends every lane's waiting deliveries, in batches of at most
// BatchSize, while the lane has room at the plugin: one lane's deliveries
// in ingest order, with the plugin's part of the instance's settings once
// per stream message.
func (w *worker) pump(stream sinkv1.Sink_DeliverClient) error {
	var batches []batch
	now := w.opts.Now()
	w.mu.Lock()
	for key, l := range w.lanes {
		inst := key.instance
		if len(l.queue) == 0 {
			if l.busy == 0 {
				delete(w.lanes, key)
			}
			continue
		}
		for len(l.queue) > 0 && l.unsent < w.perLane && l.batches < laneBatchesMax &&
			(l.batches == 0 || !w.controlled(inst)) {
			n := w.take(inst, l.queue[0].d.ID, min(len(l.queue), w.opts.BatchSize), now)
			if n == 0 {
				break
			}
			b := batch{lane: key}
			deliveries := make([]*sinkv1.Delivery, 0, n)
			sb := &sentBatch{left: n}
			for _, p := range l.queue[:n] {
				w.sent[p.d.ID] = &sentDelivery{d: p.d, lane: l, batch: sb}
				deliveries = append(deliveries, &sinkv1.Delivery{
					Id: p.d.ID, Instance: p.d.Instance, Event: p.d.Event.Event,
					Attempt: uint32(p.d.Attempt), Envelope: p.d.Envelope,
				})
				b.settings = p.settings
			}
			b.chunks = split(deliveries, w.opts.MaxBatchBytes-len(b.settings))
			sb.chunks = len(b.chunks)
			l.queue = l.queue[n:]
			l.busy += n
			l.batches++
			l.unsent++
			l.progress = now
			batches = append(batches, b)
		}
	}
	w.opts.Metrics.inflight(w.sink, len(w.sent))
	w.mu.Unlock()
	for _, b := range batches {
		for _, chunk := range b.chunks {
			req := &sinkv1.DeliverRequest{Instance: b.lane.instance, Lane: b.lane.chat, Settings: b.settings, Deliveries: chunk}
			if err := stream.Send(req); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
	}
	return nil
}

// split cuts a batch into stream messages of at most maxBytes (one large
// delivery travels alone).
func split(batch []*sinkv1.Delivery, maxBytes int) [][]*sinkv1.Delivery {
	var out [][]*sinkv1.Delivery
	start, size := 0, 0
	for i, d := range batch {
		n := len(d.Envelope) + 128
		if i > start && size+n > maxBytes {
			out = append(out, batch[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(batch) {
		out = append(out, batch[start:])
	}
	return out
}

// receive applies acks until the stream ends.
func (w *worker) receive(stream sinkv1.Sink_DeliverClient) error {
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("plugin closed the stream")
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		w.onTheirWay(resp.GetSent())
		w.apply(resp.GetAcks())
	}
}

// onTheirWay notes the batches the plugin said are on their way, by a
// delivery of each: they no longer count against the lane's laneBatches.
func (w *worker) onTheirWay(ids []string) {
	if len(ids) == 0 {
		return
	}
	w.mu.Lock()
	for _, id := range ids {
		s, ok := w.sent[id]
		if !ok || s.batch.onWay == s.batch.chunks {
			continue // acked since, or said twice
		}
		if s.batch.onWay++; s.batch.onWay == s.batch.chunks {
			s.lane.unsent--
		}
	}
	w.mu.Unlock()
	w.signal()
}

func (w *worker) apply(acks []*sinkv1.Ack) {
	now := w.opts.Now()
	results := make([]spool.Result, 0, len(acks))
	var gone []spool.Delivery
	w.mu.Lock()
	for _, a := range acks {
		s, ok := w.sent[a.GetId()]
		if !ok {
			w.logger.Warn("ack for a delivery not in flight: ignored", "delivery_id", a.GetId())
			continue
		}
		delete(w.sent, a.GetId())
		s.lane.busy--
		if s.batch.left--; s.batch.left == 0 {
			s.lane.batches--
			if s.batch.onWay < s.batch.chunks {
				s.lane.unsent--
			}
		}
		s.lane.progress = now
		w.leased--
		r, held := w.settleControls(s.d, a.GetOutcome() == sinkv1.Outcome_OUTCOME_OK || a.GetOutcome() == sinkv1.Outcome_OUTCOME_REJECT,
			w.settle(s.d, a, now), now)
		results = append(results, r)
		results = append(results, held...)
		if a.GetDisable() {
			s.d.LastError = r.Reason
			gone = append(gone, s.d)
		}
	}
	w.mu.Unlock()
	w.resolve(results)
	w.signal()
	notify(w.roomWake)
	for _, d := range gone {
		reason := "disabled after the destination answered gone: " + d.LastError
		if err := w.settings.Disable(context.Background(), w.sink, d.Instance, reason); err != nil {
			w.logger.Error("cannot disable sink for instance", "instance", d.Instance, "error", err)
			continue
		}
		w.logger.Warn("sink disabled for instance; set its settings again to re-enable", "instance", d.Instance, "error", d.LastError)
	}
}

// resolve queues results for the resolver, which settles them in the
// spool. A failure there leaves them leased but unresolved: they are
// delivered again after a restart, never lost.
func (w *worker) resolve(results []spool.Result) {
	if len(results) == 0 {
		return
	}
	w.resMu.Lock()
	w.pendingRes = append(w.pendingRes, results...)
	w.resMu.Unlock()
	notify(w.resWake)
}

// resolver settles queued results, all that piled up during the previous
// commit in one: group commit, so a stream of small acks costs one disk
// sync per round, not one each. It returns once stop is closed and the
// queue is empty.
func (w *worker) resolver(stop <-chan struct{}) {
	for {
		w.resMu.Lock()
		batch := w.pendingRes
		w.pendingRes = nil
		w.resMu.Unlock()
		if len(batch) > 0 {
			if err := w.spool.Resolve(w.sink, batch); err != nil {
				w.logger.Error("resolve failed; these deliveries will be sent again after a restart", "count", len(batch), "error", err)
			}
			continue
		}
		select {
		case <-w.resWake:
		case <-stop:
			w.resMu.Lock()
			left := len(w.pendingRes)
			w.resMu.Unlock()
			if left == 0 {
				return
			}
		}
	}
}

// releaseAll hands every leased delivery, sent or waiting, back to the
// spool untried.
func (w *worker) releaseAll() int {
	w.mu.Lock()
	results := make([]spool.Result, 0, w.leased)
	for id := range w.sent {
		results = append(results, spool.Result{ID: id, Outcome: spool.Release})
	}
	for _, l := range w.lanes {
		for _, p := range l.queue {
			results = append(results, spool.Result{ID: p.d.ID, Outcome: spool.Release})
		}
	}
	clear(w.sent)
	clear(w.lanes)
	w.leased = 0
	w.mu.Unlock()
	w.resolve(results)
	w.opts.Metrics.count(w.sink, "released", len(results))
	return len(results)
}

// settle turns one ack into a spool result.
func (w *worker) settle(d spool.Delivery, a *sinkv1.Ack, now time.Time) spool.Result {
	if a.GetOutcome() == sinkv1.Outcome_OUTCOME_OK {
		w.opts.Metrics.count(w.sink, "ok", 1)
		w.opts.Metrics.delivered(w.sink, d.ID, now)
		return spool.Result{ID: d.ID, Outcome: spool.Done}
	}
	log := w.logger.With("instance", d.Instance, "event", d.Event.Event, "delivery_id", d.ID, "attempt", d.Attempt)
	if a.GetOutcome() == sinkv1.Outcome_OUTCOME_REJECT {
		log.Warn("delivery rejected; dead-lettered", "error", a.GetReason())
		w.opts.Metrics.count(w.sink, "dead", 1)
		return spool.Result{ID: d.ID, Outcome: spool.Dead, Reason: a.GetReason()}
	}
	reason := a.GetReason()
	if a.GetOutcome() != sinkv1.Outcome_OUTCOME_RETRY {
		reason = fmt.Sprintf("plugin answered outcome %v: %s", a.GetOutcome(), reason)
	}
	first := d.FirstTry
	if first.IsZero() {
		first = now
	}
	policy := w.opts.Policy
	if st, ok := w.settings.Get(w.sink, d.Instance); ok {
		policy = policy.For(st.Retry)
	}
	due, err := policy.Next(d.Attempt, first, time.Duration(a.GetRetryAfterMs())*time.Millisecond, now)
	if err != nil {
		log.Warn("delivery failed for good; dead-lettered", "error", reason, "why", err)
		w.opts.Metrics.count(w.sink, "dead", 1)
		return spool.Result{ID: d.ID, Outcome: spool.Dead, Reason: err.Error() + ": " + reason}
	}
	if ok, suppressed := w.retries.allow(d.Instance, now); ok {
		log.Warn("delivery failed; retry scheduled", "error", reason, "due", due.UTC().Format(time.RFC3339), "not_logged_since_last", suppressed)
	} else {
		log.Debug("delivery failed; retry scheduled", "error", reason, "due", due)
	}
	w.opts.Metrics.count(w.sink, "retry", 1)
	return spool.Result{ID: d.ID, Outcome: spool.Retry, Due: due, Reason: reason}
}
