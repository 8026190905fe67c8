package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// checkMessage asserts what a consumer sees of one delivery.
func checkMessage(t *testing.T, m amqp.Delivery, d sdk.Delivery, exchange, key, eventName string, body []byte) {
	t.Helper()
	if m.MessageId != d.ID {
		t.Errorf("message-id = %q, want the delivery id %q", m.MessageId, d.ID)
	}
	if m.ContentType != "application/json" {
		t.Errorf("content-type = %q", m.ContentType)
	}
	if m.DeliveryMode != amqp.Persistent {
		t.Errorf("delivery mode = %d, want persistent (2)", m.DeliveryMode)
	}
	if m.Timestamp.IsZero() {
		t.Error("timestamp is not set")
	}
	if m.Headers["instance"] != d.Instance || m.Headers["event"] != eventName {
		t.Errorf("headers = %v, want instance %q and event %q", m.Headers, d.Instance, eventName)
	}
	if m.Exchange != exchange || m.RoutingKey != key {
		t.Errorf("published to exchange %q key %q, want %q %q", m.Exchange, m.RoutingKey, exchange, key)
	}
	if !bytes.Equal(m.Body, body) {
		t.Errorf("body\n got %s\nwant %s", m.Body, body)
	}
}

// An instance's subscribed events land in their queues, exactly as the
// host handed them over, with the delivery id as message-id; the others
// are not published.
func TestPublishPerInstance(t *testing.T) {
	b := dialBroker(t)
	s := openSink(t, events.NamingSeed, nil)
	inst := newInstance(t, "t-inst")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT","CONNECTION_UPDATE"]}`

	out, err := s.Validate(context.Background(), inst, json.RawMessage(settings))
	if err != nil || string(out) != settings {
		t.Fatalf("Validate = %s, %v; want the settings kept", out, err)
	}
	// Validate declared the subscribed events' queues, and only those.
	for q, want := range map[string]bool{
		inst + ".messages.upsert": true, inst + ".connection.update": true, inst + ".messages.update": false,
	} {
		if got := b.queueExists(q); got != want {
			t.Errorf("after Validate, queue %s exists = %v, want %v", q, got, want)
		}
	}
	tap := b.tap(inst)

	up := sinktest.Delivery(t, sinktest.Unique("id"), inst, "MESSAGES_UPSERT", settings)
	conn := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CONNECTION_UPDATE", settings)
	sinktest.DeliverOK(t, s, s.naming, up, conn)

	checkMessage(t, b.messages(inst+".messages.upsert", 1)[0], up, inst, "messages.upsert", "MESSAGES_UPSERT", up.Envelope)
	checkMessage(t, b.messages(inst+".connection.update", 1)[0], conn, inst, "connection.update", "CONNECTION_UPDATE", conn.Envelope)
	var ids []string
	for _, m := range b.messages(tap, 2) {
		ids = append(ids, m.MessageId)
	}
	if !slices.Contains(ids, up.ID) || !slices.Contains(ids, conn.ID) {
		t.Errorf("the exchange routed %v; want %s and %s", ids, up.ID, conn.ID)
	}
}

// Evolution naming writes the wire name in the body's event and the event
// header; the rest of the envelope is untouched.
func TestNamingEvolution(t *testing.T) {
	b := dialBroker(t)
	s := openSink(t, events.NamingEvolution, nil)
	inst := newInstance(t, "t-evo")
	settings := `{"enabled":true,"events":[]}`

	d := sinktest.Delivery(t, sinktest.Unique("id"), inst, "GROUP_PARTICIPANTS_UPDATE", settings)
	if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
		t.Fatalf("ack: %v", err)
	}
	want := bytes.Replace(d.Envelope, []byte(`"event":"GROUP_PARTICIPANTS_UPDATE"`), []byte(`"event":"group-participants.update"`), 1)
	if bytes.Equal(want, d.Envelope) {
		t.Fatal("test envelope has no event member to rewrite")
	}
	// The first publish declared the route lazily.
	m := b.messages(inst+".group-participants.update", 1)[0]
	checkMessage(t, m, d, inst, "group-participants.update", "group-participants.update", want)
}

