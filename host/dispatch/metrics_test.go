package dispatch

import (
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLintAndLatency(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	now := time.Now().Truncate(time.Millisecond) // a ULID's precision
	m.count("webhook", "ok", 2)
	m.inflight("webhook", 1)
	m.delivered("webhook", ulid.MustNew(ulid.Timestamp(now.Add(-20*time.Millisecond)), ulid.DefaultEntropy()).String(), now)
	m.delivered("webhook", ulid.MustNew(ulid.Timestamp(now.Add(-2*time.Hour)), ulid.DefaultEntropy()).String(), now)
	m.delivered("webhook", "not-a-ulid", now) // not observed

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP evorelay_delivery_latency_seconds Time from ingest (the 202) to the sink's ok, retries included, of each delivered event.
# TYPE evorelay_delivery_latency_seconds histogram
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="0.005"} 0
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="0.01"} 0
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="0.025"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="0.05"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="0.1"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="0.25"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="0.5"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="1"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="2.5"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="5"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="10"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="30"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="60"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="300"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="900"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="3600"} 1
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="10800"} 2
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="43200"} 2
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="86400"} 2
evorelay_delivery_latency_seconds_bucket{sink="webhook",le="+Inf"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want+"evorelay_delivery_latency_seconds_sum{sink=\"webhook\"} 7200.02\nevorelay_delivery_latency_seconds_count{sink=\"webhook\"} 2\n"), "evorelay_delivery_latency_seconds"); err != nil {
		t.Error(err)
	}
}
