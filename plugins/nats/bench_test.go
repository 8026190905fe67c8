package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// Run with a fixed count so the stream stays small, e.g.
//
//	go test -run '^$' -bench . -benchtime 20000x ./plugins/nats
//
// Both benchmarks publish batches of 100 events of about 1 KB through
// JetStream to a file stream and wait for every PubAck of a batch before
// the next: the ratio is the sink's overhead over the bare client.

const benchBatch = 100

func benchEnvelope(b *testing.B, instance string) []byte {
	return envelope(b, instance, "MESSAGES_UPSERT", map[string]any{
		"key":     map[string]any{"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": false, "id": "3EB0C767D26A1D2F"},
		"message": map[string]any{"conversation": strings.Repeat("lorem ipsum ", 70)},
	})
}

// countAcks is a cheap Acks for benchmarks: it counts failures.
type countAcks struct{ failed atomic.Int64 }

func (c *countAcks) Done(_ string, err error) {
	if err != nil {
		c.failed.Add(1)
	}
}

func BenchmarkPublish(b *testing.B) {
	c := dial(b, serverURL)
	s := openSink(b, serverURL, events.NamingSeed, nil)
	inst := unique("b-sink")
	c.stream(unique("B-SINK"), inst+".>")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"]}`
	env := benchEnvelope(b, inst)
	b.SetBytes(int64(len(env)))
	batch := make([]sdk.Delivery, benchBatch)
	acks := &countAcks{}
	b.ResetTimer()
	for i := 0; i < b.N; i += benchBatch {
		n := min(benchBatch, b.N-i)
		for j := range n {
			batch[j] = sdk.Delivery{ID: fmt.Sprintf("b-%d", i+j), Instance: inst, Event: "MESSAGES_UPSERT",
				Attempt: 1, Envelope: env, Settings: []byte(settings)}
		}
		if err := s.Deliver(context.Background(), batch[:n], acks); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if f := acks.failed.Load(); f > 0 {
		b.Fatalf("%d deliveries failed", f)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkBareClient(b *testing.B) {
	c := dial(b, serverURL)
	inst := unique("b-bare")
	c.stream(unique("B-BARE"), inst+".>")
	env := benchEnvelope(b, inst)
	b.SetBytes(int64(len(env)))
	futures := make([]jetstream.PubAckFuture, 0, benchBatch)
	b.ResetTimer()
	for i := 0; i < b.N; i += benchBatch {
		n := min(benchBatch, b.N-i)
		futures = futures[:0]
		for j := range n {
			msg := nats.NewMsg(inst + ".messages.upsert")
			msg.Data = env
			msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("b-%d", i+j))
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
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
