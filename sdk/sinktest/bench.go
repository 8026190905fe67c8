package sinktest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/evorelay/evorelay/sdk"
)

// BenchBatch is how many events a benchmark step hands over at once.
const BenchBatch = 100

// BenchEnvelope is a MESSAGES_UPSERT event of about 1 KB for instance.
func BenchEnvelope(b *testing.B, instance string) []byte {
	return Envelope(b, instance, "MESSAGES_UPSERT", map[string]any{
		"key":     map[string]any{"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": false, "id": "3EB0C767D26A1D2F"},
		"message": map[string]any{"conversation": strings.Repeat("lorem ipsum ", 70)},
	})
}

// BenchBatches times b.N events of size bytes sent in batches of
// BenchBatch: send(first, n) sends events first … first+n-1 and returns
// once the destination has confirmed them. It reports events/s, to set
// against a bare client's figure from the same run.
func BenchBatches(b *testing.B, size int, send func(first, n int)) {
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i += BenchBatch {
		send(i, min(BenchBatch, b.N-i))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchDeliver times s delivering b.N MESSAGES_UPSERT events env for
// instance, with IDs b-0, b-1, …, through BenchBatches; it fails b if any
// delivery is not acked as delivered.
func BenchDeliver(b *testing.B, s sdk.Sink, instance, settings string, env []byte) {
	batch := make([]sdk.Delivery, BenchBatch)
	acks := &countAcks{}
	BenchBatches(b, len(env), func(first, n int) {
		for j := range n {
			batch[j] = sdk.Delivery{ID: fmt.Sprintf("b-%d", first+j), Instance: instance, Event: "MESSAGES_UPSERT",
				Attempt: 1, Envelope: env, Settings: []byte(settings)}
		}
		if err := s.Deliver(context.Background(), batch[:n], acks); err != nil {
			b.Fatal(err)
		}
	})
	if f := acks.failed.Load(); f > 0 {
		b.Fatalf("%d deliveries failed", f)
	}
}

// countAcks is a cheap Acks for benchmarks: it counts failures.
type countAcks struct{ failed atomic.Int64 }

func (c *countAcks) Done(_ string, err error) {
	if err != nil {
		c.failed.Add(1)
	}
}
