package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/internal/bridge"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

func init() {
	bridge.NewServer = func(s any, logger hclog.Logger) sinkv1.SinkServer {
		return newServer(s.(Sink), logger)
	}
}

// maxConcurrentBatches bounds the batches one plugin works on at once; the
// host's in-flight window bounds them too.
const maxConcurrentBatches = 64

// checkDescription turns an author's mistake in Describe into an error.
func checkDescription(d Description) error {
	if err := sinkv1.CheckName(d.Name); err != nil {
		return fmt.Errorf("sdk: Describe().Name: %w", err)
	}
	return nil
}

// server adapts a Sink to the gRPC service.
type server struct {
	sinkv1.UnimplementedSinkServer
	sink   Sink
	logger hclog.Logger
	naming atomic.Int32 // an events.Naming, set by Open

	// lanes holds, per lane (laneKey), the end of the last batch handed
	// to run: the next batch of that lane starts only after it.
	lanesMu sync.Mutex
	lanes   map[string]chan struct{}
}

func newServer(s Sink, logger hclog.Logger) *server {
	return &server{sink: s, logger: logger, lanes: map[string]chan struct{}{}}
}

func (s *server) Describe(context.Context, *sinkv1.DescribeRequest) (*sinkv1.DescribeResponse, error) {
	d := s.sink.Describe()
	if err := checkDescription(d); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	resp := &sinkv1.DescribeResponse{
		Name:            d.Name,
		Version:         d.Version,
		ProtocolVersion: sinkv1.ProtocolVersion,
		SecretFields:    d.SecretFields,
	}
	if d.Listener {
		resp.Capabilities = append(resp.Capabilities, sinkv1.Capability_CAPABILITY_LISTENER)
	}
	return resp, nil
}

func (s *server) Open(ctx context.Context, req *sinkv1.OpenRequest) (*sinkv1.OpenResponse, error) {
	naming := events.NamingSeed
	if req.GetNaming() == sinkv1.Naming_NAMING_EVOLUTION {
		naming = events.NamingEvolution
	}
	settings := req.GetSettings()
	if settings == nil {
		settings = map[string]string{}
	}
	policy, err := egressPolicy(req.GetEgress())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	cfg := Config{
		Settings:     settings,
		Naming:       naming,
		ListenSocket: req.GetListenSocket(),
		HostSocket:   req.GetHostSocket(),
		ServerURL:    req.GetServerUrl(),
		Logger:       s.logger,
		Egress:       policy,
	}
	if err := s.sink.Open(ctx, cfg); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	s.naming.Store(int32(naming))
	return &sinkv1.OpenResponse{}, nil
}

// egressPolicy reads the policy the host sent.
func egressPolicy(e *sinkv1.Egress) (egress.Policy, error) {
	allow, err := egress.ParseCIDRs(strings.Join(e.GetAllow(), ","))
	if err != nil {
		return egress.Policy{}, fmt.Errorf("sdk: egress allow list: %w", err)
	}
	deny, err := egress.ParseCIDRs(strings.Join(e.GetDeny(), ","))
	if err != nil {
		return egress.Policy{}, fmt.Errorf("sdk: egress deny list: %w", err)
	}
	return egress.New(allow, deny), nil
}

func (s *server) Validate(ctx context.Context, req *sinkv1.ValidateRequest) (*sinkv1.ValidateResponse, error) {
	if req.GetScoped() {
		ctx = WithScopedKey(ctx)
	}
	out, err := s.sink.Validate(ctx, req.GetInstance(), req.GetSettings())
	var fe FieldErrors
	switch {
	case errors.As(err, &fe) && len(fe) == 0:
		return nil, status.Error(codes.Internal, "sdk: Validate returned an empty FieldErrors as its error; return fe.Err(), which is nil when no field is bad")
	case errors.As(err, &fe):
		resp := &sinkv1.ValidateResponse{}
		for _, e := range fe {
			resp.FieldErrors = append(resp.FieldErrors, &sinkv1.FieldError{Field: e.Field, Message: e.Message})
		}
		return resp, nil
	case err != nil:
		return nil, status.Error(codes.Internal, err.Error())
	case !json.Valid(out):
		return nil, status.Errorf(codes.Internal, "sdk: Validate returned settings that are not JSON: %.80q", out)
	case !isObject(out):
		return nil, status.Errorf(codes.Internal, "sdk: Validate returned settings that are not a JSON object: %.80q", out)
	}
	return &sinkv1.ValidateResponse{Settings: out}, nil
}

// isObject reports whether valid JSON b is an object.
func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

func (s *server) Health(ctx context.Context, _ *sinkv1.HealthRequest) (*sinkv1.HealthResponse, error) {
	h := s.sink.Health(ctx)
	return &sinkv1.HealthResponse{Ready: h.Ready, Detail: h.Detail, Gauges: h.Gauges, Counters: h.Counters}, nil
}

