// Package sinktest is the conformance suite for evorelay sink plugins. A
// plugin runs it from its own go test:
//
//	func TestConformance(t *testing.T) {
//		dest := startReceiver(t) // a real destination: httptest, a broker
//		sinktest.Run(t, sinktest.Config{
//			New:  func() sdk.Sink { return New() },
//			Open: map[string]string{"uri": dest.URI},
//			Good: []json.RawMessage{json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT"],"url":"` + dest.URL + `"}`)},
//			Bad:  map[string]json.RawMessage{"url": json.RawMessage(`{"enabled":true,"events":[],"url":"ftp://x"}`)},
//			Deliver: &sinktest.DeliverCase{
//				Settings: json.RawMessage(`{"enabled":true,"events":[],"url":"` + dest.URL + `"}`),
//				Received: func(t testing.TB, want []string) []string { return dest.IDs(t, len(want)) },
//			},
//			Retry:  &sinktest.Failure{Settings: json.RawMessage(`{"enabled":true,"events":[],"url":"` + dest.URL + `/busy"}`)},
//			Reject: &sinktest.Failure{Settings: json.RawMessage(`{"enabled":true,"events":[],"url":"` + dest.URL + `/refuse"}`)},
//		})
//	}
//
// The suite serves the sink through the SDK's own gRPC adapter, the code
// sdk.Serve runs in the plugin process, over an in-memory connection, and
// talks to it as the host does. So it checks what the host will see, not
// what the Go methods return. It is not a test of the destination's own
// behaviour: the plugin's other tests cover that.
//
// # What it checks
//
//   - Describe: a valid name, a version, the protocol version, the same
//     answer before and after Open.
//   - Open with Config.Open.
//   - Validate: each of Good validates to a JSON object that keeps
//     "enabled" and "events" as given, and validating that output again
//     gives it back unchanged (the host stores it and may validate it
//     again); each of Bad fails with a field error naming its field, and
//     so does the first of Good with a member no sink takes.
//   - Deliver: BatchSize deliveries of realistic envelopes, in two batches
//     on one stream, are acknowledged exactly once each, all OK, with no
//     ack for an id that was not sent, and DeliverCase.Received reports
//     every id. Then the same with settings that carry members the sink
//     does not own (the host's, such as "retry", or a newer host's): the
//     sink ignores them and still acks OK.
//   - Health answers, and says ready after a successful Deliver.
//   - Retry: every delivery under Retry's settings is acked RETRY with a
//     reason. Reject: REJECT with a reason (and disable when asked).
//   - Outage: while Outage.Down has taken the destination away, deliveries
//     are acked RETRY; after Outage.Up, the same deliveries sent again are
//     acked OK and reach the destination.
//   - Close answers, and no goroutine the sink started outlives it.
//
// # What a plugin must fill
//
// New, Good and Bad are always required, and so is Deliver. Every plugin in
// plugins/ also fills Retry and Reject wherever its destination can fail
// that way (an HTTP 503 / 400, a broker that is unreachable / refuses the
// message); one that leaves either nil says why in a comment. A nil case is
// reported as skipped, never as passed.
//
// # Finding deliveries at the destination
//
// Every delivery id is unique to the run. A destination that carries the id
// (a webhook-id header, an AMQP message-id, Nats-Msg-Id) reports it from
// there; one that does not (websocket messages are {event, instance, data})
// finds it in the envelope: every data object carries it at data.key.id.
//
// Run must not run in parallel with other tests of the package: its leak
// check counts every goroutine the process starts while it runs.
package sinktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// Config is what the suite needs to know about one plugin.
type Config struct {
	// New returns a fresh sink, not yet opened. Required.
	New func() sdk.Sink
	// Open holds the process settings Open receives: the plugin's
	// EVORELAY_<NAME>_* variables, lowercased, without the prefix.
	Open map[string]string
	// Naming is the naming mode Open receives.
	Naming events.Naming
	// ListenSocket is the Unix socket path Open receives. Required when the
	// sink describes itself as a Listener.
	ListenSocket string
	// EgressAllow are the CIDRs the egress policy Open receives allows
	// besides its defaults, as EVORELAY_EGRESS_ALLOW does: a destination on
	// 127.0.0.1 needs "127.0.0.0/8".
	EgressAllow []string
	// Instance is the instance of every delivery; "" is DefaultInstance.
	Instance string

	// Good are settings that must validate, as the host passes them to
	// Validate: with "enabled" and "events" (constants) already there. Nil
	// is SubscriptionGood(), for a sink that takes no other settings.
	Good []json.RawMessage
	// Bad maps a field name to settings that must fail validation with a
	// field error naming that field. Nil is SubscriptionBad().
	Bad map[string]json.RawMessage

	// Deliver sends deliveries to a real destination and asks it what it got.
	Deliver *DeliverCase
	// Retry makes the destination fail transiently: every delivery must be
	// acked RETRY.
	Retry *Failure
	// Reject makes the destination refuse for good: every delivery must be
	// acked REJECT.
	Reject *Failure
	// Outage takes the destination away and brings it back: deliveries
	// must be acked RETRY meanwhile, and delivered once it is back.
	Outage *Outage

	// IgnoreGoroutines are goroutines the leak check tolerates, such as a
	// library's process-wide worker:
	// goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start").
	IgnoreGoroutines []goleak.Option
}

