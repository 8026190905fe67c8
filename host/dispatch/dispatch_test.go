package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk/events"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// plugin is a scripted sink over a real gRPC stream: answer decides each
// delivery's ack, and may block. Like the SDK, it runs a lane's batches
// one after the other, in the order they came (unless v1, like an SDK of
// protocol 1, which runs them at once).
type plugin struct {
	sinkv1.UnimplementedSinkServer
	answer func(d *sinkv1.Delivery) *sinkv1.Ack
	v1     bool
	// says Sent of every batch as soon as it came, as a broker sink does
	// once it published the batch.
	says bool

	mu         sync.Mutex
	got        []*sinkv1.Delivery
	reqs       []*sinkv1.DeliverRequest // as received, without deliveries
	batches    map[string]int           // lane → batches at the plugin now
	maxBatches int                      // the most batches of one lane at the plugin at once
	running    map[string]int           // lane → batches being delivered now
	overlap    bool                     // two batches of one lane delivered at once
	streams    int
	breakAt    int // close the stream after this many deliveries (once)
	conn       *grpc.ClientConn
	listener   *bufconn.Listener
	server     *grpc.Server
}

func (p *plugin) Name() string { return "test" }

func (p *plugin) Client(context.Context) (sinkv1.SinkClient, error) {
	c := sinkv1.NewSinkClient(p.conn)
	if p.v1 {
		return v1Client{c}, nil
	}
	return c, nil
}

// v1Client is the client of a plugin of protocol 1 (LaneBatcher).
type v1Client struct{ sinkv1.SinkClient }

func (v1Client) LaneBatches() int { return 1 }

// atPlugin says the most batches of one lane that were at the plugin at
// once.
func (p *plugin) atPlugin() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxBatches
}

func (p *plugin) Deliver(stream sinkv1.Sink_DeliverServer) error {
	p.mu.Lock()
	p.streams++
	p.mu.Unlock()
	var sendMu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	lanes := map[string]chan struct{}{} // lane → done of its last batch
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		ds := req.GetDeliveries()
		p.mu.Lock()
		inst := ds[0].GetInstance()
		for _, d := range ds {
			if d.GetInstance() != inst {
				p.overlap = true // a batch mixes instances
			}
		}
		key := inst + "/" + req.GetLane()
		p.batches[key]++
		p.maxBatches = max(p.maxBatches, p.batches[key])
		prev, done := lanes[key], make(chan struct{})
		if !p.v1 {
			lanes[key] = done
		}
		p.got = append(p.got, ds...)
		p.reqs = append(p.reqs, &sinkv1.DeliverRequest{Instance: req.GetInstance(), Lane: req.GetLane(), Settings: req.GetSettings()})
		broken := p.breakAt > 0 && len(p.got) >= p.breakAt
		if broken {
			p.breakAt = 0
		}
		p.mu.Unlock()
		if broken {
			return fmt.Errorf("plugin crashed")
		}
		if p.says {
			sendMu.Lock()
			_ = stream.Send(&sinkv1.DeliverResponse{Sent: []string{ds[0].GetId()}})
			sendMu.Unlock()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			if prev != nil {
				<-prev
			}
			p.mu.Lock()
			if p.running[key]++; p.running[key] > 1 {
				p.overlap = true
			}
			p.mu.Unlock()
			var acks []*sinkv1.Ack
			for _, d := range ds {
				acks = append(acks, p.answer(d))
			}
			p.mu.Lock()
			p.batches[key]--
			p.running[key]--
			p.mu.Unlock()
			sendMu.Lock()
			_ = stream.Send(&sinkv1.DeliverResponse{Acks: acks})
			sendMu.Unlock()
		}()
	}
}

func (p *plugin) delivered() []*sinkv1.Delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sinkv1.Delivery(nil), p.got...)
}

func ok(d *sinkv1.Delivery) *sinkv1.Ack {
	return &sinkv1.Ack{Id: d.GetId(), Outcome: sinkv1.Outcome_OUTCOME_OK}
}

// rig is a spool, a store and a plugin with a running dispatcher.
type rig struct {
	t      *testing.T
	spool  *spool.Embedded
	store  *store.Store
	plugin *plugin
	seq    int
}

func newRig(t *testing.T, answer func(*sinkv1.Delivery) *sinkv1.Ack, opts Options) *rig {
	t.Helper()
	return newRigOf(t, &plugin{answer: answer}, opts)
}

