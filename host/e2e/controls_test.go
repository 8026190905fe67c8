package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A receiver that is down opens the instance's circuit: while it is down
// the receiver sees what was at the plugin (at most two batches) and then
// a probe per cool-down, not every event's retries; /readyz and /metrics
// show the open circuit. Back within the retry window, it gets every
// event, in order, and nothing is a dead letter.
func TestCircuitThroughTheHost(t *testing.T) {
	const n, batch = 200, 20
	recv := newReceiver(t)
	recv.SetStatus(http.StatusServiceUnavailable)
	s := StartSidecar(t, []string{"webhook"}, shortRetries, fmt.Sprintf("EVORELAY_BATCH_SIZE=%d", batch))
	setWebhook(t, s, "down", map[string]any{"url": recv.URL, "enabled": true,
		"circuit": map[string]any{"failures": 5, "cool_down": "300ms"}})
	postMany(t, s, "down", n)

	var ready struct {
		Details struct {
			Circuits []struct {
				Sink, Instance string
				LastError      string `json:"last_error"`
			} `json:"circuits_open"`
		} `json:"details"`
	}
	eventually(t, 30*time.Second, "the circuit open in /readyz and probed three times", func() bool {
		_, b := s.Do("GET", "/readyz", nil)
		_ = json.Unmarshal(b, &ready)
		probes := -1 // the oldest event's first try was no probe
		for _, h := range recv.Hits() {
			if seqOf(t, h) == 0 {
				probes++
			}
		}
		return len(ready.Details.Circuits) == 1 && probes >= 3
	})
	if c := ready.Details.Circuits[0]; c.Sink != "webhook" || c.Instance != "down" || !strings.Contains(c.LastError, "503") {
		t.Fatalf("open circuit %+v", c)
	}
	if _, m := s.Do("GET", "/metrics", nil); !strings.Contains(string(m), `evorelay_circuits_open{sink="webhook"} 1`) {
		t.Fatal("/metrics does not count the open circuit")
	}
	whileDown := recv.Hits()
	if distinct := len(seqsOf(t, whileDown)); distinct > 2*batch {
		t.Fatalf("%d distinct events tried while the receiver was down; want at most the two batches at the plugin when the circuit opened (%d): the rest wait untried", distinct, 2*batch)
	}
	// Without the circuit, seven tries each on this schedule: 1400.
	t.Logf("%d attempts at the receiver while down, for %d events", len(whileDown), n)

	recv.SetStatus(http.StatusOK)
	eventually(t, 60*time.Second, "every event once the receiver is back", func() bool {
		got := map[int]bool{}
		for _, h := range recv.Hits()[len(whileDown):] {
			got[seqOf(t, h)] = true
		}
		return len(got) == n
	})
	next := 0
	for _, h := range recv.Hits()[len(whileDown):] {
		if seq := seqOf(t, h); seq == next {
			next++
		} else if seq > next {
			t.Fatalf("event %d arrived before event %d: out of order after the receiver came back", seq, next)
		}
	}
	var page deadPage
	_ = json.Unmarshal(s.MustDo(200, "GET", "/webhook/deadletters/down", nil), &page)
	if len(page.DeadLetters) != 0 {
		t.Fatalf("%d dead letters; the receiver came back within the retry window", len(page.DeadLetters))
	}
	eventually(t, 10*time.Second, "the circuit closed", func() bool {
		_, b := s.Do("GET", "/readyz", nil)
		_ = json.Unmarshal(b, &ready)
		return len(ready.Details.Circuits) == 0
	})
	for _, line := range []string{"circuit opened", "circuit closed"} {
		if !strings.Contains(s.Logs(), line) {
			t.Errorf("the log does not say %q", line)
		}
	}
}
