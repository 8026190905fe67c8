package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/evorelay/evorelay/host/spool"
)

// discardSpool accepts every event and keeps none.
type discardSpool struct{}

func (discardSpool) Append(context.Context, []spool.Event) error { return nil }

// BenchmarkIngest is the handler's share of one engine POST of a 1 KB
// event (parse, envelope, answer), without the network and the spool.
func BenchmarkIngest(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			h := New(Options{APIKey: testKey, Sinks: &fakeSinks{}, Settings: &fakeSettings{}, Spool: discardSpool{}})
			one := fmt.Sprintf(`{"event":"messages.upsert","instance":"acme","data":{"key":{"remoteJid":"5511999999999@s.whatsapp.net","id":"ABC"},"message":{"conversation":%q}}}`, strings.Repeat("x", 1024))
			body := one
			if n > 1 {
				body = "[" + strings.Repeat(one+",", n-1) + one + "]"
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(body))
				req.Header.Set("apikey", testKey)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusAccepted {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1000, "µs/event")
		})
	}
}