// newRigOf runs p, whose answer (and v1) the caller set.
func newRigOf(t *testing.T, p *plugin, opts Options) *rig {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Register("test"); err != nil {
		t.Fatal(err)
	}
	backend, err := store.OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), backend)
	if err != nil {
		t.Fatal(err)
	}
	p.batches, p.running, p.listener = map[string]int{}, map[string]int{}, bufconn.Listen(1<<20)
	p.server = grpc.NewServer()
	sinkv1.RegisterSinkServer(p.server, p)
	go func() { _ = p.server.Serve(p.listener) }()
	p.conn, err = grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return p.listener.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	opts.Grace = time.Second
	go func() { defer close(done); Run(ctx, sp, st, p, opts) }()
	t.Cleanup(func() {
		cancel()
		<-done
		p.conn.Close()
		p.server.Stop()
		sp.Close()
		st.Close()
	})
	return &rig{t: t, spool: sp, store: st, plugin: p}
}

func (r *rig) set(instance, settings string) {
	r.t.Helper()
	if _, err := r.store.Set(context.Background(), "test", instance, json.RawMessage(settings)); err != nil {
		r.t.Fatal(err)
	}
}

// add appends n events for instance and returns their ids in order.
func (r *rig) add(instance, event string, n int) []string {
	r.t.Helper()
	return r.addTo(instance, "", event, n)
}

// addTo appends n events of a chat of instance ("": events without one)
// and returns their ids in order.
func (r *rig) addTo(instance, chat, event string, n int) []string {
	r.t.Helper()
	envelope := []byte(`{}`)
	if chat != "" {
		envelope = fmt.Appendf(nil, `{"event":%q,"instance":%q,"data":{"key":{"remoteJid":%q,"id":"m"}}}`, event, instance, chat)
	}
	var evs []spool.Event
	var ids []string
	for range n {
		r.seq++
		id := fmt.Sprintf("%s-%06d", instance, r.seq)
		ids = append(ids, id)
		evs = append(evs, spool.Event{ID: id, Instance: instance, Event: event, Envelope: envelope})
	}
	if err := r.spool.Append(context.Background(), evs); err != nil {
		r.t.Fatal(err)
	}
	return ids
}

// eventually waits up to 20 s for cond (sinktest.Eventually).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	sinktest.Eventually(t, what, 20*time.Second, cond)
}

func byInstance(ds []*sinkv1.Delivery) map[string][]string {
	out := map[string][]string{}
	for _, d := range ds {
		out[d.GetInstance()] = append(out[d.GetInstance()], d.GetId())
	}
	return out
}

// Without failures, each instance's events reach the plugin in ingest
// order, instances interleaved.
func TestOrderPerInstance(t *testing.T) {
	r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack {
		time.Sleep(50 * time.Microsecond)
		return ok(d)
	}, Options{BatchSize: 7, MaxInFlight: 60})
	want := map[string][]string{}
	for _, inst := range []string{"a", "b", "c"} {
		r.set(inst, `{"enabled":true,"events":[]}`)
	}
	for range 30 {
		for _, inst := range []string{"a", "b", "c"} {
			want[inst] = append(want[inst], r.add(inst, "MESSAGES_UPSERT", 10)...)
		}
	}
	eventually(t, "900 deliveries", func() bool { return len(r.plugin.delivered()) >= 900 })
	got := byInstance(r.plugin.delivered())
	for inst, ids := range want {
		if fmt.Sprint(got[inst]) != fmt.Sprint(ids) {
			t.Errorf("instance %s: order differs from ingest order", inst)
		}
	}
	if r.plugin.overlap {
		t.Error("two batches of one instance were delivered at once, or a batch mixed instances")
	}
}

