package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testSink is a Sink whose methods are fields.
type testSink struct {
	UnimplementedSink
	desc     Description
	open     func(Config) error
	validate func(json.RawMessage) (json.RawMessage, error)
	deliver  func([]Delivery, Acks) error
}

func (s *testSink) Describe() Description { return s.desc }

func (s *testSink) Open(_ context.Context, c Config) error {
	if s.open == nil {
		return nil
	}
	return s.open(c)
}

func (s *testSink) Validate(_ context.Context, _ string, b json.RawMessage) (json.RawMessage, error) {
	return s.validate(b)
}

func (s *testSink) Deliver(_ context.Context, b []Delivery, a Acks) error { return s.deliver(b, a) }

// dial serves s over an in-memory gRPC connection, as the host sees it.
func dial(t *testing.T, s Sink) sinkv1.SinkClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	sinkv1.RegisterSinkServer(gs, newServer(s, hclog.NewNullLogger()))
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///test",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); gs.Stop(); <-served })
	return sinkv1.NewSinkClient(conn)
}

func batchOf(prefix string, n int) []*sinkv1.Delivery {
	ds := make([]*sinkv1.Delivery, n)
	for i := range ds {
		ds[i] = &sinkv1.Delivery{
			Id: fmt.Sprintf("%s%d", prefix, i), Instance: "i", Event: "MESSAGES_UPSERT", Attempt: 1,
			Envelope: json.RawMessage(`{"event":"MESSAGES_UPSERT","instance":"i","data":{}}`),
		}
	}
	return ds
}

// deliver sends batches on one stream, closes it, and returns every ack
// the plugin sent, in order.
func deliver(t *testing.T, c sinkv1.SinkClient, batches ...[]*sinkv1.Delivery) []*sinkv1.Ack {
	t.Helper()
	reqs := make([]*sinkv1.DeliverRequest, len(batches))
	for i, b := range batches {
		reqs[i] = &sinkv1.DeliverRequest{Deliveries: b}
		if len(b) > 0 {
			reqs[i].Instance = b[0].GetInstance()
		}
	}
	return deliverRequests(t, c, reqs...)
}

// deliverRequests is deliver with the requests made by the caller; each
// gets the same settings.
func deliverRequests(t *testing.T, c sinkv1.SinkClient, reqs ...*sinkv1.DeliverRequest) []*sinkv1.Ack {
	t.Helper()
	stream, err := c.Deliver(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range reqs {
		req.Settings = json.RawMessage(`{"enabled":true,"events":[]}`)
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var acks []*sinkv1.Ack
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return acks
		}
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, resp.GetAcks()...)
	}
}

// byID indexes acks, failing t for an id acked twice.
func byID(t *testing.T, acks []*sinkv1.Ack) map[string]*sinkv1.Ack {
	t.Helper()
	m := map[string]*sinkv1.Ack{}
	for _, a := range acks {
		if m[a.GetId()] != nil {
			t.Errorf("%s acked twice: %v then %v", a.GetId(), m[a.GetId()], a)
		}
		m[a.GetId()] = a
	}
	return m
}

func TestDeliverAcksEveryDeliveryOnce(t *testing.T) {
	s := &testSink{deliver: func(b []Delivery, a Acks) error {
		var wg sync.WaitGroup
		for _, d := range b {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.Done(d.ID, nil)
				a.Done(d.ID, errors.New("second ack: ignored"))
			}()
		}
		a.Done("not-in-this-batch", nil)
		wg.Wait()
		return nil
	}}
	sent := append(batchOf("a", 300), batchOf("b", 300)...)
	acks := byID(t, deliver(t, dial(t, s), sent[:300], sent[300:]))
	if len(acks) != len(sent) {
		t.Errorf("%d distinct acks, want %d", len(acks), len(sent))
	}
	for _, d := range sent {
		if a := acks[d.GetId()]; a.GetOutcome() != sinkv1.Outcome_OUTCOME_OK {
			t.Errorf("%s: %v, want OK (the first ack wins)", d.GetId(), a)
		}
	}
	if acks["not-in-this-batch"] != nil {
		t.Error("an ack for an id that was not sent reached the host")
	}
}

