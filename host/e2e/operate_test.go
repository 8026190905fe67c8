package e2e

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metric reads one sample from the sidecar's /metrics, or -1 when absent.
func metric(s *Sidecar, series string) float64 {
	_, body := s.DoKey("GET", "/metrics", nil, "")
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return -1
	}
	return v
}

// What an operator watches while a receiver is down, then back: one retry
// warning in the log (not one per attempt), the age of the oldest event
// not delivered growing in /metrics, then the latency histogram counting
// the deliveries and the age back at 0.
func TestOperatorWatchesAFailingReceiver(t *testing.T) {
	recv := newReceiver(t)
	recv.SetStatus(http.StatusServiceUnavailable)
	s := StartSidecar(t, []string{"webhook"},
		"EVORELAY_RETRY_SCHEDULE=0s,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms,500ms",
		"EVORELAY_RETRY_JITTER=0", "EVORELAY_CIRCUIT_FAILURES=0")
	setWebhook(t, s, "ops", map[string]any{"url": recv.URL, "enabled": true})
	start := time.Now()
	postMany(t, s, "ops", 2)

	const age = `evorelay_sink_oldest_undelivered_seconds{sink="webhook"}`
	eventually(t, 20*time.Second, "retried, and the oldest event a second old", func() bool {
		return len(recv.Hits()) >= 6 && metric(s, age) >= 1
	})
	warn := "[WARN]  evorelay.dispatch: delivery failed; retry scheduled"
	// One a minute: a slow machine may have crossed into a second one.
	if n, most := strings.Count(s.Logs(), warn), 1+int(time.Since(start)/time.Minute); n < 1 || n > most {
		t.Errorf("%d retry warnings for %d failed attempts of one instance; want one a minute (at most %d)", n, len(recv.Hits()), most)
	}
	for _, line := range strings.Split(s.Logs(), "\n") {
		if strings.Contains(line, warn) && (!strings.Contains(line, "sink=webhook") || !strings.Contains(line, "instance=ops") || !strings.Contains(line, "503")) {
			t.Errorf("retry warning %q: want the sink, the instance and the receiver's answer", line)
		}
	}

	recv.SetStatus(http.StatusOK)
	const delivered = `evorelay_delivery_latency_seconds_count{sink="webhook"}`
	eventually(t, 20*time.Second, "both delivered, nothing left to age", func() bool {
		return metric(s, delivered) == 2 && metric(s, age) == 0
	})
	if sum := metric(s, `evorelay_delivery_latency_seconds_sum{sink="webhook"}`); sum < 2 {
		t.Errorf("latency sum %vs for two events that waited over a second each", sum)
	}
	if v := metric(s, `evorelay_delivery_latency_seconds_bucket{sink="webhook",le="0.5"}`); v != 0 {
		t.Errorf("%v deliveries counted under 0.5s; both waited for the receiver", v)
	}
}
