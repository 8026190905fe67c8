package main

import (
	"context"
	"testing"

	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
	"github.com/evorelay/evorelay/sdk/sinktest/faultproxy"
)

// The broker goes away while deliveries stream in — its connections cut,
// reset or stalled by a proxy between sink and broker; the machine's
// broker itself stays up for everyone else: the sink answers retries while
// it is cut off (never hangs), reconnects on its own once the way is clear
// again, and in the end every delivery was confirmed and is in the queue
// at least once.
func TestBrokerOutage(t *testing.T) {
	for _, fault := range []faultproxy.Fault{faultproxy.Cut, faultproxy.Reset, faultproxy.Stall} {
		t.Run(fault.String(), func(t *testing.T) { brokerOutage(t, fault) })
	}
}

func brokerOutage(t *testing.T, fault faultproxy.Fault) {
	proxy := faultproxy.Start(t, brokerAddr)
	s := openSink(t, events.NamingSeed, map[string]string{"uri": "amqp://guest:guest@" + proxy.Addr() + "/",
		"heartbeat": "1s", "reconnect_max_delay": "1s", "confirm_timeout": "5s"})
	inst := newInstance(t, "t-outage")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"]}`
	if _, err := s.Validate(context.Background(), inst, []byte(settings)); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	sinktest.StreamOutage{
		Sink: s, Instance: inst, Settings: settings,
		Down: func(testing.TB) { proxy.Inject(fault) },
		Up:   func(testing.TB) { proxy.Restore() },
		Stored: func(t testing.TB) map[string]int {
			seen := map[string]int{}
			for _, m := range dialBroker(t).drain(inst + ".messages.upsert") {
				seen[m.MessageId]++
			}
			return seen
		},
		Where: "queue",
	}.Run(t)
}
