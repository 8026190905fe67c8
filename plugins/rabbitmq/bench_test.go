package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// Run with a fixed count so the queue stays small, e.g.
//
//	go test -run '^$' -bench . -benchtime 20000x ./plugins/rabbitmq
//
// Both benchmarks publish batches of 100 events of about 1 KB to the same
// kind of quorum queue and wait for every publisher confirm of a batch
// before the next: the ratio is the sink's overhead over the bare client.

func BenchmarkPublish(b *testing.B) {
	dialBroker(b) // fail, not skip, when the broker is down
	s := openSink(b, events.NamingSeed, nil)
	inst := newInstance(b, "b-sink")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"]}`
	if _, err := s.Validate(context.Background(), inst, []byte(settings)); err != nil {
		b.Fatal(err)
	}
	sinktest.BenchDeliver(b, s, inst, settings, sinktest.BenchEnvelope(b, inst))
}

func BenchmarkBareClient(b *testing.B) {
	br := dialBroker(b)
	inst := sinktest.Unique("b-bare")
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
	env := sinktest.BenchEnvelope(b, inst)
	dcs := make([]*amqp.DeferredConfirmation, 0, sinktest.BenchBatch)
	sinktest.BenchBatches(b, len(env), func(first, n int) {
		dcs = dcs[:0]
		for j := range n {
			dc, err := ch.PublishWithDeferredConfirm(inst, "messages.upsert", true, false, amqp.Publishing{
				ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: fmt.Sprintf("b-%d", first+j),
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
	})
}
