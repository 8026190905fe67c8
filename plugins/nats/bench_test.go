package main

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// Run with a fixed count so the stream stays small, e.g.
//
//	go test -run '^$' -bench . -benchtime 20000x ./plugins/nats
//
// Both benchmarks publish batches of 100 events of about 1 KB through
// JetStream to a file stream and wait for every PubAck of a batch before
// the next: the ratio is the sink's overhead over the bare client.

func BenchmarkPublish(b *testing.B) {
	c := dial(b, serverURL)
	s := openSink(b, serverURL, events.NamingSeed, nil)
	inst := sinktest.Unique("b-sink")
	c.stream(sinktest.Unique("B-SINK"), inst+".>")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"]}`
	sinktest.BenchDeliver(b, s, inst, settings, sinktest.BenchEnvelope(b, inst))
}

func BenchmarkBareClient(b *testing.B) {
	c := dial(b, serverURL)
	inst := sinktest.Unique("b-bare")
	c.stream(sinktest.Unique("B-BARE"), inst+".>")
	env := sinktest.BenchEnvelope(b, inst)
	futures := make([]jetstream.PubAckFuture, 0, sinktest.BenchBatch)
	sinktest.BenchBatches(b, len(env), func(first, n int) {
		futures = futures[:0]
		for j := range n {
			msg := nats.NewMsg(inst + ".messages.upsert")
			msg.Data = env
			msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("b-%d", first+j))
			msg.Header.Set("Content-Type", "application/json")
			msg.Header.Set("instance", inst)
			msg.Header.Set("event", "MESSAGES_UPSERT")
			f, err := c.js.PublishMsgAsync(msg)
			if err != nil {
				b.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
	})
}
