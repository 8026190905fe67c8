package main

import (
	"testing"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// TestConformance runs the SDK's conformance suite against the local
// broker. The suite checks for leaked goroutines while it runs, so every
// connection the test opens to observe the broker is closed before the
// suite's own check: none outlives Before or Received.
func TestConformance(t *testing.T) {
	dialBroker(t) // fail, not skip, when the broker is down
	inst := newInstance(t, "t-conf")
	tap := sinktest.Unique("t-conf-tap")
	cleanupBroker(t, "", tap)

	sinktest.Run(t, sinktest.Config{
		New:      func() sdk.Sink { return New() },
		Open:     map[string]string{"uri": brokerURI},
		Instance: inst,
		Deliver: &sinktest.DeliverCase{
			// Validate has declared the instance's exchange: a durable tap
			// queue bound with # sees every event the suite sends.
			Before: func(t testing.TB) {
				onBroker(t, func(b *broker) {
					ch := b.channel()
					if _, err := ch.QueueDeclare(tap, true, false, false, false, nil); err != nil {
						t.Fatalf("declare tap: %v", err)
					}
					if err := ch.QueueBind(tap, "#", inst, false, nil); err != nil {
						t.Fatalf("bind tap: %v", err)
					}
				})
			},
			Received: func(t testing.TB, want []string) []string {
				var got []string
				onBroker(t, func(b *broker) {
					for _, m := range b.messages(tap, len(want)) {
						got = append(got, m.MessageId)
					}
				})
				return got
			},
		},
		// A broker nobody listens on: every delivery is retried.
		Retry: &sinktest.Failure{
			Open: map[string]string{"uri": "amqp://guest:guest@127.0.0.1:1/"},
		},
		// Reject is nil: nothing the broker answers makes one message fail
		// for good. Refusals (access, a missing exchange, a blocked
		// connection) are configuration or capacity problems an operator
		// fixes, so they are retried until the host's policy dead-letters.
	})
}