// DeliverCase is a delivery to a real destination the plugin's test runs.
type DeliverCase struct {
	// Settings are the instance's settings, in the form Good takes; the
	// suite validates them and delivers with the normalized result. Nil is
	// {"enabled":true,"events":[]}: every event.
	Settings json.RawMessage
	// Events are the events to send, cycled over BatchSize deliveries; nil
	// is DefaultEvents. A test that reads per-event queues can narrow it.
	Events []string
	// Before, if set, runs after Open and before anything is delivered:
	// connect a client, subscribe to a subject.
	Before func(t testing.TB)
	// Received returns the delivery ids the destination got. want are the
	// ids the suite sent, all acknowledged OK already; a destination that
	// is read asynchronously may wait until it has them (or give up after a
	// few seconds and return what it has). Required.
	Received func(t testing.TB, want []string) []string
}

// Failure is a way to make the destination fail.
type Failure struct {
	// Settings are the instance's settings, in the form Good takes; nil is
	// {"enabled":true,"events":[]}.
	Settings json.RawMessage
	// Open, when not nil, opens a fresh sink with these process settings
	// for this case instead of using the one opened with Config.Open (an
	// unreachable broker URL, say).
	Open map[string]string
	// Disable (Reject only) wants the acks to ask the host to disable the
	// instance's sink, as sdk.Gone does.
	Disable bool
}

// failureSize is how many deliveries a Retry or Reject case sends.
const failureSize = 2

// guard bounds every call the suite makes, so a sink that hangs fails
// with a message instead of at the test binary's timeout. It is not a
// timed assertion: a working sink is never near it.
const guard = 2 * time.Minute

// Run runs the conformance suite against the sink c.New returns.
func Run(t *testing.T, c Config) {
	t.Helper()
	if c.New == nil {
		t.Fatal("sinktest: Config.New is nil; it must return a fresh sink")
	}
	if c.Good == nil {
		c.Good = SubscriptionGood()
	}
	if c.Bad == nil {
		c.Bad = SubscriptionBad()
	}
	ignore := append([]goleak.Option{goleak.IgnoreCurrent()}, c.IgnoreGoroutines...)
	r := &runner{c: c, instance: c.Instance, tag: newRunTag(), log: newTestLog(t)}
	if r.instance == "" {
		r.instance = DefaultInstance
	}
	p, err := serve(t, c.New(), r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.p = p

	ok := t.Run("Describe", r.describe) && t.Run("Open", r.open)
	if ok {
		t.Run("Validate", r.validate)
		t.Run("Deliver", r.deliver)
		t.Run("Health", r.health)
		t.Run("Retry", r.failure("Retry", c.Retry, sinkv1.Outcome_OUTCOME_RETRY))
		t.Run("Reject", r.failure("Reject", c.Reject, sinkv1.Outcome_OUTCOME_REJECT))
		t.Run("Outage", r.outage)
		t.Run("Close", func(t *testing.T) { r.close(t, r.p) })
	}
	r.p.stop()
	t.Run("NoGoroutineLeaks", func(t *testing.T) {
		if !ok {
			t.Skip("the sink was never opened")
		}
		goleak.VerifyNone(t, ignore...)
	})
}

type runner struct {
	c         Config
	instance  string
	tag       string
	log       io.Writer
	p         *plugin
	listener  bool
	described *sinkv1.DescribeResponse
	delivered bool // the Deliver case ran and passed
}

func callCtx(t testing.TB) (context.Context, context.CancelFunc) {
	d := guard
	if dl, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if at, ok := dl.Deadline(); ok && time.Until(at)-5*time.Second < d {
			d = max(time.Until(at)-5*time.Second, time.Second)
		}
	}
	return context.WithTimeout(context.Background(), d)
}

