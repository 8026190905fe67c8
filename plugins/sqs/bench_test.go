package main

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/evorelay/evorelay/sdk"
)

// benchBatch is what one benchmark operation sends: 100 events of about
// 1 KB each, to one queue.
const benchBatch = 100

func benchData(i int) string {
	return fmt.Sprintf(`{"key":{"remoteJid":"5511977776666@s.whatsapp.net","id":"%d"},"message":{"conversation":"%s"}}`,
		i, strings.Repeat("m", 900))
}

// countAcks counts the deliveries not acknowledged as delivered.
type countAcks struct{ failed atomic.Int64 }

func (a *countAcks) Done(_ string, err error) {
	if err != nil {
		a.failed.Add(1)
	}
}

// BenchmarkDeliver measures the sink: Deliver of 100 events of ~1 KB
// (envelope building, chunking into SendMessageBatch calls of 10, acks).
func BenchmarkDeliver(b *testing.B) {
	s, _ := openSink(b, nil)
	inst := newInstance("bench")
	q := inst + "_messages_upsert.fifo"
	url := purgeable(b, s, q)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		batch := make([]sdk.Delivery, benchBatch)
		for j := range batch {
			batch[j] = delivery("d"+strconv.Itoa(i)+"-"+strconv.Itoa(j), inst, "MESSAGES_UPSERT", benchData(j), subscribed)
		}
		acks := &countAcks{}
		b.StartTimer()
		if err := s.Deliver(waitCtx(b), batch, acks); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n := acks.failed.Load(); n > 0 {
			b.Fatalf("%d deliveries failed", n)
		}
		purge(b, url)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkBareClient is the floor: the plain SDK client sending the same
// messages, prepared in advance, in SendMessageBatch calls of 10.
func BenchmarkBareClient(b *testing.B) {
	s, _ := openSink(b, nil)
	inst := newInstance("bare")
	q := inst + "_messages_upsert.fifo"
	url := purgeable(b, s, q)
	// The same bodies the sink sends.
	bodies := make([]string, benchBatch)
	for j := range bodies {
		e, err := s.newEntry(delivery("x", inst, "MESSAGES_UPSERT", benchData(j), subscribed))
		if err != nil {
			b.Fatal(err)
		}
		bodies[j] = e.body
	}
	c := consumer(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		calls := make([]*sqs.SendMessageBatchInput, 0, benchBatch/10)
		for j := 0; j < benchBatch; j += 10 {
			in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(url)}
			for k := j; k < j+10; k++ {
				in.Entries = append(in.Entries, types.SendMessageBatchRequestEntry{
					Id:                     aws.String(strconv.Itoa(k - j)),
					MessageBody:            aws.String(bodies[k]),
					MessageGroupId:         aws.String(inst),
					MessageDeduplicationId: aws.String("d" + strconv.Itoa(i) + "-" + strconv.Itoa(k)),
					MessageAttributes: map[string]types.MessageAttributeValue{
						"event":    {DataType: aws.String("String"), StringValue: aws.String("MESSAGES_UPSERT")},
						"instance": {DataType: aws.String("String"), StringValue: aws.String(inst)},
					},
				})
			}
			calls = append(calls, in)
		}
		b.StartTimer()
		for _, in := range calls {
			out, err := c.SendMessageBatch(waitCtx(b), in)
			if err != nil {
				b.Fatal(err)
			}
			if len(out.Failed) > 0 {
				b.Fatalf("%d entries failed", len(out.Failed))
			}
		}
		b.StopTimer()
		purge(b, url)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
}

// purgeable creates queue q and returns its URL. The benchmarks empty it
// after every operation: goaws keeps messages in memory and scans them
// all every second.
func purgeable(b *testing.B, s *Sink, q string) string {
	b.Helper()
	u, err := s.createQueue(waitCtx(b), q)
	if err != nil {
		b.Fatal(err)
	}
	return u
}

func purge(b *testing.B, url string) {
	b.Helper()
	if _, err := consumer(b).PurgeQueue(waitCtx(b), &sqs.PurgeQueueInput{QueueUrl: aws.String(url)}); err != nil {
		b.Fatal(err)
	}
}
