package main

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// TestConformance runs the SDK's conformance suite against the local
// server, in JetStream mode: a stream covers the instance's subjects. The
// suite checks for leaked goroutines while it runs, so the connection that
// reads the stream lives only inside Received.
func TestConformance(t *testing.T) {
	inst := sinktest.Unique("t-conf")
	stream := sinktest.Unique("T-CONF")
	dial(t, serverURL).stream(stream, inst+".>") // fails, not skips, when the server is down

	sinktest.Run(t, sinktest.Config{
		New:      func() sdk.Sink { return New() },
		Open:     map[string]string{"url": serverURL},
		Instance: inst,
		Deliver: &sinktest.DeliverCase{
			Received: func(t testing.TB, want []string) []string {
				nc, err := nats.Connect(serverURL)
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				st, err := js.Stream(ctx, stream)
				if err != nil {
					t.Fatalf("stream %s: %v", stream, err)
				}
				var got []string
				for _, m := range stored(t, st) {
					got = append(got, m.Header.Get("Nats-Msg-Id"))
				}
				return got
			},
		},
		// A server nobody listens on: every delivery is retried.
		Retry: &sinktest.Failure{
			Open: map[string]string{"url": "nats://127.0.0.1:1"},
		},
		// Reject is nil: nothing the server answers makes one message fail
		// for good. A PubAck error (a full stream, a stream that went away)
		// is a capacity or configuration problem, retried until the host's
		// policy dead-letters it.
	})
}