func TestDeliverFillsWhatWasNotAcked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ret     func() error
		outcome sinkv1.Outcome
		reason  string
		afterMs int64
		disable bool
	}{
		{"nil is a retry", func() error { return nil }, sinkv1.Outcome_OUTCOME_RETRY, "without acknowledging", 0, false},
		{"plain error is a retry", func() error { return errors.New("broker down") }, sinkv1.Outcome_OUTCOME_RETRY, "broker down", 0, false},
		{"retry after", func() error { return RetryAfter(errors.New("429"), 1500*time.Millisecond) }, sinkv1.Outcome_OUTCOME_RETRY, "429", 1500, false},
		{"permanent rejects", func() error { return Permanent(errors.New("400 bad request")) }, sinkv1.Outcome_OUTCOME_REJECT, "400 bad request", 0, false},
		{"gone rejects and disables", func() error { return Gone(errors.New("410 gone")) }, sinkv1.Outcome_OUTCOME_REJECT, "410 gone", 0, true},
		{"panic is a retry", func() error { panic("nil map") }, sinkv1.Outcome_OUTCOME_RETRY, "Deliver panicked: nil map", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &testSink{deliver: func(b []Delivery, a Acks) error {
				a.Done(b[0].ID, nil) // the one acked keeps its outcome
				return tc.ret()
			}}
			acks := byID(t, deliver(t, dial(t, s), batchOf("d", 3)))
			if a := acks["d0"]; a.GetOutcome() != sinkv1.Outcome_OUTCOME_OK {
				t.Errorf("d0 (acked OK): %v", a)
			}
			for _, id := range []string{"d1", "d2"} {
				a := acks[id]
				if a.GetOutcome() != tc.outcome || !strings.Contains(a.GetReason(), tc.reason) ||
					a.GetRetryAfterMs() != tc.afterMs || a.GetDisable() != tc.disable {
					t.Errorf("%s: %v, want %v, reason ~%q, retry_after_ms %d, disable %v",
						id, a, tc.outcome, tc.reason, tc.afterMs, tc.disable)
				}
			}
		})
	}
}

// TestDeliverLateAcks: acks a sink sends after its Deliver returned are
// ignored, whether they race with the return or come long after, and never
// crash the plugin.
func TestDeliverLateAcks(t *testing.T) {
	release := make(chan struct{})
	var late sync.WaitGroup
	s := &testSink{deliver: func(b []Delivery, a Acks) error {
		for i, d := range b {
			late.Add(1)
			go func() {
				defer late.Done()
				if i%2 == 1 {
					<-release
				}
				a.Done(d.ID, nil)
			}()
		}
		return nil
	}}
	var batches [][]*sinkv1.Delivery
	for i := range 50 {
		batches = append(batches, batchOf(fmt.Sprintf("b%d-", i), 4))
	}
	acks := byID(t, deliver(t, dial(t, s), batches...))
	close(release)
	late.Wait()
	if len(acks) != 200 {
		t.Errorf("%d acks, want 200", len(acks))
	}
	for id, a := range acks {
		if a.GetOutcome() != sinkv1.Outcome_OUTCOME_OK && a.GetOutcome() != sinkv1.Outcome_OUTCOME_RETRY {
			t.Errorf("%s: %v", id, a)
		}
	}
}

func TestDeliverSkipsEmptyBatches(t *testing.T) {
	calls := 0
	s := &testSink{deliver: func(b []Delivery, a Acks) error {
		calls++
		return nil
	}}
	if acks := deliver(t, dial(t, s), nil, nil); len(acks) != 0 || calls != 0 {
		t.Errorf("empty batches: %d acks, %d Deliver calls; want none", len(acks), calls)
	}
}

// firstOfBatch is a sink that acks a one-delivery batch and hands the
// delivery, as Deliver got it, to the channel.
func firstOfBatch() (*testSink, <-chan Delivery) {
	got := make(chan Delivery, 1)
	return &testSink{deliver: func(b []Delivery, a Acks) error {
		got <- b[0]
		a.Done(b[0].ID, nil)
		return nil
	}}, got
}