// call makes one call to the plugin, bounded as callCtx bounds it, and
// fails t if the call does.
func call[Q, A any](t testing.TB, name string, f func(context.Context, Q, ...grpc.CallOption) (A, error), req Q) A {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	a, err := f(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return a
}

func (r *runner) describe(t *testing.T) {
	d := call(t, "Describe", r.p.Describe, &sinkv1.DescribeRequest{})
	r.described = d
	if d.GetProtocolVersion() != sinkv1.ProtocolVersion {
		t.Errorf("protocol version %d, want %d", d.GetProtocolVersion(), sinkv1.ProtocolVersion)
	}
	if d.GetVersion() == "" {
		t.Errorf("Description.Version is empty; GET /plugins shows it")
	}
	for i, f := range d.GetSecretFields() {
		if f == "" {
			t.Errorf("Description.SecretFields[%d] is empty", i)
		}
	}
	for _, c := range d.GetCapabilities() {
		if c == sinkv1.Capability_CAPABILITY_LISTENER {
			r.listener = true
		}
	}
	if r.listener && r.c.ListenSocket == "" {
		t.Fatalf("the sink is a Listener but Config.ListenSocket is empty; give it a socket path, e.g. filepath.Join(t.TempDir(), %q)", "sink.sock")
	}
	t.Logf("sink %q version %q", d.GetName(), d.GetVersion())
}

func (r *runner) openRequest(settings map[string]string) *sinkv1.OpenRequest {
	naming := sinkv1.Naming_NAMING_SEED
	if r.c.Naming == events.NamingEvolution {
		naming = sinkv1.Naming_NAMING_EVOLUTION
	}
	req := &sinkv1.OpenRequest{Settings: settings, Naming: naming, ServerUrl: ServerURL,
		Egress: &sinkv1.Egress{Allow: r.c.EgressAllow}}
	if r.listener {
		req.ListenSocket = r.c.ListenSocket
	}
	return req
}

func (r *runner) open(t *testing.T) {
	ctx, cancel := callCtx(t)
	defer cancel()
	if _, err := r.p.Open(ctx, r.openRequest(r.c.Open)); err != nil {
		t.Fatalf("Open(%v): %v", slices.Sorted(maps.Keys(r.c.Open)), err)
	}
	d, err := r.p.Describe(ctx, &sinkv1.DescribeRequest{})
	switch {
	case err != nil:
		t.Errorf("Describe after Open: %v", err)
	case !proto.Equal(d, r.described):
		t.Errorf("Describe after Open answers differently; it must not depend on configuration:\nbefore: %v\nafter:  %v", r.described, d)
	}
}

func (r *runner) validate(t *testing.T) {
	t.Run("good", func(t *testing.T) {
		if len(r.c.Good) == 0 {
			t.Skip("Config.Good is empty")
		}
		for i, s := range r.c.Good {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				in := map[string]json.RawMessage{}
				if err := json.Unmarshal(s, &in); err != nil {
					t.Fatalf("Config.Good[%d] is not a JSON object: %v", i, err)
				}
				out, ok := r.validOK(t, r.p, s)
				if !ok {
					return
				}
				var got map[string]json.RawMessage
				_ = json.Unmarshal(out, &got) // validOK checked it is an object
				for _, k := range []string{"enabled", "events"} {
					if _, ok := in[k]; !ok {
						t.Errorf("Config.Good[%d] has no %q; give settings as the host passes them", i, k)
						continue
					}
					if !jsonEqual(in[k], got[k]) {
						t.Errorf("normalized settings changed %q: %s, want %s", k, orMissing(got[k]), in[k])
					}
				}
				again, ok := r.validOK(t, r.p, out)
				if ok && !jsonEqual(again, out) {
					t.Errorf("validating the normalized settings again changes them:\nfirst:  %s\nsecond: %s", out, again)
				}
			})
		}
	})
	t.Run("unknown", func(t *testing.T) {
		if len(r.c.Good) == 0 {
			t.Skip("Config.Good is empty")
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(r.c.Good[0], &m); err != nil {
			t.Fatalf("Config.Good[0] is not a JSON object: %v", err)
		}
		m[unknownMember] = json.RawMessage(`"x"`)
		settings, _ := json.Marshal(m)
		r.wantFieldError(t, settings, unknownMember)
	})
	t.Run("bad", func(t *testing.T) {
		if len(r.c.Bad) == 0 {
			t.Skip("Config.Bad is empty")
		}
		for _, field := range slices.Sorted(maps.Keys(r.c.Bad)) {
			t.Run(field, func(t *testing.T) { r.wantFieldError(t, r.c.Bad[field], field) })
		}
	})
}

