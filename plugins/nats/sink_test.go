package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// checkMessage asserts what a consumer sees of one delivery.
func checkMessage(t *testing.T, m *nats.Msg, d sdk.Delivery, wantSubject, eventName string, body []byte) {
	t.Helper()
	if m.Subject != wantSubject {
		t.Errorf("subject %q, want %q", m.Subject, wantSubject)
	}
	for k, want := range map[string]string{"Nats-Msg-Id": d.ID, "Content-Type": "application/json", "instance": d.Instance, "event": eventName} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if !bytes.Equal(m.Data, body) {
		t.Errorf("body\n got %s\nwant %s", m.Data, body)
	}
}

func validate(t *testing.T, s *Sink, instance, settings string) map[string]any {
	t.Helper()
	out, err := s.Validate(context.Background(), instance, json.RawMessage(settings))
	if err != nil {
		t.Fatalf("Validate(%s): %v", settings, err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("Validate returned %s: %v", out, err)
	}
	return got
}

// A stream covers the instance's subjects: events are stored in it,
// acknowledged by PubAck, with the delivery id as Nats-Msg-Id. Validate
// reports the mode.
func TestJetStreamMode(t *testing.T) {
	s, inst, st := streamed(t, events.NamingSeed, "t-js")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT","CONNECTION_UPDATE"]}`
	if got := validate(t, s, inst, settings); got["mode"] != "jetstream" || got["enabled"] != true || len(got["events"].([]any)) != 2 {
		t.Errorf("Validate = %v, want the settings kept and mode jetstream", got)
	}

	up := sinktest.Delivery(t, sinktest.Unique("id"), inst, "MESSAGES_UPSERT", settings)
	conn := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CONNECTION_UPDATE", settings)
	sinktest.DeliverOK(t, s, s.naming, up, conn)
	msgs := holds(t, st, up, conn)
	checkMessage(t, msgs[0], up, inst+".messages.upsert", "MESSAGES_UPSERT", up.Envelope)
	checkMessage(t, msgs[1], conn, inst+".connection.update", "CONNECTION_UPDATE", conn.Envelope)
	if h := s.Health(context.Background()); !h.Ready || !strings.Contains(h.Detail, "jetstream=2") {
		t.Errorf("Health = %+v, want ready and 2 JetStream publishes counted", h)
	}
}

// The same delivery published twice (a retry) is stored once: the server
// de-duplicates on Nats-Msg-Id.
func TestJetStreamDeduplicates(t *testing.T) {
	s, inst, st := streamed(t, events.NamingSeed, "t-dup")
	settings := `{"enabled":true,"events":[]}`
	d := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CALL", settings)
	for attempt := 1; attempt <= 2; attempt++ {
		d.Attempt = attempt
		if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	holds(t, st, d)
}

// No stream covers the subjects: messages go out as core NATS, in order,
// to whoever subscribes; Validate says core.
func TestCoreMode(t *testing.T) {
	c := dial(t, serverURL)
	s := openSink(t, serverURL, events.NamingSeed, nil)
	inst := sinktest.Unique("t-core")
	sub, err := c.nc.SubscribeSync(inst + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT","CALL"]}`
	if got := validate(t, s, inst, settings); got["mode"] != "core" {
		t.Errorf("Validate = %v, want mode core", got)
	}
	up := sinktest.Delivery(t, sinktest.Unique("id"), inst, "MESSAGES_UPSERT", settings)
	marker := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CALL", settings)
	sinktest.DeliverOK(t, s, s.naming, up)
	if err := sinktest.Deliver(t, s, s.naming, marker)[marker.ID]; err != nil {
		t.Fatal(err)
	}
	// Core NATS keeps one publisher's order: what comes before the marker
	// is all the subscriber gets of the first batch.
	var got []*nats.Msg
	for {
		m, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("waiting for messages: %v (got %d)", err, len(got))
		}
		got = append(got, m)
		if m.Header.Get("Nats-Msg-Id") == marker.ID {
			break
		}
	}
	if len(got) != 2 {
		t.Fatalf("got %d messages before the marker, want the one delivered", len(got)-1)
	}
	checkMessage(t, got[0], up, inst+".messages.upsert", "MESSAGES_UPSERT", up.Envelope)
	if h := s.Health(context.Background()); !strings.Contains(h.Detail, "core=2") {
		t.Errorf("Health = %+v, want 2 core publishes counted", h)
	}
}

// Evolution naming writes the wire name in the body's event and header;
// the rest of the envelope is untouched.
func TestNamingEvolution(t *testing.T) {
	s, inst, st := streamed(t, events.NamingEvolution, "t-evo")
	d := sinktest.Delivery(t, sinktest.Unique("id"), inst, "GROUP_UPDATE", `{"enabled":true,"events":[]}`)
	if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
		t.Fatal(err)
	}
	want := bytes.Replace(d.Envelope, []byte(`"event":"GROUP_UPDATE"`), []byte(`"event":"groups.update"`), 1)
	if bytes.Equal(want, d.Envelope) {
		t.Fatal("test envelope has no event member to rewrite")
	}
	checkMessage(t, holds(t, st, d)[0], d, inst+".groups.update", "groups.update", want)
}

// Global mode puts every instance's subjects under the prefix.
func TestSubjectPrefix(t *testing.T) {
	c := dial(t, serverURL)
	prefix := sinktest.Unique("t-global")
	s := openSink(t, serverURL, events.NamingSeed, map[string]string{"subject_prefix": prefix})
	st := c.stream(sinktest.Unique("T-GLOBAL"), prefix+".>")
	settings := `{"enabled":true,"events":[]}`
	i1, i2 := sinktest.Unique("t-a"), sinktest.Unique("t-b")
	if got := validate(t, s, i1, settings); got["mode"] != "jetstream" {
		t.Errorf("Validate = %v, want mode jetstream (the stream covers the prefix)", got)
	}
	d1 := sinktest.Delivery(t, sinktest.Unique("id"), i1, "MESSAGES_UPSERT", settings)
	d2 := sinktest.Delivery(t, sinktest.Unique("id"), i2, "MESSAGES_UPSERT", settings)
	sinktest.DeliverOK(t, s, s.naming, d1, d2)
	msgs := holds(t, st, d1, d2)
	checkMessage(t, msgs[0], d1, prefix+"."+i1+".messages.upsert", "MESSAGES_UPSERT", d1.Envelope)
	checkMessage(t, msgs[1], d2, prefix+"."+i2+".messages.upsert", "MESSAGES_UPSERT", d2.Envelope)
}

// The mode follows the server's streams: mixed when a stream covers some
// subscribed subjects; validating the normalized settings again gives them
// back; a disabled instance has no mode.
func TestModeInSettings(t *testing.T) {
	c := dial(t, serverURL)
	s := openSink(t, serverURL, events.NamingSeed, nil)
	inst := sinktest.Unique("t-mode")
	c.stream(sinktest.Unique("T-MODE"), inst+".messages.upsert")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT","CALL"],"mode":"core"}`
	out, err := s.Validate(context.Background(), inst, json.RawMessage(settings))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(out, &got)
	if got["mode"] != "mixed" {
		t.Errorf("Validate = %s, want mode mixed (the client's mode is replaced)", out)
	}
	again, err := s.Validate(context.Background(), inst, out)
	if err != nil || string(again) != string(out) {
		t.Errorf("validating %s again gave %s, %v", out, again, err)
	}
	if got := validate(t, s, inst, `{"enabled":false,"events":[],"mode":"jetstream"}`); got["mode"] != nil {
		t.Errorf("disabled settings = %v, want no mode", got)
	}
}

// A stream created after the first publishes is used once the cached
// lookup expires: the next deliveries are stored.
func TestStreamCreatedLater(t *testing.T) {
	c := dial(t, serverURL)
	s := openSink(t, serverURL, events.NamingSeed, map[string]string{"stream_cache_ttl": "200ms"})
	inst := sinktest.Unique("t-later")
	settings := `{"enabled":true,"events":[]}`
	first := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CALL", settings)
	if err := sinktest.Deliver(t, s, s.naming, first)[first.ID]; err != nil {
		t.Fatal(err)
	}
	st := c.stream(sinktest.Unique("T-LATER"), inst+".>")
	var stored1 string
	sinktest.Eventually(t, "a delivery stored in the new stream", time.Minute, func() bool {
		d := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CALL", settings)
		if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
			t.Fatalf("delivery: %v", err)
		}
		if msgs := stored(t, st); len(msgs) > 0 {
			stored1 = msgs[0].Header.Get("Nats-Msg-Id")
			return true
		}
		return false
	})
	if stored1 == first.ID {
		t.Errorf("the delivery published before the stream existed is in it")
	}
}

// streamed opens a sink with naming on the local server for a new
// instance named prefix-…, with a stream covering its subjects.
func streamed(t *testing.T, naming events.Naming, prefix string) (*Sink, string, jetstream.Stream) {
	t.Helper()
	c := dial(t, serverURL)
	s := openSink(t, serverURL, naming, nil)
	inst := sinktest.Unique(prefix)
	return s, inst, c.stream(sinktest.Unique(strings.ToUpper(prefix)), inst+".>")
}