func (s *server) Close(ctx context.Context, _ *sinkv1.CloseRequest) (*sinkv1.CloseResponse, error) {
	if err := s.sink.Close(ctx); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &sinkv1.CloseResponse{}, nil
}

// Deliver runs the batches the host sends on up to maxConcurrentBatches
// goroutines, started as they are needed and kept for the stream (so a
// goroutine's stack grows once to what the sink's Deliver needs, not once
// a batch: many lanes of one event each make a batch an event), and
// streams acks back as they come, coalescing those that are ready.
// Batches of one lane (an instance, or one chat of it: DeliverRequest.lane)
// run one after the other, in the order they came: the host may split a
// lane's deliveries into several messages (each at most a few MB), and
// they must reach the sink in order.
func (s *server) Deliver(stream sinkv1.Sink_DeliverServer) error {
	ctx := stream.Context()
	out := make(chan outAck, 1024)
	sendErr := make(chan error, 1)
	go func() { sendErr <- sendAcks(stream, out, ackDelay) }()

	jobs := make(chan job) // taken by an idle worker
	var workers sync.WaitGroup
	started := 0
recv:
	for {
		req, err := stream.Recv()
		if err != nil || ctx.Err() != nil {
			break // the host closed the stream or went away
		}
		if len(req.GetDeliveries()) == 0 {
			continue
		}
		j := job{req: req, key: laneKey(req)}
		j.prev, j.turn = s.enqueue(j.key)
		select {
		case jobs <- j:
			continue
		default:
		}
		if started < maxConcurrentBatches {
			started++
			workers.Go(func() {
				s.run(ctx, j, out)
				for j := range jobs {
					s.run(ctx, j, out)
				}
			})
			continue
		}
		// Every worker is busy: the next batch waits, and with it the
		// stream, as the host's in-flight window does.
		select {
		case jobs <- j:
		case <-ctx.Done():
			s.dequeue(j.key, j.turn)
			break recv
		}
	}
	close(jobs)
	workers.Wait()
	close(out)
	return <-sendErr
}

// job is a batch with its place in its lane: prev is the end of the
// lane's batch before it (nil: none).
type job struct {
	req  *sinkv1.DeliverRequest
	key  string
	prev <-chan struct{}
	turn *turn
}

// run waits for the batch's turn in its lane, runs it, and ends its turn.
func (s *server) run(ctx context.Context, j job, out chan<- outAck) {
	defer s.dequeue(j.key, j.turn)
	if j.prev != nil {
		<-j.prev
	}
	s.runBatch(ctx, j.req, out, j.turn.release)
}

// laneKey names the batch's lane among all the plugin runs: its instance
// and, within it, its lane.
func laneKey(req *sinkv1.DeliverRequest) string {
	if req.GetLane() == "" {
		return req.GetInstance()
	}
	return req.GetInstance() + "\x00" + req.GetLane()
}

// turn is a batch's place in its lane: the next batch of the instance
// waits for done, closed once the batch returned or said Sent.
type turn struct {
	done chan struct{}
	once sync.Once
}

func (t *turn) release() { t.once.Do(func() { close(t.done) }) }

// enqueue makes a batch the last of lane. It returns what the batch must
// wait for (nil: nothing) and its turn.
func (s *server) enqueue(lane string) (prev <-chan struct{}, t *turn) {
	t = &turn{done: make(chan struct{})}
	s.lanesMu.Lock()
	defer s.lanesMu.Unlock()
	prev = s.lanes[lane]
	s.lanes[lane] = t.done
	return prev, t
}

// dequeue ends a batch; the lane goes when it was the last.
func (s *server) dequeue(lane string, t *turn) {
	t.release()
	s.lanesMu.Lock()
	defer s.lanesMu.Unlock()
	if s.lanes[lane] == t.done {
		delete(s.lanes, lane)
	}
}

// ackDelay is how long an ack may wait for others to share its stream
// message. Acks one at a time cost a message, and a wake-up of the host's
// receiver and its spool, per delivery; a sink that delivers one by one
// (a lane of a webhook) acks every ~100 µs. The last ack of a batch, and
// a batch's Sent, do not wait: they let the host send the lane's next
// batch; the acks already queued behind them go in the same message (many
// lanes of one event each complete at once).
const ackDelay = time.Millisecond

// outAck is what goes to the host: an ack, and last if it completes its
// batch; or, with no ack, sent: the id of a delivery of a batch the sink
// said Sent of.
type outAck struct {
	ack  *sinkv1.Ack
	last bool
	sent string
}

// add puts o into resp and says whether resp should go at once.
func (o outAck) add(resp *sinkv1.DeliverResponse) (now bool) {
	if o.ack == nil {
		resp.Sent = append(resp.Sent, o.sent)
		return true
	}
	resp.Acks = append(resp.Acks, o.ack)
	return o.last
}

// maxAcksPerMessage bounds one stream message of acks.
const maxAcksPerMessage = 512