func TestDeliverPassesTheDelivery(t *testing.T) {
	s, got := firstOfBatch()
	want := &sinkv1.Delivery{Id: "x1", Instance: "shop", Event: "GROUP_UPDATE", Attempt: 3,
		Envelope: []byte(`{"event":"GROUP_UPDATE","instance":"shop","data":{"id":"1@g.us"},"date_time":"2024-01-01T12:00:00.000Z"}`)}
	deliver(t, dial(t, s), []*sinkv1.Delivery{want})
	d := <-got
	if d.ID != "x1" || d.Instance != "shop" || d.Event != "GROUP_UPDATE" || d.Attempt != 3 ||
		string(d.Envelope) != string(want.Envelope) || string(d.Settings) != `{"enabled":true,"events":[]}` {
		t.Errorf("delivery %+v", d)
	}
	env, err := d.Decode()
	if err != nil || env.Instance != "shop" || env.DateTime != "2024-01-01T12:00:00.000Z" || string(env.Data) != `{"id":"1@g.us"}` {
		t.Errorf("Decode: %+v, %v", env, err)
	}
}

// fakeStream records what sendAcks sends.
type fakeStream struct {
	sinkv1.Sink_DeliverServer
	sizes []int
	sent  [][]string
	err   error
}

func (f *fakeStream) Send(r *sinkv1.DeliverResponse) error {
	f.sizes = append(f.sizes, len(r.GetAcks()))
	f.sent = append(f.sent, r.GetSent())
	return f.err
}

func queued(n int) chan outAck {
	ch := make(chan outAck, n)
	for i := range n {
		ch <- outAck{ack: &sinkv1.Ack{Id: fmt.Sprint(i)}}
	}
	close(ch)
	return ch
}

func TestSendAcksCoalesces(t *testing.T) {
	f := &fakeStream{}
	if err := sendAcks(f, queued(600), ackDelay); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.sizes) != "[512 88]" {
		t.Errorf("sent messages of %v acks, want [512 88]", f.sizes)
	}
}

// sendAcksWithin runs sendAcks with a delay of an hour on queued, then on
// what the test puts in the channel it returns, and returns the messages
// sent.
func sendAcksWithin(t *testing.T, queued ...outAck) (chan<- outAck, <-chan *sinkv1.DeliverResponse) {
	in := make(chan outAck, 16)
	for _, o := range queued {
		in <- o
	}
	out := make(chan *sinkv1.DeliverResponse, 16)
	done := make(chan error)
	go func() { done <- sendAcks(chanStream{out: out}, in, time.Hour) }()
	t.Cleanup(func() { close(in); <-done })
	return in, out
}

// chanStream hands every message sent to a channel.
type chanStream struct {
	sinkv1.Sink_DeliverServer
	out chan<- *sinkv1.DeliverResponse
}

func (c chanStream) Send(r *sinkv1.DeliverResponse) error { c.out <- r; return nil }

