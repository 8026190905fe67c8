package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// An instance's queue_max_length and queue_ttl are its queues' arguments:
// RabbitMQ keeps the newest messages up to the length, and drops what
// waited past the TTL.
func TestQueueLimits(t *testing.T) {
	b := dialBroker(t)
	s := openSink(t, events.NamingSeed, nil)

	long := newInstance(t, "t-maxlen")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"],"queue_ttl":"1h","queue_max_length":2}`
	out, err := s.Validate(t.Context(), long, json.RawMessage(settings))
	if err != nil || string(out) != `{"enabled":true,"events":["MESSAGES_UPSERT"],"queue_ttl":"1h0m0s","queue_max_length":2}` {
		t.Fatalf("Validate = %s, %v", out, err)
	}
	var batch []sdk.Delivery
	for range 3 {
		batch = append(batch, sinktest.Delivery(t, sinktest.Unique("id"), long, "MESSAGES_UPSERT", string(out)))
	}
	sinktest.DeliverOK(t, s, s.naming, batch...)
	got := b.messages(long+".messages.upsert", 2)
	if got[0].MessageId != batch[1].ID || got[1].MessageId != batch[2].ID {
		t.Fatalf("queue holds %s, %s; want the newest two, %s and %s", got[0].MessageId, got[1].MessageId, batch[1].ID, batch[2].ID)
	}

	short := newInstance(t, "t-ttl")
	settings = `{"enabled":true,"events":["MESSAGES_UPSERT"],"queue_ttl":"200ms"}`
	if _, err := s.Validate(t.Context(), short, json.RawMessage(settings)); err != nil {
		t.Fatal(err)
	}
	d := sinktest.Delivery(t, sinktest.Unique("id"), short, "MESSAGES_UPSERT", settings)
	if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
		t.Fatal(err)
	}
	sinktest.Eventually(t, "the message to expire in the queue", time.Minute, func() bool {
		q, err := b.channel().QueueDeclarePassive(short+".messages.upsert", true, false, false, false, nil)
		return err == nil && q.Messages == 0
	})
}

// RabbitMQ refuses to declare a queue again with other arguments: setting
// other limits on an instance whose queues exist is a 400 that says what
// to do, and delivering to the queue as it is goes on.
func TestQueueLimitsChangedAreRefused(t *testing.T) {
	s := openSink(t, events.NamingSeed, nil)
	inst := newInstance(t, "t-redeclare")
	if _, err := s.Validate(t.Context(), inst, json.RawMessage(`{"enabled":true,"events":["CALL"],"queue_ttl":"1h"}`)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Validate(t.Context(), inst, json.RawMessage(`{"enabled":true,"events":["CALL"],"queue_ttl":"2h"}`))
	sinktest.FieldError(t, err, "queue_ttl", "never changes a queue's arguments")
	// The publish path uses the queue as it is.
	settings := `{"enabled":true,"events":["CALL"],"queue_ttl":"2h0m0s"}`
	d := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CALL", settings)
	if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
		t.Fatalf("delivery to the queue as it is: %v", err)
	}
}

// Limits RabbitMQ would refuse, or that no queue of a global exchange may
// have, are refused at set. No broker is needed: they are checked before
// anything is declared, even for disabled settings.
func TestQueueLimitsChecked(t *testing.T) {
	open := func(settings map[string]string) *Sink {
		s := New()
		if err := s.Open(t.Context(), sdk.Config{Settings: settings}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	sinktest.Validate(t, open(nil), []sinktest.ValidateCase{
		{Name: "ttl not a duration", Settings: `{"enabled":false,"events":[],"queue_ttl":"soon"}`, Fields: []string{"queue_ttl"}},
		{Name: "ttl zero", Settings: `{"enabled":false,"events":[],"queue_ttl":"0s"}`, Fields: []string{"queue_ttl"}},
		{Name: "ttl in days", Settings: `{"enabled":false,"events":[],"queue_ttl":"100d"}`, Fields: []string{"queue_ttl"}},
		{Name: "negative length", Settings: `{"enabled":false,"events":[],"queue_max_length":-1}`, Fields: []string{"queue_max_length"}},
	})
	sinktest.Validate(t, open(map[string]string{"global": "true"}), []sinktest.ValidateCase{
		{Name: "limits in global mode", Settings: `{"enabled":false,"events":[],"queue_ttl":"1h"}`, Fields: []string{"queue_ttl"}},
	})
	if got := (queueLimits{TTL: "90s", MaxLength: 5}).args("quorum"); got["x-message-ttl"] != int64(90000) || got["x-max-length"] != int64(5) || got["x-queue-type"] != "quorum" {
		t.Errorf("args %v", got)
	}
	if got := (queueLimits{}).args("classic"); got != nil {
		t.Errorf("no limits, classic: args %v, want none", got)
	}
}