// Global mode publishes every instance's events to one exchange, routing
// key the event, one queue per event shared by the instances.
func TestGlobalMode(t *testing.T) {
	b := dialBroker(t)
	exchange, prefix := sinktest.Unique("t-global"), sinktest.Unique("t-prefix")
	cleanupBroker(t, exchange, prefix+".messages.upsert", prefix+".call")
	s := openSink(t, events.NamingSeed, map[string]string{"global": "true", "global_exchange": exchange, "global_prefix": prefix})
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"]}`
	i1, i2 := sinktest.Unique("t-a"), sinktest.Unique("t-b")
	if _, err := s.Validate(context.Background(), i1, json.RawMessage(settings)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !b.queueExists(prefix + ".messages.upsert") {
		t.Fatalf("Validate did not declare the global queue %s.messages.upsert", prefix)
	}
	d1 := sinktest.Delivery(t, sinktest.Unique("id"), i1, "MESSAGES_UPSERT", settings)
	d2 := sinktest.Delivery(t, sinktest.Unique("id"), i2, "MESSAGES_UPSERT", settings)
	sinktest.DeliverOK(t, s, s.naming, d1, d2)
	got := b.messages(prefix+".messages.upsert", 2)
	byID := map[string]amqp.Delivery{got[0].MessageId: got[0], got[1].MessageId: got[1]}
	for _, d := range []sdk.Delivery{d1, d2} {
		m, ok := byID[d.ID]
		if !ok {
			t.Errorf("delivery %s is not in the global queue", d.ID)
			continue
		}
		checkMessage(t, m, d, exchange, "messages.upsert", "MESSAGES_UPSERT", d.Envelope)
	}
	// No per-instance exchange was created.
	if err := b.channel().ExchangeDeclarePassive(i1, "topic", true, false, false, false, nil); err == nil {
		cleanupBroker(t, i1)
		t.Errorf("global mode declared the per-instance exchange %s", i1)
	}
}

// A message the broker returns (its queue was deleted behind the sink's
// back) is retried, not acked; the retry declares the queue again.
func TestReturnedMessageIsRetried(t *testing.T) {
	b := dialBroker(t)
	s := openSink(t, events.NamingSeed, nil)
	inst := newInstance(t, "t-ret")
	settings := `{"enabled":true,"events":["CALL"]}`
	if _, err := s.Validate(context.Background(), inst, json.RawMessage(settings)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if _, err := b.channel().QueueDelete(inst+".call", false, false, false); err != nil {
		t.Fatalf("delete queue: %v", err)
	}
	d := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CALL", settings)
	err := sinktest.Deliver(t, s, s.naming, d)[d.ID]
	if err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "returned") {
		t.Fatalf("ack for an unroutable message = %v, want a retryable 'returned' error", err)
	}
	d.Attempt = 2
	if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
		t.Fatalf("retry: %v", err)
	}
	if m := b.messages(inst+".call", 1)[0]; m.MessageId != d.ID {
		t.Errorf("message-id %q, want %q", m.MessageId, d.ID)
	}
}

// A queue that already exists as a classic queue is used as it is rather
// than failing every publish on the quorum argument.
func TestExistingClassicQueueIsUsed(t *testing.T) {
	b := dialBroker(t)
	s := openSink(t, events.NamingSeed, nil)
	inst := newInstance(t, "t-classic")
	if _, err := b.channel().QueueDeclare(inst+".call", true, false, false, false, amqp.Table{"x-queue-type": "classic"}); err != nil {
		t.Fatalf("declare classic queue: %v", err)
	}
	settings := `{"enabled":true,"events":["CALL"]}`
	if _, err := s.Validate(context.Background(), inst, json.RawMessage(settings)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	d := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CALL", settings)
	if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
		t.Fatalf("ack: %v", err)
	}
	b.messages(inst+".call", 1)
}

// A big batch is pipelined through publisher confirms, every delivery
// confirmed and in its queue once.
func TestBatchAllConfirmed(t *testing.T) {
	b := dialBroker(t)
	s := openSink(t, events.NamingSeed, map[string]string{"max_in_flight": "64"})
	inst := newInstance(t, "t-batch")
	settings := `{"enabled":true,"events":[]}`
	var batch []sdk.Delivery
	for range 500 {
		batch = append(batch, sinktest.Delivery(t, sinktest.Unique("id"), inst, "MESSAGES_UPSERT", settings))
	}
	sinktest.DeliverOK(t, s, s.naming, batch...)
	seen := map[string]int{}
	for _, m := range b.messages(inst+".messages.upsert", len(batch)) {
		seen[m.MessageId]++
	}
	for _, d := range batch {
		if seen[d.ID] != 1 {
			t.Errorf("delivery %s is in the queue %d times", d.ID, seen[d.ID])
		}
	}
}

func TestHealthConnected(t *testing.T) {
	s := openSink(t, events.NamingSeed, nil)
	h := s.Health(context.Background())
	if !h.Ready || !strings.Contains(h.Detail, "connected to amqp://127.0.0.1:5672/") || strings.Contains(h.Detail, "guest") {
		t.Errorf("Health = %+v", h)
	}
}