// A batch's last ack ends its message without waiting for more (here an
// hour), with the acks already queued behind it.
func TestSendAcksSendsTheLastAckOfABatchAtOnce(t *testing.T) {
	_, out := sendAcksWithin(t,
		outAck{ack: &sinkv1.Ack{Id: "a1"}}, outAck{ack: &sinkv1.Ack{Id: "a2"}, last: true}, outAck{ack: &sinkv1.Ack{Id: "b1"}})
	select {
	case r := <-out:
		if got := fmt.Sprint(ackIDs(r)); got != "[a1 a2 b1]" {
			t.Errorf("the message held %v, want a1, a2 and b1, queued behind them", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the batch's last ack did not end its message")
	}
}

// A batch's Sent ends its message at once too.
func TestSendAcksSendsABatchsSentAtOnce(t *testing.T) {
	in, out := sendAcksWithin(t)
	in <- outAck{ack: &sinkv1.Ack{Id: "a1"}}
	in <- outAck{sent: "b1"}
	select {
	case r := <-out:
		if fmt.Sprint(ackIDs(r), r.GetSent()) != "[a1] [b1]" {
			t.Errorf("the message held acks %v and said sent %v, want [a1] [b1]", ackIDs(r), r.GetSent())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the batch's Sent did not end its message")
	}
}

// Without a batch's last ack or Sent, acks wait for others.
func TestSendAcksWaitsForMore(t *testing.T) {
	in, out := sendAcksWithin(t)
	in <- outAck{ack: &sinkv1.Ack{Id: "a1"}}
	select {
	case r := <-out:
		t.Errorf("a message of %v went before its delay", ackIDs(r))
	case <-time.After(100 * time.Millisecond):
	}
}

func ackIDs(r *sinkv1.DeliverResponse) []string {
	var ids []string
	for _, a := range r.GetAcks() {
		ids = append(ids, a.GetId())
	}
	return ids
}

// Sent tells the host once, naming a delivery still pending, and nothing
// once Deliver has returned.
func TestAckerSaysSentOnce(t *testing.T) {
	out := make(chan outAck, 4)
	released := 0
	a := &acker{pending: map[string]bool{"a": true, "b": true}, out: out, logger: hclog.NewNullLogger(), release: func() { released++ }}
	a.Done("a", nil)
	a.sent()
	a.sent()
	a.finish(nil)
	a.sent()
	close(out)
	var got []string
	for o := range out {
		if o.ack == nil {
			got = append(got, "sent "+o.sent)
		} else {
			got = append(got, "ack "+o.ack.GetId())
		}
	}
	if fmt.Sprint(got) != "[ack a sent b ack b]" || released != 3 {
		t.Errorf("got %v and %d releases, want [ack a sent b ack b] and 3", got, released)
	}
}

func TestAckerMarksTheLastAckOfTheBatch(t *testing.T) {
	out := make(chan outAck, 4)
	a := &acker{pending: map[string]bool{"a": true, "b": true}, out: out, logger: hclog.NewNullLogger()}
	a.Done("a", nil)
	a.Done("b", nil)
	a.finish(errors.New("returned"))
	a = &acker{pending: map[string]bool{"c": true, "d": true}, out: out, logger: hclog.NewNullLogger()}
	a.finish(errors.New("returned"))
	close(out)
	var got []string
	for o := range out {
		mark := "-"
		if o.last {
			mark = "last"
		}
		got = append(got, mark)
	}
	if fmt.Sprint(got) != "[- last - last]" {
		t.Errorf("acks marked %v, want [- last - last]: the ack that completes a batch is its last, whether Done or finish sends it", got)
	}
}

func TestSendAcksDrainsAfterAFailedSend(t *testing.T) {
	f := &fakeStream{err: errors.New("host gone")}
	ch := queued(1000)
	if err := sendAcks(f, ch, ackDelay); err == nil || err.Error() != "host gone" {
		t.Errorf("err %v, want the send's error", err)
	}
	if len(f.sizes) != 1 || len(ch) != 0 {
		t.Errorf("sent %v, %d left in the channel; want one send and a drained channel", f.sizes, len(ch))
	}
}

func TestDescribe(t *testing.T) {
	srv := newServer(&testSink{desc: Description{Name: "websocket", Version: "1.2.0",
		SecretFields: []string{"secret"}, Listener: true}}, hclog.NewNullLogger())
	d, err := srv.Describe(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.GetName() != "websocket" || d.GetVersion() != "1.2.0" || d.GetProtocolVersion() != sinkv1.ProtocolVersion ||
		fmt.Sprint(d.GetSecretFields()) != "[secret]" ||
		fmt.Sprint(d.GetCapabilities()) != "[CAPABILITY_LISTENER]" {
		t.Errorf("Describe: %v", d)
	}

	srv = newServer(&testSink{desc: Description{Name: "Web Hook"}}, hclog.NewNullLogger())
	if _, err := srv.Describe(context.Background(), nil); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("bad name: %v, want FailedPrecondition", err)
	}
}

func TestCheckDescription(t *testing.T) {
	for _, tc := range []struct {
		d    Description
		want string // "" for no error
	}{
		{Description{Name: "webhook"}, ""},
		{Description{Name: "kafka-2_eu"}, ""},
		{Description{Name: strings.Repeat("a", 32)}, ""},
		{Description{Name: ""}, `name ""`},
		{Description{Name: "Webhook"}, `name "Webhook"`},
		{Description{Name: "2fa"}, `name "2fa"`},
		{Description{Name: "web.hook"}, `name "web.hook"`},
		{Description{Name: strings.Repeat("a", 33)}, "want 1-32"},
		{Description{Name: "plugins"}, "route of the host"},
	} {
		err := checkDescription(tc.d)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.d.Name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error with %q", tc.d.Name, err, tc.want)
		}
	}
}

func TestOpen(t *testing.T) {
	var got Config
	s := &testSink{open: func(c Config) error { got = c; return nil }}
	srv := newServer(s, hclog.NewNullLogger())
	for _, tc := range []struct {
		naming sinkv1.Naming
		want   events.Naming
	}{
		{sinkv1.Naming_NAMING_UNSPECIFIED, events.NamingSeed},
		{sinkv1.Naming_NAMING_SEED, events.NamingSeed},
		{sinkv1.Naming_NAMING_EVOLUTION, events.NamingEvolution},
	} {
		_, err := srv.Open(context.Background(), &sinkv1.OpenRequest{Naming: tc.naming, ListenSocket: "/run/ws.sock", ServerUrl: "https://x"})
		if err != nil || got.Naming != tc.want || got.Settings == nil || got.ListenSocket != "/run/ws.sock" ||
			got.ServerURL != "https://x" || got.Logger == nil {
			t.Errorf("%v: config %+v, err %v", tc.naming, got, err)
		}
	}
	s.open = func(Config) error { return errors.New(`uri: parse "amqp//x": missing scheme`) }
	_, err := srv.Open(context.Background(), &sinkv1.OpenRequest{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "missing scheme") {
		t.Errorf("Open error: %v, want InvalidArgument with the sink's message", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		out      string
		err      error
		code     codes.Code // OK: a response
		settings string
		fields   string
	}{
		{"normalized", `{"enabled":true,"url":"https://a"}`, nil, codes.OK, `{"enabled":true,"url":"https://a"}`, "[]"},
		{"field errors", "", FieldErrors{{"url", "must be http(s)"}, {"secret", "must start with whsec_"}}, codes.OK, "", "[url: must be http(s) secret: must start with whsec_]"},
		{"wrapped field errors", "", fmt.Errorf("webhook: %w", FieldErrors{{"url", "missing"}}), codes.OK, "", "[url: missing]"},
		{"empty field errors", "", FieldErrors{}, codes.Internal, "", ""},
		{"internal error", "", errors.New("boom"), codes.Internal, "", ""},
		{"not JSON", `{"url":`, nil, codes.Internal, "", ""},
		{"nothing", "", nil, codes.Internal, "", ""},
		{"not an object", `["url"]`, nil, codes.Internal, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &testSink{validate: func(json.RawMessage) (json.RawMessage, error) {
				if tc.out == "" {
					return nil, tc.err
				}
				return json.RawMessage(tc.out), tc.err
			}}
			resp, err := newServer(s, hclog.NewNullLogger()).Validate(context.Background(), &sinkv1.ValidateRequest{Instance: "i"})
			if status.Code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			if err != nil {
				return
			}
			var fields []string
			for _, fe := range resp.GetFieldErrors() {
				fields = append(fields, fe.GetField()+": "+fe.GetMessage())
			}
			if string(resp.GetSettings()) != tc.settings || fmt.Sprint(fields) != tc.fields {
				t.Errorf("settings %s, field errors %v; want %s, %s", resp.GetSettings(), fields, tc.settings, tc.fields)
			}
		})
	}
}

func TestHealthAndClose(t *testing.T) {
	srv := newServer(&testSink{}, hclog.NewNullLogger())
	h, err := srv.Health(context.Background(), nil)
	if err != nil || !h.GetReady() {
		t.Errorf("Health of UnimplementedSink: %v, %v; want ready", h, err)
	}
	if _, err := srv.Close(context.Background(), nil); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// holdingSink is a sink that holds the batch whose first delivery is held
// until the batch whose first delivery is until has reached it (for 5 s at
// most: then the test fails), and acks every delivery. delivered returns
// the ids it was given, in the order they reached it.
func holdingSink(t *testing.T, held, until string) (s *testSink, delivered func() []string) {
	var mu sync.Mutex
	var got []string
	arrived := make(chan struct{})
	s = &testSink{deliver: func(b []Delivery, a Acks) error {
		switch b[0].ID {
		case held:
			select {
			case <-arrived:
			case <-time.After(5 * time.Second):
				t.Errorf("batch %s did not reach the sink while batch %s was held", until, held)
			}
		case until:
			close(arrived)
		}
		mu.Lock()
		for _, d := range b {
			got = append(got, d.ID)
		}
		mu.Unlock()
		for _, d := range b {
			a.Done(d.ID, nil)
		}
		return nil
	}}
	return s, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// TestDeliverKeepsAnInstancesBatchesInOrder is issue 15's "order breaks
// for large events": the host splits one instance's batch of 20 events of
// 1 MiB into several stream messages, and the sink must see them in the
// order sent. The first message is held in Deliver until another
// instance's batch, sent after all of them, has reached the sink: any of
// shop's later messages that ran meanwhile would come first.
func TestDeliverKeepsAnInstancesBatchesInOrder(t *testing.T) {
	s, delivered := holdingSink(t, "big0", "other0")
	data := `"` + strings.Repeat("A", 1<<20) + `"`
	var batches [][]*sinkv1.Delivery
	var want []string
	for i := range 20 { // 3 events of 1 MiB to a 4 MiB message, as the host splits them
		if i%3 == 0 {
			batches = append(batches, nil)
		}
		id := fmt.Sprintf("big%d", i)
		want = append(want, id)
		batches[len(batches)-1] = append(batches[len(batches)-1], &sinkv1.Delivery{
			Id: id, Instance: "shop", Event: "MESSAGES_UPSERT", Attempt: 1,
			Envelope: []byte(`{"event":"MESSAGES_UPSERT","instance":"shop","data":` + data + `}`),
		})
	}
	acks := deliver(t, dial(t, s), append(batches, batchOf("other", 2))...)
	if len(acks) != 22 {
		t.Fatalf("%d acks, want 22", len(acks))
	}
	var shop []string
	for _, id := range delivered() {
		if strings.HasPrefix(id, "big") {
			shop = append(shop, id)
		}
	}
	if fmt.Sprint(shop) != fmt.Sprint(want) {
		t.Errorf("the sink saw shop's deliveries in the order\n%v\nwant\n%v", shop, want)
	}
}

// Batches of different lanes of one instance (two chats) run at once,
// while those of one lane keep their order: chat a's first batch is held
// in Deliver until chat b's batch, sent after all of a's, has reached the
// sink, and a's second batch still comes after a's first.
func TestDeliverRunsAnInstancesLanesConcurrently(t *testing.T) {
	s, delivered := holdingSink(t, "a0", "b0")
	req := func(lane, prefix string, n int) *sinkv1.DeliverRequest {
		return &sinkv1.DeliverRequest{Instance: "i", Lane: lane, Deliveries: batchOf(prefix, n)}
	}
	a1, a2 := req("a@s.whatsapp.net", "a", 2), req("a@s.whatsapp.net", "a2-", 2)
	acks := deliverRequests(t, dial(t, s), a1, a2, req("b@s.whatsapp.net", "b", 2))
	if len(byID(t, acks)) != 6 {
		t.Fatalf("%d acks, want 6", len(acks))
	}
	var a []string
	for _, id := range delivered() {
		if strings.HasPrefix(id, "a") {
			a = append(a, id)
		}
	}
	if want := "[a0 a1 a2-0 a2-1]"; fmt.Sprint(a) != want {
		t.Errorf("the sink saw chat a's deliveries in the order %v, want %v", a, want)
	}
}

// At most maxConcurrentBatches batches are in the sink's Deliver at once;
// the others wait their turn, and every one runs.
func TestDeliverBoundsConcurrentBatches(t *testing.T) {
	release := make(chan struct{})
	var running, most atomic.Int64
	s := &testSink{deliver: func(b []Delivery, a Acks) error {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		running.Add(-1)
		for _, d := range b {
			a.Done(d.ID, nil)
		}
		return nil
	}}
	var reqs []*sinkv1.DeliverRequest
	for i := range maxConcurrentBatches + 36 {
		ds := batchOf(fmt.Sprintf("c%d-", i), 1)
		reqs = append(reqs, &sinkv1.DeliverRequest{Instance: "i", Lane: fmt.Sprintf("chat%d", i), Deliveries: ds})
	}
	go func() {
		for most.Load() < maxConcurrentBatches {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // time for more to start, were any allowed
		close(release)
	}()
	if acks := deliverRequests(t, dial(t, s), reqs...); len(byID(t, acks)) != len(reqs) {
		t.Fatalf("%d acks, want %d", len(acks), len(reqs))
	}
	if got := most.Load(); got != maxConcurrentBatches {
		t.Errorf("%d batches ran at once, want at most (and here exactly) %d", got, maxConcurrentBatches)
	}
}

// A batch that said Sent lets its instance's next batch start while its
// own acks are still to come; without it, the next batch waits for
// Deliver to return.
func TestDeliverSentStartsTheNextBatch(t *testing.T) {
	for _, sent := range []bool{true, false} {
		t.Run(fmt.Sprintf("sent=%v", sent), func(t *testing.T) {
			secondStarted := make(chan struct{})
			var overlapped atomic.Bool
			s := &testSink{deliver: func(b []Delivery, a Acks) error {
				if b[0].ID == "second0" {
					close(secondStarted)
				} else {
					if sent {
						Sent(a)
						Sent(a) // twice does nothing more
					}
					select { // the first batch's confirmations are slow
					case <-secondStarted:
						overlapped.Store(true)
					case <-time.After(200 * time.Millisecond):
					}
				}
				for _, d := range b {
					a.Done(d.ID, nil)
				}
				return nil
			}}
			acks := deliver(t, dial(t, s), batchOf("first", 3), batchOf("second", 3))
			if len(byID(t, acks)) != 6 {
				t.Fatalf("%d acks, want 6", len(acks))
			}
			if overlapped.Load() != sent {
				t.Errorf("the second batch started before the first returned: %v, want %v", overlapped.Load(), sent)
			}
		})
	}
}

func TestDeliverWritesTheEventPerTheNamingMode(t *testing.T) {
	s, got := firstOfBatch()
	c := dial(t, s)
	if _, err := c.Open(context.Background(), &sinkv1.OpenRequest{Naming: sinkv1.Naming_NAMING_EVOLUTION}); err != nil {
		t.Fatal(err)
	}
	deliver(t, c, []*sinkv1.Delivery{{Id: "n1", Instance: "shop", Event: "GROUP_PARTICIPANTS_UPDATE",
		Envelope: []byte(`{"event":"GROUP_PARTICIPANTS_UPDATE","instance":"shop","data":{}}`)}})
	d := <-got
	if string(d.Envelope) != `{"event":"group-participants.update","instance":"shop","data":{}}` || d.Event != "GROUP_PARTICIPANTS_UPDATE" {
		t.Errorf("envelope %s, event %s; want the wire name in the envelope and the constant in Event", d.Envelope, d.Event)
	}
}

// scopeSink records the egress policy Open got and whether Validate was
// told a scoped key is setting.
type scopeSink struct {
	UnimplementedSink
	egress egress.Policy
	scoped []bool
}

func (s *scopeSink) Describe() Description { return Description{Name: "scope"} }

func (s *scopeSink) Open(_ context.Context, c Config) error { s.egress = c.Egress; return nil }

func (s *scopeSink) Validate(ctx context.Context, _ string, b json.RawMessage) (json.RawMessage, error) {
	s.scoped = append(s.scoped, ScopedKey(ctx))
	return b, nil
}

func (s *scopeSink) Deliver(context.Context, []Delivery, Acks) error { return nil }

// TestEgressAndScopeReachTheSink: the host's egress lists arrive as
// Config.Egress, a bad one fails Open naming it, and the scoped flag of a
// Validate call arrives as ScopedKey.
func TestEgressAndScopeReachTheSink(t *testing.T) {
	s := &scopeSink{}
	c := dial(t, s)
	ctx := context.Background()
	if _, err := c.Open(ctx, &sinkv1.OpenRequest{Egress: &sinkv1.Egress{Allow: []string{"127.0.0.0/8"}, Deny: []string{"10.9.0.0/16"}}}); err != nil {
		t.Fatal(err)
	}
	if s.egress.Check(netip.MustParseAddr("127.0.0.1")) != nil || s.egress.Check(netip.MustParseAddr("10.9.1.1")) == nil || s.egress.Check(netip.MustParseAddr("::1")) == nil {
		t.Errorf("Config.Egress is not the host's: allow %v, deny %v", s.egress.Allow(), s.egress.Deny())
	}
	if _, err := c.Open(ctx, &sinkv1.OpenRequest{Egress: &sinkv1.Egress{Allow: []string{"nonsense"}}}); err == nil || !strings.Contains(err.Error(), "egress allow list") {
		t.Errorf("Open with a bad CIDR: %v, want an error naming the egress allow list", err)
	}
	for _, scoped := range []bool{false, true} {
		if _, err := c.Validate(ctx, &sinkv1.ValidateRequest{Instance: "i", Settings: []byte(`{}`), Scoped: scoped}); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(s.scoped) != "[false true]" {
		t.Errorf("ScopedKey in Validate: %v, want [false true]", s.scoped)
	}
}
