package main

import (
	"encoding/json"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// TestConformance runs the SDK's conformance suite against the local
// broker. The suite checks for leaked goroutines while it runs, so every
// connection the test opens to observe the broker is closed before the
// suite's own check: none outlives Before or Received.
func TestConformance(t *testing.T) {
	dialBroker(t) // fail, not skip, when the broker is down
	inst := sinktest.Unique("t-conf")
	tap := sinktest.Unique("t-conf-tap")
	cleanupBroker(t, inst, append(instanceQueues(inst), tap)...)
	enabled := json.RawMessage(`{"enabled":true,"events":[]}`)

	// onBroker runs f on a channel of a connection that is closed when f
	// returns.
	onBroker := func(t testing.TB, f func(ch *amqp.Channel)) {
		conn, err := amqp.Dial(brokerURI)
		if err != nil {
			t.Fatalf("dial %s: %v", brokerURI, err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatalf("open channel: %v", err)
		}
		f(ch)
	}

	sinktest.Run(t, sinktest.Config{
		New:      func() sdk.Sink { return New() },
		Open:     map[string]string{"uri": brokerURI},
		Instance: inst,
		Good:     sinktest.SubscriptionGood(),
		Bad:      sinktest.SubscriptionBad(),
		Deliver: &sinktest.DeliverCase{
			Settings: enabled,
			// Validate has declared the instance's exchange: a durable tap
			// queue bound with # sees every event the suite sends.
			Before: func(t testing.TB) {
				onBroker(t, func(ch *amqp.Channel) {
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
				deadline := time.Now().Add(30 * time.Second)
				onBroker(t, func(ch *amqp.Channel) {
					for len(got) < len(want) && time.Now().Before(deadline) {
						m, ok, err := ch.Get(tap, true)
						if err != nil {
							t.Fatalf("get from tap: %v", err)
						}
						if !ok {
							time.Sleep(50 * time.Millisecond)
							continue
						}
						got = append(got, m.MessageId)
					}
				})
				return got
			},
		},
		// A broker nobody listens on: every delivery is retried.
		Retry: &sinktest.Failure{
			Settings: enabled,
			Open:     map[string]string{"uri": "amqp://guest:guest@127.0.0.1:1/"},
		},
		// Reject is nil: nothing the broker answers makes one message fail
		// for good. Refusals (access, a missing exchange, a blocked
		// connection) are configuration or capacity problems an operator
		// fixes, so they are retried until the host's policy dead-letters.
	})
}
