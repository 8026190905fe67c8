// Package dispatch moves events from the spool to the sink plugins: per
// sink, lease a batch, keep the deliveries whose instance has that sink
// enabled and subscribed to the event, send them to the plugin in one
// stream message, and settle each by its ack: done, retry on the policy's
// schedule, or dead letter. Each sink has its own worker, position and
// in-flight window, so a slow sink never holds up another.
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
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// Spool is what dispatch needs of the spool.
type Spool interface {
	Lease(ctx context.Context, sink string, max int) ([]spool.Delivery, error)
	Resolve(sink string, results []spool.Result) error
}

// Settings is what dispatch needs of the settings store.
type Settings interface {
	Get(sink, instance string) (store.Settings, bool)
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
	// BatchSize is the most deliveries leased and sent at once.
	BatchSize int
	// MaxBatchBytes splits a batch into several stream messages.
	MaxBatchBytes int
	// MaxInFlight is the most deliveries one sink has sent and not had
	// acked.
	MaxInFlight int
	// Grace is how long Run waits for in-flight acks after ctx ends.
	Grace  time.Duration
	Policy Policy
	Logger hclog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	Now     func() time.Time
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
	if o.Grace <= 0 {
		o.Grace = 15 * time.Second
	}
	if len(o.Policy.Schedule) == 0 {
		o.Policy = DefaultPolicy
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Run delivers sink p's events until ctx ends, then waits up to
// Options.Grace for what is in flight. What is still unacked after that is
// left leased-but-unresolved in the spool, so it is delivered after the
// next start.
func Run(ctx context.Context, sp Spool, st Settings, p Plugin, opts Options) {
	opts.defaults()
	w := &worker{
		sink: p.Name(), plugin: p, spool: sp, settings: st, opts: opts,
		logger:   opts.Logger.Named("dispatch").With("sink", p.Name()),
		inflight: map[string]spool.Delivery{},
		drained:  make(chan struct{}, 1),
	}
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
		if n := w.releaseAll(); n > 0 {
			w.logger.Warn("plugin stream ended with deliveries in flight; they are sent again", "count", n, "error", err)
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

	mu       sync.Mutex
	inflight map[string]spool.Delivery
	drained  chan struct{} // signalled when inflight becomes empty
}

// session runs one Deliver stream until it breaks or ctx ends.
func (w *worker) session(ctx context.Context, client sinkv1.SinkClient) error {
	streamCtx, cancelStream := context.WithCancel(context.Background())
	defer cancelStream()
	stream, err := client.Deliver(streamCtx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	recvErr := make(chan error, 1)
	go func() { recvErr <- w.receive(stream) }()

	leaseCtx, cancelLease := context.WithCancel(ctx)
	defer cancelLease()
	sendErr := make(chan error, 1)
	go func() { sendErr <- w.send(leaseCtx, stream) }()

	select {
	case err := <-recvErr:
		cancelLease()
		<-sendErr
		return err
	case err := <-sendErr:
		if ctx.Err() == nil {
			return err // the stream broke while sending
		}
	}
	// ctx ended: stop sending, wait for what is in flight.
	timer := time.NewTimer(w.opts.Grace)
	defer timer.Stop()
	for w.inFlight() > 0 {
		select {
		case <-w.drained:
		case err := <-recvErr:
			return err
		case <-timer.C:
			return errors.New("shutdown grace period over")
		}
	}
	_ = stream.CloseSend()
	return nil
}

func (w *worker) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

// send leases, filters and sends until ctx ends or the stream breaks.
func (w *worker) send(ctx context.Context, stream sinkv1.Sink_DeliverClient) error {
	for {
		room := w.waitRoom(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		leased, err := w.spool.Lease(ctx, w.sink, min(room, w.opts.BatchSize))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.logger.Error("lease failed", "error", err)
			time.Sleep(time.Second)
			continue
		}
		var skipped []spool.Result
		var batch []*sinkv1.Delivery
		w.mu.Lock()
		for _, d := range leased {
			s, ok := w.settings.Get(w.sink, d.Instance)
			if !ok || !s.Wants(d.Event.Event) {
				skipped = append(skipped, spool.Result{ID: d.ID, Outcome: spool.Done})
				continue
			}
			w.inflight[d.ID] = d
			batch = append(batch, &sinkv1.Delivery{
				Id: d.ID, Instance: d.Instance, Event: d.Event.Event,
				Attempt: uint32(d.Attempt), Envelope: d.Envelope, Settings: s.Raw,
			})
		}
		w.mu.Unlock()
		if len(skipped) > 0 {
			w.resolve(skipped)
			w.opts.Metrics.count(w.sink, "skipped", len(skipped))
		}
		for _, chunk := range split(batch, w.opts.MaxBatchBytes) {
			if err := stream.Send(&sinkv1.DeliverRequest{Deliveries: chunk}); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
		w.opts.Metrics.inflight(w.sink, w.inFlight())
	}
}

// waitRoom blocks until the in-flight window has room, and returns it.
func (w *worker) waitRoom(ctx context.Context) int {
	for {
		n := w.inFlight()
		if n < w.opts.MaxInFlight {
			return w.opts.MaxInFlight - n
		}
		select {
		case <-w.drained:
		case <-ctx.Done():
			return 0
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// split cuts a batch into stream messages of at most maxBytes (one large
// delivery travels alone).
func split(batch []*sinkv1.Delivery, maxBytes int) [][]*sinkv1.Delivery {
	var out [][]*sinkv1.Delivery
	start, size := 0, 0
	for i, d := range batch {
		n := len(d.Envelope) + len(d.Settings) + 128
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
		w.apply(resp.GetAcks())
	}
}

func (w *worker) apply(acks []*sinkv1.Ack) {
	now := w.opts.Now()
	results := make([]spool.Result, 0, len(acks))
	var gone []spool.Delivery
	w.mu.Lock()
	for _, a := range acks {
		d, ok := w.inflight[a.GetId()]
		if !ok {
			w.logger.Warn("ack for a delivery not in flight: ignored", "delivery_id", a.GetId())
			continue
		}
		delete(w.inflight, a.GetId())
		r := w.settle(d, a, now)
		results = append(results, r)
		if a.GetDisable() {
			d.LastError = r.Reason
			gone = append(gone, d)
		}
	}
	w.mu.Unlock()
	w.resolve(results)
	select {
	case w.drained <- struct{}{}:
	default:
	}
	for _, d := range gone {
		reason := "disabled after the destination answered gone: " + d.LastError
		if err := w.settings.Disable(context.Background(), w.sink, d.Instance, reason); err != nil {
			w.logger.Error("cannot disable sink for instance", "instance", d.Instance, "error", err)
			continue
		}
		w.logger.Warn("sink disabled for instance; set its settings again to re-enable", "instance", d.Instance, "error", d.LastError)
	}
}

// resolve settles results in the spool. A failure here leaves them leased
// but unresolved: they are delivered again after a restart, never lost.
func (w *worker) resolve(results []spool.Result) {
	if len(results) == 0 {
		return
	}
	if err := w.spool.Resolve(w.sink, results); err != nil {
		w.logger.Error("resolve failed; these deliveries will be sent again after a restart", "count", len(results), "error", err)
	}
}

// releaseAll hands every in-flight delivery back to the spool untried.
func (w *worker) releaseAll() int {
	w.mu.Lock()
	results := make([]spool.Result, 0, len(w.inflight))
	for id := range w.inflight {
		results = append(results, spool.Result{ID: id, Outcome: spool.Release})
	}
	clear(w.inflight)
	w.mu.Unlock()
	w.resolve(results)
	w.opts.Metrics.count(w.sink, "released", len(results))
	return len(results)
}

// settle turns one ack into a spool result.
func (w *worker) settle(d spool.Delivery, a *sinkv1.Ack, now time.Time) spool.Result {
	log := w.logger.With("instance", d.Instance, "event", d.Event.Event, "delivery_id", d.ID, "attempt", d.Attempt)
	switch a.GetOutcome() {
	case sinkv1.Outcome_OUTCOME_OK:
		w.opts.Metrics.count(w.sink, "ok", 1)
		return spool.Result{ID: d.ID, Outcome: spool.Done}
	case sinkv1.Outcome_OUTCOME_REJECT:
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
	due, err := w.opts.Policy.Next(d.Attempt, first, time.Duration(a.GetRetryAfterMs())*time.Millisecond, now)
	if err != nil {
		log.Warn("delivery failed for good; dead-lettered", "error", reason, "why", err)
		w.opts.Metrics.count(w.sink, "dead", 1)
		return spool.Result{ID: d.ID, Outcome: spool.Dead, Reason: err.Error() + ": " + reason}
	}
	log.Debug("delivery failed; retry scheduled", "error", reason, "due", due)
	w.opts.Metrics.count(w.sink, "retry", 1)
	return spool.Result{ID: d.ID, Outcome: spool.Retry, Due: due, Reason: reason}
}