// By default an instance's chats are lanes of their own: a chat whose
// destination is slow does not hold up the instance's other chats, each
// chat's events (and those without a chat) keep their ingest order, and
// each batch names its chat. With "ordering": "instance" the instance is
// one lane: the slow chat's delivery holds up the events behind it.
func TestOrderPerChat(t *testing.T) {
	for name, ordering := range map[string]string{"default": "", "chat": `,"ordering":"chat"`, "instance": `,"ordering":"instance"`} {
		t.Run(name, func(t *testing.T) {
			byChat := ordering != `,"ordering":"instance"`
			release := make(chan struct{})
			var slow sync.Once
			var held atomic.Bool
			r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack {
				if bytes.Contains(d.GetEnvelope(), []byte("slow@")) {
					slow.Do(func() {
						held.Store(true)
						select {
						case <-release:
						case <-time.After(10 * time.Second):
						}
						held.Store(false)
					})
				}
				return ok(d)
			}, Options{BatchSize: 4})
			r.set("a", `{"enabled":true,"events":[]`+ordering+`}`)
			want := map[string][]string{}
			for range 5 {
				for _, chat := range []string{"slow@s.whatsapp.net", "x@s.whatsapp.net", "y@g.us", ""} {
					want[chat] = append(want[chat], r.addTo("a", chat, "MESSAGES_UPSERT", 3)...)
				}
			}
			eventually(t, "the slow chat's first delivery at the plugin", held.Load)
			others := len(want["x@s.whatsapp.net"]) + len(want["y@g.us"]) + len(want[""])
			passed := func() int {
				n := 0
				for _, d := range r.plugin.delivered() {
					if !bytes.Contains(d.GetEnvelope(), []byte("slow@")) {
						n++
					}
				}
				return n
			}
			if byChat {
				sinktest.Eventually(t, "the other chats' deliveries while the slow chat waits", 5*time.Second, func() bool { return passed() == others })
			} else {
				time.Sleep(200 * time.Millisecond)
				if n := passed(); n > 2*4 {
					t.Errorf("%d deliveries of other chats passed the slow one; want at most the two batches behind it", n)
				}
			}
			close(release)
			eventually(t, "every delivery", func() bool { return len(r.plugin.delivered()) == 60 })
			got := map[string][]string{}
			lanes := map[string]bool{}
			r.plugin.mu.Lock()
			for _, req := range r.plugin.reqs {
				lanes[req.GetLane()] = true
			}
			r.plugin.mu.Unlock()
			for _, d := range r.plugin.delivered() {
				chat := events.Chat(d.GetEnvelope())
				got[chat] = append(got[chat], d.GetId())
			}
			for chat, ids := range want {
				if fmt.Sprint(got[chat]) != fmt.Sprint(ids) {
					t.Errorf("chat %q: order %v differs from ingest order %v", chat, got[chat], ids)
				}
			}
			wantLanes := "map[:true]"
			if byChat {
				wantLanes = "map[:true slow@s.whatsapp.net:true x@s.whatsapp.net:true y@g.us:true]"
			}
			if fmt.Sprint(lanes) != wantLanes {
				t.Errorf("batches named the lanes %v, want %v", lanes, wantLanes)
			}
			if r.plugin.overlap {
				t.Error("two batches of one lane were delivered at once, or a batch mixed instances")
			}
		})
	}
}

// A lane's next batch goes to the plugin while the plugin still works on
// the previous one, at most two at a time; up to eight when the plugin says
// each is on its way (a broker sink awaiting confirms); a plugin of
// protocol 1, which would run them at once, gets one at a time.
func TestLanePipelinesBatches(t *testing.T) {
	for _, tc := range []struct {
		name     string
		v1, says bool
		want     int
	}{
		{"protocol 2", false, false, laneBatches},
		{"protocol 2, batches said sent", false, true, laneBatchesMax},
		{"protocol 1", true, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var first sync.Once
			p := &plugin{v1: tc.v1, says: tc.says}
			p.answer = func(d *sinkv1.Delivery) *sinkv1.Ack {
				// The first delivery waits until more batches came than
				// the lane may have at the plugin, as long as a slow
				// destination would.
				first.Do(func() {
					deadline := time.Now().Add(time.Second)
					for p.atPlugin() <= laneBatchesMax && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
				})
				return ok(d)
			}
			const n = (laneBatchesMax + 2) * 5
			r := newRigOf(t, p, Options{BatchSize: 5})
			r.set("a", `{"enabled":true,"events":[]}`)
			want := r.add("a", "MESSAGES_UPSERT", n)
			eventually(t, "every delivery", func() bool { return len(r.plugin.delivered()) >= n })
			if got := byInstance(r.plugin.delivered())["a"]; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("order differs from ingest order")
			}
			if got := r.plugin.atPlugin(); got != tc.want {
				t.Errorf("at most %d batches of the lane were at the plugin at once, want %d", got, tc.want)
			}
		})
	}
}

