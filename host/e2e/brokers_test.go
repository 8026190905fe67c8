package e2e

// End-to-end tests of the broker sinks: the built host and plugins, driven
// over HTTP, observed as a consumer of the real RabbitMQ and NATS on this
// machine (or, for the NATS restart, a private nats-server). Outages are
// a fault-injecting proxy or a private server: the machine's brokers are
// used, never stopped. A broker that cannot be reached fails the test.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest/faultproxy"
)

const (
	rabbitAddr = "127.0.0.1:5672"
	rabbitURI  = "amqp://guest:guest@" + rabbitAddr + "/"
	natsURL    = "nats://127.0.0.1:4222"
)

// quickRetries retries every second for three minutes: a broker outage
// in these tests is retried through, never dead-lettered.
var quickRetries = "EVORELAY_RETRY_SCHEDULE=0s" + strings.Repeat(",1s", 180)

// uniqueName returns prefix with a random suffix, so that runs and tests
// never share an instance, queue or stream.
func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// ingest posts events to POST /events and returns the delivery ids the
// 202 named, in order.
func ingest(s *Sidecar, evs ...any) ([]string, error) {
	code, b := s.Do("POST", "/events", evs)
	if code != http.StatusAccepted {
		return nil, fmt.Errorf("POST /events = %d %s", code, b)
	}
	var res struct {
		Accepted int      `json:"accepted"`
		IDs      []string `json:"ids"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("POST /events answered %s: %v", b, err)
	}
	if res.Accepted != len(evs) || len(res.IDs) != len(evs) {
		return nil, fmt.Errorf("POST /events of %d events answered %s", len(evs), b)
	}
	return res.IDs, nil
}

func mustIngest(t *testing.T, s *Sidecar, evs ...any) []string {
	t.Helper()
	ids, err := ingest(s, evs...)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// stream ingests n MESSAGES_UPSERT events for instance in requests of 5,
// spaced out so that they keep coming while a broker goes down and back,
// and sends every id the sidecar accepted on ids. It ends after n, or at
// the first refused request.
func stream(s *Sidecar, instance string, n int, ids chan<- string) error {
	defer close(ids)
	for i := 0; i < n; i += 5 {
		var batch []any
		for j := i; j < min(i+5, n); j++ {
			batch = append(batch, event(instance, "messages.upsert", fmt.Sprintf(`{"seq":%d}`, j)))
		}
		got, err := ingest(s, batch...)
		if err != nil {
			return err
		}
		for _, id := range got {
			ids <- id
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// collect keeps what stream sends, for the test to read at any time.
type collect struct {
	mu  sync.Mutex
	ids []string
}

func (c *collect) from(ch <-chan string) {
	for id := range ch {
		c.mu.Lock()
		c.ids = append(c.ids, id)
		c.mu.Unlock()
	}
}

func (c *collect) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

// checkEnvelope fails unless body is, byte for byte, the envelope the
// host builds from ev (as event() makes it), with its event written as
// name and a date_time of when it was accepted (after since).
func checkEnvelope(t *testing.T, body []byte, ev map[string]any, name string, since time.Time) {
	t.Helper()
	var got struct {
		DateTime string `json:"date_time"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, body)
	}
	dt, err := time.Parse("2006-01-02T15:04:05.000Z", got.DateTime)
	if err != nil || dt.Before(since.UTC().Truncate(time.Millisecond)) || dt.After(time.Now().UTC()) {
		t.Fatalf("date_time %q is not the acceptance time in UTC with ms and Z (%v): %s", got.DateTime, err, body)
	}
	str := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	want := `{"event":` + str(name) + `,"instance":` + str(ev["instance"]) + `,"data":` + string(ev["data"].(json.RawMessage)) +
		`,"date_time":` + str(got.DateTime) + `,"sender":` + str(ev["sender"]) + `,"server_url":` + str(ev["server_url"]) +
		`,"apikey":` + str(ev["apikey"]) + `}`
	if !bytes.Equal(body, []byte(want)) {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
}

// eventName is how an event constant is written in bodies per naming.
func eventName(naming, constant string) string {
	if naming == "evolution" {
		return events.Wire(constant)
	}
	return constant
}

