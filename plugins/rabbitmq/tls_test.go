package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
	"github.com/evorelay/evorelay/sdk/sinktest/testtls"
)

// With an amqps:// URI and EVORELAY_RABBITMQ_TLS_CA naming a private CA,
// the sink publishes to the machine's RabbitMQ through a TLS-terminating
// proxy the test runs in front of it; without the CA it does not connect.
func TestTLS(t *testing.T) {
	ca := testtls.NewCA(t)
	uri := "amqps://guest:guest@" + testtls.Proxy(t, ca, brokerAddr) + "/"
	b := dialBroker(t)
	s := openSink(t, events.NamingSeed, map[string]string{"uri": uri, "tls_ca": ca.File})
	if h := s.Health(t.Context()); !strings.Contains(h.Detail, "amqps://") {
		t.Fatalf("health %q; want it connected over amqps", h.Detail)
	}
	inst := newInstance(t, "t-tls")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"]}`
	if _, err := s.Validate(t.Context(), inst, json.RawMessage(settings)); err != nil {
		t.Fatal(err)
	}
	d := sinktest.Delivery(t, sinktest.Unique("id"), inst, "MESSAGES_UPSERT", settings)
	if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
		t.Fatalf("delivery over TLS: %v", err)
	}
	if m := b.messages(inst+".messages.upsert", 1)[0]; m.MessageId != d.ID {
		t.Fatalf("queue holds %s, want %s", m.MessageId, d.ID)
	}

	sinktest.Unreachable(t, New(), map[string]string{"uri": uri}, "certificate signed by unknown authority")
}
