package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// Run with a fixed count so the queue stays small, e.g.
//
//	go test -run '^$' -bench . -benchtime 20000x ./plugins/rabbitmq
//
// Both benchmarks publish batches of 100 events of about 1 KB to the same
// kind of quorum queue and wait for every publisher confirm of a batch
// before the next: the ratio is the sink's overhead over the bare client.

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
	dialBroker(b) // fail, not skip, when the broker is down
	s := openSink(b, events.NamingSeed, nil)
	inst := unique("b-sink")
	cleanupBroker(b, inst, instanceQueues(inst)...)
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"]}`
	if _, err := s.Validate(context.Background(), inst, []byte(settings)); err != nil {
		b.Fatal(err)
	}
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
	br := dialBroker(b)
	inst := unique("b-bare")
	queue := inst + ".messages.upsert"
	cleanupBroker(b, inst, queue)
	ch := br.channel()
	if err := ch.ExchangeDeclare(inst, "topic", true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		b.Fatal(err)
	}
	if err := ch.QueueBind(queue, "messages.upsert", inst, false, nil); err != nil {
		b.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	env := benchEnvelope(b, inst)
	b.SetBytes(int64(len(env)))
	dcs := make([]*amqp.DeferredConfirmation, 0, benchBatch)
	b.ResetTimer()
	for i := 0; i < b.N; i += benchBatch {
		n := min(benchBatch, b.N-i)
		dcs = dcs[:0]
		for j := range n {
			dc, err := ch.PublishWithDeferredConfirm(inst, "messages.upsert", true, false, amqp.Publishing{
				ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: fmt.Sprintf("b-%d", i+j),
				Timestamp: time.Now(), Headers: amqp.Table{"instance": inst, "event": "MESSAGES_UPSERT"}, Body: env,
			})
			if err != nil {
				b.Fatal(err)
			}
			dcs = append(dcs, dc)
		}
		for _, dc := range dcs {
			if !dc.Wait() {
				b.Fatal("nacked")
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