// noDeadLetters fails if the sink dead-lettered anything of instance.
func noDeadLetters(t *testing.T, s *Sidecar, sink, instance string) {
	t.Helper()
	var page struct {
		DeadLetters []json.RawMessage `json:"deadletters"`
	}
	if err := json.Unmarshal(s.MustDo(200, "GET", "/"+sink+"/deadletters/"+instance, nil), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.DeadLetters) > 0 {
		t.Fatalf("%d dead letters, the first: %s", len(page.DeadLetters), page.DeadLetters[0])
	}
}

// pluginHealth is what GET /plugins says of a plugin's health: ready, and
// why not. (/readyz stays 200 while a broker is down: the process runs and
// ingest goes on.)
func pluginHealth(t *testing.T, s *Sidecar, name string) (bool, string) {
	t.Helper()
	var ps []struct {
		Name   string `json:"name"`
		State  string `json:"state"`
		Ready  bool   `json:"ready"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(s.MustDo(200, "GET", "/plugins", nil), &ps); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Name == name {
			return p.State == "running" && p.Ready, p.Detail
		}
	}
	t.Fatalf("no plugin %s in /plugins", name)
	return false, ""
}

// countIDs returns, for the ids accepted, how often each arrived; it
// fails for one that never did and logs the duplicates.
func countIDs(t *testing.T, accepted []string, seen map[string]int) {
	t.Helper()
	dups := 0
	for _, id := range accepted {
		switch n := seen[id]; {
		case n == 0:
			t.Errorf("delivery %s was accepted but never arrived", id)
		case n > 1:
			dups += n - 1
			t.Logf("delivery %s arrived %d times (at-least-once)", id, n)
		}
	}
	t.Logf("%d events accepted, %d distinct arrived, %d duplicates", len(accepted), len(seen), dups)
}

// ---- RabbitMQ -------------------------------------------------------------

// rabbit is a plain AMQP client the tests observe the broker with.
type rabbit struct {
	t    *testing.T
	conn *amqp.Connection
}

func dialRabbit(t *testing.T) *rabbit {
	t.Helper()
	conn, err := amqp.Dial(rabbitURI)
	if err != nil {
		t.Fatalf("RabbitMQ at %s is not reachable (start it: rabbitmq-server -detached): %v", rabbitURI, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rabbit{t: t, conn: conn}
}

// channel opens a channel; a failed operation closes its channel, so each
// check takes a fresh one.
func (r *rabbit) channel() *amqp.Channel {
	r.t.Helper()
	ch, err := r.conn.Channel()
	if err != nil {
		r.t.Fatalf("open channel: %v", err)
	}
	r.t.Cleanup(func() { _ = ch.Close() })
	return ch
}

func (r *rabbit) queueExists(queue string) bool {
	_, err := r.channel().QueueDeclarePassive(queue, true, false, false, false, nil)
	return err == nil
}

// tap binds a new exclusive queue to exchange with key #: it sees every
// message the exchange routes, whatever its routing key.
func (r *rabbit) tap(exchange string) string {
	r.t.Helper()
	ch := r.channel()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		r.t.Fatalf("declare tap queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
		r.t.Fatalf("bind tap queue to %s: %v", exchange, err)
	}
	return q.Name
}

// take gets (and acks) what is in queue now.
func (r *rabbit) take(queue string) []amqp.Delivery {
	r.t.Helper()
	ch := r.channel()
	var out []amqp.Delivery
	for {
		m, ok, err := ch.Get(queue, true)
		if err != nil {
			r.t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, m)
	}
}

// await takes messages from queue until it has n, then fails if more are
// there.
func (r *rabbit) await(queue string, n int) []amqp.Delivery {
	r.t.Helper()
	var got []amqp.Delivery
	eventually(r.t, time.Minute, fmt.Sprintf("%d messages in %s", n, queue), func() bool {
		got = append(got, r.take(queue)...)
		return len(got) >= n
	})
	if len(got) > n {
		r.t.Fatalf("%s holds %d messages, want %d; extra: %s", queue, len(got), n, got[n].Body)
	}
	return got
}

// cleanupRabbit deletes, when the test ends, every queue instance may have
// got and its exchange, on a connection of its own (the test's may have
// died with the broker).
func cleanupRabbit(t *testing.T, instance string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(rabbitURI)
		if err != nil {
			t.Errorf("cleanup of %s: %v", instance, err)
			return
		}
		defer conn.Close()
		for _, e := range events.All() {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(instance+"."+events.Wire(e), false, false, false)
				_ = ch.Close()
			}
		}
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(instance, false, false)
			_ = ch.Close()
		}
	})
}

func setSink(t *testing.T, s *Sidecar, sink, instance string, body any) map[string]any {
	t.Helper()
	return decode(t, s.MustDo(201, "POST", "/"+sink+"/set/"+instance, body))
}

func TestRabbitMQThroughHost(t *testing.T) {
	for _, naming := range []string{"seed", "evolution"} {
		t.Run(naming, func(t *testing.T) {
			r := dialRabbit(t)
			inst, marker := uniqueName("e2e-rmq"), uniqueName("e2e-rmq-marker")
			cleanupRabbit(t, inst)
			cleanupRabbit(t, marker)
			s := StartSidecar(t, []string{"rabbitmq"}, "EVORELAY_RABBITMQ_URI="+rabbitURI, "EVORELAY_NAMING="+naming)

			got := setSink(t, s, "rabbitmq", inst, map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}})
			if got["enabled"] != true || fmt.Sprint(got["events"]) != "[MESSAGES_UPSERT]" {
				t.Fatalf("set returned %v", got)
			}
			// The Evolution API v2 form, wrapped in the sink's name.
			got = setSink(t, s, "rabbitmq", marker, map[string]any{"rabbitmq": map[string]any{"enabled": true, "events": []string{"messages.upsert"}}})
			if got["enabled"] != true || fmt.Sprint(got["events"]) != "[MESSAGES_UPSERT]" {
				t.Fatalf("wrapped set returned %v", got)
			}
			if f := decode(t, s.MustDo(200, "GET", "/rabbitmq/find/"+marker, nil)); fmt.Sprint(f) != fmt.Sprint(got) {
				t.Fatalf("find = %v; want what set returned %v", f, got)
			}
			queue := inst + ".messages.upsert"
			if !r.queueExists(queue) {
				t.Fatalf("queue %s does not exist once set answered", queue)
			}
			if r.queueExists(inst + ".connection.update") {
				t.Fatalf("a queue for CONNECTION_UPDATE, which %s does not subscribe to", inst)
			}
			tap := r.tap(inst)

			since := time.Now()
			evs := []map[string]any{
				event(inst, "messages.upsert", `{"key":{"id":"M1"},"message":{"conversation":"hi \u00e9 \"q\""}}`),
				event(inst, "CONNECTION_UPDATE", `{"state":"open"}`), // not subscribed
				event(inst, "MESSAGES_UPSERT", `{"key":{"id":"M2"}}`),
			}
			ids := mustIngest(t, s, evs[0], evs[1], evs[2])
			msgs := r.await(queue, 2)
			for i, want := range []int{0, 2} {
				m := msgs[i]
				if m.MessageId != ids[want] {
					t.Errorf("message %d: message-id %q; want the ingest id %q (the order of acceptance)", i, m.MessageId, ids[want])
				}
				if m.ContentType != "application/json" || m.DeliveryMode != amqp.Persistent || m.AppId != "evorelay" {
					t.Errorf("message %d: content-type %q, delivery mode %d, app-id %q; want application/json, persistent, evorelay", i, m.ContentType, m.DeliveryMode, m.AppId)
				}
				if m.Headers["instance"] != inst || m.Headers["event"] != eventName(naming, "MESSAGES_UPSERT") {
					t.Errorf("message %d: headers %v", i, m.Headers)
				}
				if m.Exchange != inst || m.RoutingKey != "messages.upsert" {
					t.Errorf("message %d: exchange %q key %q; want %q messages.upsert", i, m.Exchange, m.RoutingKey, inst)
				}
				checkEnvelope(t, m.Body, evs[want], eventName(naming, "MESSAGES_UPSERT"), since)
			}
			// One instance's events are published in the order accepted,
			// so a CONNECTION_UPDATE published at all would be in the tap
			// before M2.
			if tapped := r.take(tap); len(tapped) != 2 || tapped[0].MessageId != ids[0] || tapped[1].MessageId != ids[2] {
				t.Fatalf("the exchange routed %d messages; want M1 and M2 only", len(tapped))
			}

			// Disabled: applies to whatever is delivered after the set
			// answered. The marker, accepted after, arriving proves that the
			// host has dealt with the event before it (one spool, one order).
			setSink(t, s, "rabbitmq", inst, map[string]any{"enabled": false, "events": []string{"MESSAGES_UPSERT"}})
			mustIngest(t, s, event(inst, "MESSAGES_UPSERT", `{"key":{"id":"M3"}}`), event(marker, "MESSAGES_UPSERT", `{"key":{"id":"X"}}`))
			r.await(marker+".messages.upsert", 1)
			if late := r.take(tap); len(late) != 0 {
				t.Fatalf("published after enabled=false: %s", late[0].Body)
			}
			// Enabled again, what is accepted from then on flows again, and
			// M3 stays unpublished.
			setSink(t, s, "rabbitmq", inst, map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}})
			m4 := mustIngest(t, s, event(inst, "MESSAGES_UPSERT", `{"key":{"id":"M4"}}`))
			if m := r.await(queue, 1)[0]; m.MessageId != m4[0] {
				t.Fatalf("after re-enabling got %s; want M4 (%s)", m.Body, m4[0])
			}
			noDeadLetters(t, s, "rabbitmq", inst)
		})
	}
}

// The broker's connections are cut while events stream into the host (a
// proxy between the plugin and the machine's broker, which stays up), and
// let through again: the host reports it, retries, and in the end every
// event it accepted is in the queue (at least once).
func TestRabbitMQOutageThroughHost(t *testing.T) {
	dialRabbit(t) // fails the test if the broker is down to begin with
	inst := uniqueName("e2e-rmq-outage")
	cleanupRabbit(t, inst)
	proxy := faultproxy.Start(t, rabbitAddr)
	s := StartSidecar(t, []string{"rabbitmq"}, "EVORELAY_RABBITMQ_URI=amqp://guest:guest@"+proxy.Addr()+"/",
		"EVORELAY_RABBITMQ_HEARTBEAT=2s", "EVORELAY_RABBITMQ_RECONNECT_MAX_DELAY=1s", quickRetries, "EVORELAY_RETRY_JITTER=0")
	setSink(t, s, "rabbitmq", inst, map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}})
	queue := inst + ".messages.upsert"
	seen := map[string]int{}
	count := func(r *rabbit) int {
		for _, m := range r.take(queue) {
			seen[m.MessageId]++
		}
		return len(seen)
	}

	const n = 300
	ch := make(chan string, n)
	var accepted collect
	posted := make(chan error, 1)
	go func() { posted <- stream(s, inst, n, ch) }()
	done := make(chan struct{})
	go func() { accepted.from(ch); close(done) }()

	r := dialRabbit(t)
	eventually(t, time.Minute, "50 events in the queue before the outage", func() bool { return count(r) >= 50 })
	proxy.Cut()
	atStop := len(accepted.all())
	eventually(t, time.Minute, "/plugins to report the outage", func() bool { ok, _ := pluginHealth(t, s, "rabbitmq"); return !ok })
	_, detail := pluginHealth(t, s, "rabbitmq")
	t.Logf("during the outage /plugins said: %s", detail)
	eventually(t, time.Minute, "50 events accepted during the outage", func() bool { return len(accepted.all()) >= atStop+50 })
	proxy.Restore()
	if err := <-posted; err != nil {
		t.Fatal(err)
	}
	<-done
	ids := accepted.all()
	if len(ids) != n {
		t.Fatalf("%d events accepted; want %d", len(ids), n)
	}
	eventually(t, 3*time.Minute, fmt.Sprintf("all %d events in %s", n, queue), func() bool { return count(r) >= n })
	countIDs(t, ids, seen)
	noDeadLetters(t, s, "rabbitmq", inst)
	eventually(t, time.Minute, "/plugins to report the broker back", func() bool { ok, _ := pluginHealth(t, s, "rabbitmq"); return ok })
}

// ---- NATS -----------------------------------------------------------------

// dialJS connects a plain client to url, closed with the test.
func dialJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("NATS at %s is not reachable (start it: nats-server -js): %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// createStream makes a file stream over subjects, deleted with the test.
func createStream(t *testing.T, js jetstream.JetStream, subjects ...string) jetstream.Stream {
	t.Helper()
	name := strings.ToUpper(strings.NewReplacer(".", "_", ">", "", "*", "").Replace(uniqueName("E2E")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("create stream over %v: %v", subjects, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Logf("cleanup: delete stream %s: %v", name, err)
		}
	})
	return st
}

// stored returns every message in the stream, in order.
func stored(t *testing.T, st jetstream.Stream) []*jetstream.RawStreamMsg {
	t.Helper()
	out, err := storedErr(st)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func storedErr(st jetstream.Stream) ([]*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get message %d: %w", seq, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// awaitStored waits until the stream holds n messages and returns them,
// failing if it holds more.
func awaitStored(t *testing.T, st jetstream.Stream, n int) []*jetstream.RawStreamMsg {
	t.Helper()
	var got []*jetstream.RawStreamMsg
	eventually(t, time.Minute, fmt.Sprintf("%d messages in the stream", n), func() bool {
		got = stored(t, st)
		return len(got) >= n
	})
	if len(got) > n {
		t.Fatalf("the stream holds %d messages, want %d; extra on %s: %s", len(got), n, got[n].Subject, got[n].Data)
	}
	return got
}

func TestNATSThroughHost(t *testing.T) {
	for _, naming := range []string{"seed", "evolution"} {
		t.Run(naming, func(t *testing.T) {
			js := dialJS(t, natsURL)
			inst, marker := uniqueName("e2e-nats"), uniqueName("e2e-nats-marker")
			st := createStream(t, js, inst+".>", marker+".>")
			s := StartSidecar(t, []string{"nats"}, "EVORELAY_NATS_URL="+natsURL, "EVORELAY_NAMING="+naming)

			got := setSink(t, s, "nats", inst, map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}})
			if got["enabled"] != true || fmt.Sprint(got["events"]) != "[MESSAGES_UPSERT]" {
				t.Fatalf("set returned %v", got)
			}
			setSink(t, s, "nats", marker, map[string]any{"nats": map[string]any{"enabled": true, "events": []string{"messages.upsert"}}})
			if f := s.MustDo(200, "GET", "/nats/find/"+inst, nil); !bytes.Contains(f, []byte(`"mode":"jetstream"`)) {
				t.Fatalf("find = %s; want \"mode\":\"jetstream\" (a stream covers %s.>)", f, inst)
			}

			since := time.Now()
			evs := []map[string]any{
				event(inst, "messages.upsert", `{"key":{"id":"M1"},"message":{"conversation":"hi \u00e9 \"q\""}}`),
				event(inst, "CONNECTION_UPDATE", `{"state":"open"}`), // not subscribed; the stream would store it
				event(inst, "MESSAGES_UPSERT", `{"key":{"id":"M2"}}`),
			}
			ids := mustIngest(t, s, evs[0], evs[1], evs[2])
			// The stream covers every subject of inst, and one instance's
			// events are published in the order accepted: a CONNECTION_UPDATE
			// published at all would be stored before M2.
			msgs := awaitStored(t, st, 2)
			for i, want := range []int{0, 2} {
				m := msgs[i]
				if id := m.Header.Get("Nats-Msg-Id"); id != ids[want] {
					t.Errorf("message %d: Nats-Msg-Id %q; want the ingest id %q (the order of acceptance)", i, id, ids[want])
				}
				if m.Subject != inst+".messages.upsert" || m.Header.Get("Content-Type") != "application/json" ||
					m.Header.Get("instance") != inst || m.Header.Get("event") != eventName(naming, "MESSAGES_UPSERT") {
					t.Errorf("message %d: subject %q headers %v", i, m.Subject, m.Header)
				}
				checkEnvelope(t, m.Data, evs[want], eventName(naming, "MESSAGES_UPSERT"), since)
			}

			// Disabled applies at once: the marker, accepted after M3,
			// arriving proves the host has dealt with M3.
			setSink(t, s, "nats", inst, map[string]any{"enabled": false, "events": []string{"MESSAGES_UPSERT"}})
			mustIngest(t, s, event(inst, "MESSAGES_UPSERT", `{"key":{"id":"M3"}}`), event(marker, "MESSAGES_UPSERT", `{"key":{"id":"X"}}`))
			if m := awaitStored(t, st, 3)[2]; m.Subject != marker+".messages.upsert" {
				t.Fatalf("published after enabled=false, on %s: %s", m.Subject, m.Data)
			}
			noDeadLetters(t, s, "nats", inst)
		})
	}
}

// natsServer is a nats-server of this test's own, on a free loopback port
// with a JetStream store in a temporary directory: the test can kill it
// and start it again without disturbing the machine's shared server.
type natsServer struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{t: t, addr: freeAddr(t), dir: t.TempDir()}
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *natsServer) url() string { return "nats://" + n.addr }

func (n *natsServer) start() {
	n.t.Helper()
	host, port, _ := net.SplitHostPort(n.addr)
	n.cmd = exec.Command("nats-server", "-a", host, "-p", port, "-js", "-sd", n.dir)
	if err := n.cmd.Start(); err != nil {
		n.t.Fatalf("start nats-server: %v", err)
	}
	eventually(n.t, 30*time.Second, "nats-server to listen on "+n.addr, func() bool {
		c, err := net.Dial("tcp", n.addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
}

// kill ends the server with SIGKILL, as a crash would.
func (n *natsServer) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.cmd = nil
}

// The NATS server is killed while events stream into the host, and comes
// back on the same port and store: every event the host accepted is in
// the stream in the end.
func TestNATSServerRestartThroughHost(t *testing.T) {
	srv := startNATS(t)
	js := dialJS(t, srv.url())
	inst := uniqueName("e2e-nats-restart")
	st := createStream(t, js, inst+".>")
	s := StartSidecar(t, []string{"nats"}, "EVORELAY_NATS_URL="+srv.url(),
		"EVORELAY_NATS_RECONNECT_MAX_DELAY=1s", quickRetries, "EVORELAY_RETRY_JITTER=0")
	got := setSink(t, s, "nats", inst, map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}})
	if got["mode"] != "jetstream" {
		t.Fatalf("set returned %v; want mode jetstream", got)
	}

	const n = 300
	ch := make(chan string, n)
	var accepted collect
	posted := make(chan error, 1)
	go func() { posted <- stream(s, inst, n, ch) }()
	done := make(chan struct{})
	go func() { accepted.from(ch); close(done) }()

	eventually(t, time.Minute, "50 events in the stream before the crash", func() bool { return len(stored(t, st)) >= 50 })
	srv.kill()
	atKill := len(accepted.all())
	eventually(t, time.Minute, "/plugins to report the outage", func() bool { ok, _ := pluginHealth(t, s, "nats"); return !ok })
	_, detail := pluginHealth(t, s, "nats")
	t.Logf("during the outage /plugins said: %s", detail)
	eventually(t, time.Minute, "50 events accepted during the outage", func() bool { return len(accepted.all()) >= atKill+50 })
	srv.start()
	if err := <-posted; err != nil {
		t.Fatal(err)
	}
	<-done
	ids := accepted.all()
	if len(ids) != n {
		t.Fatalf("%d events accepted; want %d", len(ids), n)
	}
	// The test's client reconnects too, and the server recovers its
	// store: until then a read fails and is tried again.
	seen := map[string]int{}
	eventually(t, 3*time.Minute, fmt.Sprintf("all %d events in the stream", n), func() bool {
		msgs, err := storedErr(st)
		if err != nil {
			return false
		}
		clear(seen)
		for _, m := range msgs {
			seen[m.Header.Get("Nats-Msg-Id")]++
		}
		return len(seen) >= n
	})
	countIDs(t, ids, seen)
	noDeadLetters(t, s, "nats", inst)
	eventually(t, time.Minute, "/plugins to report the server back", func() bool { ok, _ := pluginHealth(t, s, "nats"); return ok })
}