// unknownMember is a settings member no sink takes: Validate must refuse
// it by name, as sdk.ParseSettings does.
const unknownMember = "sinktest_unknown_member"

// wantFieldError fails t unless Validate refuses settings with a field
// error naming field.
func (r *runner) wantFieldError(t *testing.T, settings json.RawMessage, field string) {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	resp, err := r.p.Validate(ctx, &sinkv1.ValidateRequest{Instance: r.instance, Settings: settings})
	if err != nil {
		t.Fatalf("Validate answered an error instead of field errors (return sdk.FieldErrors): %v", err)
	}
	fes := resp.GetFieldErrors()
	if len(fes) == 0 {
		t.Fatalf("Validate accepted the settings, want a field error for %q; normalized: %s", field, resp.GetSettings())
	}
	named := false
	for _, fe := range fes {
		named = named || fe.GetField() == field
		if fe.GetMessage() == "" {
			t.Errorf("field error for %q has no message", fe.GetField())
		}
	}
	if !named {
		t.Errorf("no field error names %q; got %v", field, fieldErrors(fes))
	}
}

// validOK validates settings (nil is everyEvent) and reports them
// normalized, failing t when they do not validate.
func (r *runner) validOK(t testing.TB, p *plugin, settings json.RawMessage) (json.RawMessage, bool) {
	t.Helper()
	if settings == nil {
		settings = everyEvent()
	}
	ctx, cancel := callCtx(t)
	defer cancel()
	resp, err := p.Validate(ctx, &sinkv1.ValidateRequest{Instance: r.instance, Settings: settings})
	switch {
	case err != nil:
		t.Errorf("Validate(%s): %v", settings, err)
		return nil, false
	case len(resp.GetFieldErrors()) > 0:
		t.Errorf("Validate(%s): field errors %v, want none", settings, fieldErrors(resp.GetFieldErrors()))
		return nil, false
	case !isObject(resp.GetSettings()):
		t.Errorf("Validate(%s) normalized them to %.80q, want a JSON object", settings, resp.GetSettings())
		return nil, false
	}
	return resp.GetSettings(), true
}

func (r *runner) deliver(t *testing.T) {
	dc := r.c.Deliver
	if dc == nil {
		t.Skip("Config.Deliver is nil")
	}
	if dc.Received == nil {
		t.Fatal("Config.Deliver.Received is nil; it must report what the destination got")
	}
	settings, ok := r.validOK(t, r.p, dc.Settings)
	if !ok {
		t.FailNow()
	}
	if dc.Before != nil {
		dc.Before(t)
	}
	ds := deliveries("st-"+r.tag+"-ok", r.instance, dc.Events, BatchSize)
	acks := r.send(t, r.p, settings, ds[:BatchSize/2], ds[BatchSize/2:])
	want := ids(ds)
	wantOK(t, acks, want)
	if t.Failed() {
		return
	}
	r.received(t, want)
	if t.Failed() {
		return
	}
	t.Run("IgnoresMembersItDoesNotOwn", func(t *testing.T) {
		foreign := withForeignMembers(settings)
		ds := deliveries("st-"+r.tag+"-foreign", r.instance, dc.Events, 2)
		wantOK(t, r.send(t, r.p, foreign, ds), ids(ds))
		if !t.Failed() {
			r.received(t, ids(ds))
		}
	})
	r.delivered = !t.Failed()
}