// The plugin gets the instance's settings once per batch, without the
// members that are the host's.
func TestPluginGetsItsOwnSettingsOncePerBatch(t *testing.T) {
	r := newRig(t, ok, Options{})
	r.set("on", `{"enabled":true,"events":[],"url":"https://x","retry":{"schedule":["1s"]},"disabled_reason":"old"}`)
	r.add("on", "MESSAGES_UPSERT", 3)
	eventually(t, "3 deliveries", func() bool { return len(r.plugin.delivered()) >= 3 })
	for _, d := range r.plugin.delivered() {
		if len(d.GetSettings()) != 0 {
			t.Errorf("delivery %s carries settings %s; want them once per batch", d.GetId(), d.GetSettings())
		}
	}
	r.plugin.mu.Lock()
	defer r.plugin.mu.Unlock()
	for _, req := range r.plugin.reqs {
		if req.GetInstance() != "on" || string(req.GetSettings()) != `{"enabled":true,"events":[],"url":"https://x"}` {
			t.Errorf("batch of %q with settings %s; want instance on, and the settings without retry and disabled_reason", req.GetInstance(), req.GetSettings())
		}
	}
}

// Only what an instance's settings want is sent; the rest is settled.
func TestFilter(t *testing.T) {
	r := newRig(t, ok, Options{})
	r.set("on", `{"enabled":true,"events":["MESSAGES_UPSERT"]}`)
	r.set("off", `{"enabled":false,"events":[]}`)
	want := r.add("on", "MESSAGES_UPSERT", 3)
	r.add("on", "CONNECTION_UPDATE", 3)
	r.add("off", "MESSAGES_UPSERT", 3)
	r.add("unset", "MESSAGES_UPSERT", 3)
	last := r.add("on", "MESSAGES_UPSERT", 1)
	eventually(t, "the last wanted event", func() bool { return len(r.plugin.delivered()) >= 4 })
	eventually(t, "an empty backlog", func() bool { return r.spool.Stats().Backlog["test"] == 0 })
	if got := byInstance(r.plugin.delivered()); fmt.Sprint(got) != fmt.Sprint(map[string][]string{"on": append(want, last...)}) {
		t.Fatalf("delivered %v", got)
	}
}

// A sink that no instance has enabled settles what arrives without
// sending any of it; once settings enable it, what arrives after is sent.
func TestNothingEnabled(t *testing.T) {
	r := newRig(t, ok, Options{})
	r.set("off", `{"enabled":false,"events":[]}`)
	r.add("off", "MESSAGES_UPSERT", 3)
	r.add("unset", "MESSAGES_UPSERT", 3)
	eventually(t, "an empty backlog", func() bool { return r.spool.Stats().Backlog["test"] == 0 })
	r.set("on", `{"enabled":true,"events":[]}`)
	want := r.add("on", "MESSAGES_UPSERT", 2)
	eventually(t, "what arrived once enabled", func() bool { return len(r.plugin.delivered()) >= 2 })
	eventually(t, "an empty backlog", func() bool { return r.spool.Stats().Backlog["test"] == 0 })
	if got := byInstance(r.plugin.delivered()); fmt.Sprint(got) != fmt.Sprint(map[string][]string{"on": want}) {
		t.Fatalf("delivered %v", got)
	}
}

// An instance whose destination hangs holds up only its own lane.
func TestHangingInstanceIsolated(t *testing.T) {
	release := make(chan struct{})
	r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack {
		if d.GetInstance() == "stuck" {
			<-release
		}
		return ok(d)
	}, Options{BatchSize: 10, MaxInFlight: 100, StallAfter: 100 * time.Millisecond, DeferFor: 50 * time.Millisecond})
	defer close(release)
	r.set("stuck", `{"enabled":true,"events":[]}`)
	r.set("fine", `{"enabled":true,"events":[]}`)
	r.add("stuck", "MESSAGES_UPSERT", 500) // far more than the window
	want := r.add("fine", "MESSAGES_UPSERT", 300)
	eventually(t, "all of the healthy instance's events", func() bool {
		return len(byInstance(r.plugin.delivered())["fine"]) == len(want)
	})
}