// sendAcks streams the acks from in, those that come within delay
// (ackDelay) of the first in one message, until in is closed. A batch's
// last ack, or a batch's Sent, ends its message at once, with what is
// already queued.
func sendAcks(stream sinkv1.Sink_DeliverServer, in <-chan outAck, delay time.Duration) error {
	var failed error
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for first := range in {
		if failed != nil {
			continue // drain so producers never block
		}
		resp := &sinkv1.DeliverResponse{}
		now := first.add(resp)
		timer.Reset(delay)
		for len(resp.Acks) < maxAcksPerMessage {
			o, ok := nextAck(in, timer.C, now)
			if !ok {
				break
			}
			now = o.add(resp) || now
		}
		timer.Stop()
		failed = stream.Send(resp)
	}
	return failed
}

// nextAck returns the next ack from in: one already queued when now, else
// one that comes before timeout. ok is false when there is none, or in is
// closed.
func nextAck(in <-chan outAck, timeout <-chan time.Time, now bool) (o outAck, ok bool) {
	if now {
		select {
		case o, ok = <-in:
		default:
		}
		return o, ok
	}
	select {
	case o, ok = <-in:
	case <-timeout:
	}
	return o, ok
}

func (s *server) runBatch(ctx context.Context, req *sinkv1.DeliverRequest, out chan<- outAck, sent func()) {
	wire := req.GetDeliveries()
	batch := make([]Delivery, len(wire))
	a := &acker{pending: make(map[string]bool, len(wire)), out: out, logger: s.logger, release: sent}
	for i, d := range wire {
		batch[i] = Delivery{
			ID:       d.GetId(),
			Instance: d.GetInstance(),
			Event:    d.GetEvent(),
			Attempt:  int(d.GetAttempt()),
			Envelope: s.named(d),
			Settings: req.GetSettings(),
		}
		a.pending[d.GetId()] = true
	}
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("sdk: Deliver panicked: %v", r)
				s.logger.Error("deliver panicked", "panic", r)
			}
		}()
		return s.sink.Deliver(ctx, batch, a)
	}()
	if err == nil {
		err = errors.New("sdk: Deliver returned without acknowledging this delivery")
	}
	a.finish(err)
}

// named returns the delivery's envelope with its event written per the
// naming mode. The host writes the constant; an envelope that cannot be
// rewritten is passed on as it is, for the sink to refuse.
func (s *server) named(d *sinkv1.Delivery) json.RawMessage {
	name := events.Naming(s.naming.Load()).Name(d.GetEvent())
	if name == d.GetEvent() {
		return d.GetEnvelope()
	}
	env, err := events.WithEvent(d.GetEnvelope(), name)
	if err != nil {
		return d.GetEnvelope()
	}
	return env
}

// acker tracks which deliveries of one batch still await an ack.
type acker struct {
	mu      sync.Mutex
	pending map[string]bool
	out     chan<- outAck
	logger  hclog.Logger
	release func() // lets the instance's next batch start (Sent)
	said    bool   // the host was told the batch is on its way
}

// sent tells the host, with one delivery still pending, that the batch
// is on its way, and lets the instance's next batch start. Deliver may
// have returned (pending is nil): then there is nothing to tell.
func (a *acker) sent() {
	a.mu.Lock()
	if !a.said {
		for id := range a.pending {
			a.said = true
			a.out <- outAck{sent: id}
			break
		}
	}
	a.mu.Unlock()
	a.release()
}

// Done sends the ack while holding the lock: a Done racing with the end of
// Deliver (a goroutine the sink left behind) must either send before finish
// takes the rest or see nothing pending, never send on the closed channel.
func (a *acker) Done(id string, err error) {
	a.mu.Lock()
	ok := a.pending[id]
	if ok {
		delete(a.pending, id)
		a.out <- outAck{ack: toAck(id, err), last: len(a.pending) == 0}
	}
	a.mu.Unlock()
	if !ok {
		a.logger.Warn("ack for a delivery that is not pending in this batch (already acked, unknown, or after Deliver returned): ignored", "delivery_id", id)
	}
}

func (a *acker) finish(err error) {
	a.mu.Lock()
	left := a.pending
	a.pending = nil
	a.mu.Unlock()
	n := 0
	for id := range left {
		n++
		a.out <- outAck{ack: toAck(id, err), last: n == len(left)}
	}
}

func toAck(id string, err error) *sinkv1.Ack {
	if err == nil {
		return &sinkv1.Ack{Id: id, Outcome: sinkv1.Outcome_OUTCOME_OK}
	}
	ack := &sinkv1.Ack{Id: id, Outcome: sinkv1.Outcome_OUTCOME_RETRY, Reason: err.Error()}
	var p *permanentError
	var r *retryAfterError
	switch {
	case errors.As(err, &p):
		ack.Outcome = sinkv1.Outcome_OUTCOME_REJECT
		ack.Disable = p.disable
	case errors.As(err, &r) && r.after > 0:
		// Round up: a delay asked for must not become 0, "host decides".
		ack.RetryAfterMs = int64((r.after + time.Millisecond - 1) / time.Millisecond)
	}
	return ack
}