// foreignMembers are settings members a sink does not own: the host's own
// and one a newer host might add.
var foreignMembers = map[string]json.RawMessage{
	"retry":                   json.RawMessage(`{"schedule":["1s","10s"],"max_age":"1h0m0s"}`),
	"disabled_reason":         json.RawMessage(`"set by sinktest"`),
	"sinktest_newer_host_key": json.RawMessage(`{"any":["shape"]}`),
}

// withForeignMembers returns settings with foreignMembers added.
func withForeignMembers(settings json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(settings, &m) // validOK checked it is an object
	for k, v := range foreignMembers {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	out, _ := json.Marshal(m)
	return out
}

// wantOK fails t for each of ids acked with another outcome than OK.
func wantOK(t testing.TB, acks map[string]*sinkv1.Ack, ids []string) {
	t.Helper()
	for _, id := range ids {
		if a := acks[id]; a != nil && a.GetOutcome() != sinkv1.Outcome_OUTCOME_OK {
			t.Errorf("delivery %s: outcome %v (%s), want OK", id, a.GetOutcome(), a.GetReason())
		}
	}
}

// received fails t unless the destination reports every id of want.
func (r *runner) received(t testing.TB, want []string) {
	t.Helper()
	got := map[string]bool{}
	for _, id := range r.c.Deliver.Received(t, want) {
		got[id] = true
	}
	var missing []string
	for _, id := range want {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the destination did not get %d of %d deliveries acked OK: %v", len(missing), len(want), missing)
	}
}

// send delivers batches with the given settings on one stream, as the
// host does, and returns the one ack of each delivery, failing t for a
// delivery acked twice or never and for an ack of an id that was not sent.
func (r *runner) send(t testing.TB, p *plugin, settings json.RawMessage, batches ...[]*sinkv1.Delivery) map[string]*sinkv1.Ack {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	stream, err := p.Deliver(ctx)
	if err != nil {
		t.Fatalf("Deliver: open the stream: %v", err)
	}
	sent := map[string]bool{}
	for _, b := range batches {
		if err := stream.Send(&sinkv1.DeliverRequest{Deliveries: b, Instance: r.instance, Settings: settings}); err != nil {
			t.Fatalf("Deliver: send a batch: %v", err)
		}
		for _, d := range b {
			sent[d.GetId()] = true
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("Deliver: close the send side: %v", err)
	}
	acks := map[string]*sinkv1.Ack{}
	counts := map[string]int{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var waiting []string
			for id := range sent {
				if counts[id] == 0 {
					waiting = append(waiting, id)
				}
			}
			sort.Strings(waiting)
			if ctx.Err() != nil {
				t.Fatalf("Deliver: no ack within %v for %v: the sink hangs", guard, waiting)
			}
			t.Fatalf("Deliver: the stream failed with %v still unacked: %v", waiting, err)
		}
		for _, a := range resp.GetAcks() {
			counts[a.GetId()]++
			if acks[a.GetId()] == nil {
				acks[a.GetId()] = a
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(counts)) {
		switch n := counts[id]; {
		case !sent[id]:
			t.Errorf("ack for %q, which was never sent", id)
		case n > 1:
			t.Errorf("delivery %s acked %d times, want once", id, n)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(sent)) {
		if counts[id] == 0 {
			t.Errorf("delivery %s never acked", id)
		}
	}
	return acks
}

func (r *runner) health(t *testing.T) {
	h := call(t, "Health", r.p.Health, &sinkv1.HealthRequest{})
	t.Logf("ready=%v detail=%q", h.GetReady(), h.GetDetail())
	if r.delivered && !h.GetReady() {
		t.Errorf("Health says not ready (%q) right after a successful delivery", h.GetDetail())
	}
}

func (r *runner) failure(name string, f *Failure, want sinkv1.Outcome) func(t *testing.T) {
	return func(t *testing.T) {
		if f == nil {
			t.Skipf("Config.%s is nil", name)
		}
		p := r.p
		if f.Open != nil {
			fresh, err := serve(t, r.c.New(), r.log)
			if err != nil {
				t.Fatal(err)
			}
			defer fresh.stop()
			ctx, cancel := callCtx(t)
			defer cancel()
			if _, err := fresh.Open(ctx, r.openRequest(f.Open)); err != nil {
				t.Fatalf("Open(%v): %v", slices.Sorted(maps.Keys(f.Open)), err)
			}
			defer r.close(t, fresh)
			p = fresh
		}
		settings, ok := r.validOK(t, p, f.Settings)
		if !ok {
			t.FailNow()
		}
		ds := deliveries("st-"+r.tag+"-"+strings.ToLower(name), r.instance, []string{"MESSAGES_UPSERT", "CONNECTION_UPDATE"}, failureSize)
		acks := r.send(t, p, settings, ds)
		for _, id := range ids(ds) {
			a := acks[id]
			switch {
			case a == nil:
				// reported by send
			case a.GetOutcome() != want:
				t.Errorf("delivery %s: outcome %v (%s), want %v", id, a.GetOutcome(), a.GetReason(), want)
			case a.GetReason() == "":
				t.Errorf("delivery %s: %v without a reason; the host shows and dead-letters it", id, want)
			case want == sinkv1.Outcome_OUTCOME_REJECT && a.GetDisable() != f.Disable:
				t.Errorf("delivery %s: disable=%v, want %v", id, a.GetDisable(), f.Disable)
			case want == sinkv1.Outcome_OUTCOME_RETRY && a.GetRetryAfterMs() < 0:
				t.Errorf("delivery %s: retry_after_ms %d is negative", id, a.GetRetryAfterMs())
			}
		}
	}
}

func (r *runner) close(t testing.TB, p *plugin) {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	if _, err := p.Close(ctx, &sinkv1.CloseRequest{}); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func ids(ds []*sinkv1.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.GetId()
	}
	return out
}

func fieldErrors(fes []*sinkv1.FieldError) []string {
	out := make([]string, len(fes))
	for i, fe := range fes {
		out[i] = fe.GetField() + ": " + fe.GetMessage()
	}
	return out
}

func isObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func orMissing(b []byte) []byte {
	if len(bytes.TrimSpace(b)) == 0 {
		return []byte("missing")
	}
	return b
}

// Outage takes the destination away and brings it back: a broker stopped
// and started, a directory removed and made again, a proxy cut.
type Outage struct {
	// Settings are the instance's settings, in the form Good takes; nil is
	// {"enabled":true,"events":[]}.
	Settings json.RawMessage
	// Down takes the destination away; Up brings it back.
	Down, Up func(t testing.TB)
}

// outage checks that deliveries to a destination that is gone are acked
// RETRY, and that once it is back the same deliveries, sent again as the
// host would, are delivered.
func (r *runner) outage(t *testing.T) {
	o := r.c.Outage
	if o == nil {
		t.Skip("Config.Outage is nil")
	}
	if r.c.Deliver == nil || r.c.Deliver.Received == nil {
		t.Fatal("Config.Outage needs Config.Deliver.Received to see what arrives after the outage")
	}
	settings, ok := r.validOK(t, r.p, o.Settings)
	if !ok {
		t.FailNow()
	}
	ds := deliveries("st-"+r.tag+"-outage", r.instance, r.c.Deliver.Events, failureSize)
	o.Down(t)
	acks := r.send(t, r.p, settings, ds)
	for _, id := range ids(ds) {
		if a := acks[id]; a != nil && a.GetOutcome() != sinkv1.Outcome_OUTCOME_RETRY {
			t.Errorf("delivery %s while the destination is down: outcome %v (%s), want RETRY", id, a.GetOutcome(), a.GetReason())
		}
	}
	o.Up(t)
	for _, d := range ds {
		d.Attempt = 2
	}
	wantOK(t, r.send(t, r.p, settings, ds), ids(ds))
	if !t.Failed() {
		r.received(t, ids(ds))
	}
}