// A retried delivery is sent again with the next attempt; one rejected, or
// out of attempts, is dead-lettered with its reason.
func TestRetryAndDeadLetter(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string][]uint32{}
	r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack {
		mu.Lock()
		attempts[d.GetId()] = append(attempts[d.GetId()], d.GetAttempt())
		mu.Unlock()
		switch {
		case d.GetInstance() == "reject":
			return &sinkv1.Ack{Id: d.GetId(), Outcome: sinkv1.Outcome_OUTCOME_REJECT, Reason: "HTTP 400: bad"}
		case d.GetInstance() == "flaky" && d.GetAttempt() < 3:
			return &sinkv1.Ack{Id: d.GetId(), Outcome: sinkv1.Outcome_OUTCOME_RETRY, Reason: "HTTP 503"}
		case d.GetInstance() == "down":
			return &sinkv1.Ack{Id: d.GetId(), Outcome: sinkv1.Outcome_OUTCOME_RETRY, Reason: "connection refused"}
		}
		return ok(d)
	}, Options{Policy: Policy{Schedule: []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}}})
	for _, inst := range []string{"reject", "flaky", "down"} {
		r.set(inst, `{"enabled":true,"events":[]}`)
	}
	rej := r.add("reject", "MESSAGES_UPSERT", 1)[0]
	flaky := r.add("flaky", "MESSAGES_UPSERT", 1)[0]
	down := r.add("down", "MESSAGES_UPSERT", 1)[0]
	eventually(t, "two dead letters", func() bool { return r.spool.Stats().Dead["test"] == 2 })
	eventually(t, "the flaky one delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(attempts[flaky]) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts[flaky]) != "[1 2 3]" || fmt.Sprint(attempts[rej]) != "[1]" || fmt.Sprint(attempts[down]) != "[1 2 3 4]" {
		t.Fatalf("attempts: flaky %v, reject %v, down %v", attempts[flaky], attempts[rej], attempts[down])
	}
	dl, err := r.spool.DeadLetters("test", "reject", 0, "")
	if err != nil || len(dl) != 1 || dl[0].Reason != "HTTP 400: bad" {
		t.Fatalf("reject's dead letters %+v (%v)", dl, err)
	}
	dl, err = r.spool.DeadLetters("test", "down", 0, "")
	if err != nil || len(dl) != 1 || dl[0].Attempts != 4 {
		t.Fatalf("down's dead letters %+v (%v)", dl, err)
	}
}

// A stream that breaks with deliveries in flight loses none of them.
func TestBrokenStreamResends(t *testing.T) {
	r := newRig(t, ok, Options{BatchSize: 10})
	r.plugin.breakAt = 25
	r.set("x", `{"enabled":true,"events":[]}`)
	want := r.add("x", "MESSAGES_UPSERT", 200)
	eventually(t, "every event after the break", func() bool {
		seen := map[string]bool{}
		for _, d := range r.plugin.delivered() {
			seen[d.GetId()] = true
		}
		return len(seen) == len(want)
	})
	if r.plugin.streams < 2 {
		t.Fatalf("%d streams; the break should have opened a second", r.plugin.streams)
	}
}

func TestPolicyNext(t *testing.T) {
	p := Policy{Schedule: []time.Duration{0, time.Second, time.Minute}, Jitter: 0.2, MaxAge: time.Hour, MaxRetryAfter: 10 * time.Minute}
	now := time.Now()
	for range 100 {
		due, err := p.Next(1, now, 0, now)
		if err != nil || due.Sub(now) < 800*time.Millisecond || due.Sub(now) > 1200*time.Millisecond {
			t.Fatalf("after attempt 1: %v %v; want 1s ±20%%", due.Sub(now), err)
		}
	}
	if due, _ := p.Next(1, now, 5*time.Minute, now); due.Sub(now) != 5*time.Minute {
		t.Errorf("Retry-After 5m gave %v", due.Sub(now))
	}
	if due, _ := p.Next(1, now, 5*time.Hour, now); due.Sub(now) != 10*time.Minute {
		t.Errorf("Retry-After over the cap gave %v; want the cap", due.Sub(now))
	}
	if _, err := p.Next(3, now, 0, now); err == nil {
		t.Error("attempt 3 of a 3-entry schedule must give up")
	}
	if _, err := p.Next(2, now.Add(-59*time.Minute-30*time.Second), 0, now); err == nil { // + 1m ±20% > 1h
		t.Error("a retry past the maximum age must give up")
	}
}
