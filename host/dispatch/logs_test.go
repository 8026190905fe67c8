package dispatch

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// lockedBuilder is a log output the workers may share.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// A receiver that is down is warned about once per instance and interval,
// not once per retry; every dead letter is warned about.
func TestRetryAndDeadLetterWarnings(t *testing.T) {
	out := &lockedBuilder{}
	logger := hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Info})
	r := newRig(t, func(d *sinkv1.Delivery) *sinkv1.Ack {
		return &sinkv1.Ack{Id: d.GetId(), Outcome: sinkv1.Outcome_OUTCOME_RETRY, Reason: "connection refused"}
	}, Options{
		Policy:        Policy{Schedule: []time.Duration{0, time.Millisecond, time.Millisecond, time.Millisecond}},
		Logger:        logger,
		RetryLogEvery: time.Hour,
	})
	for _, inst := range []string{"a", "b"} {
		r.set(inst, `{"enabled":true,"events":[]}`)
	}
	r.add("a", "MESSAGES_UPSERT", 5)
	r.add("b", "MESSAGES_UPSERT", 1)
	eventually(t, "six dead letters", func() bool { return r.spool.Stats().Dead["test"] == 6 })

	// 6 deliveries × 3 retries each: one warning for a, one for b.
	retries := out.lines("[WARN]  dispatch: delivery failed; retry scheduled")
	if len(retries) != 2 {
		t.Fatalf("%d retry warnings, want one per instance:\n%s", len(retries), strings.Join(retries, "\n"))
	}
	for _, inst := range []string{"instance=a", "instance=b"} {
		n := 0
		for _, l := range retries {
			if strings.Contains(l, inst) && strings.Contains(l, "sink=test") && strings.Contains(l, `error="connection refused"`) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d retry warnings naming the sink and the error, want 1", inst, n)
		}
	}
	if dead := out.lines("[WARN]  dispatch: delivery failed for good; dead-lettered"); len(dead) != 6 {
		t.Errorf("%d dead-letter warnings, want one per dead letter (6)", len(dead))
	}
}

func TestRetryLogCountsWhatItHolds(t *testing.T) {
	r := newRetryLog(time.Minute)
	t0 := time.Unix(0, 0)
	if ok, _ := r.allow("a", t0); !ok {
		t.Fatal("first retry not logged")
	}
	for i := 1; i <= 3; i++ {
		if ok, _ := r.allow("a", t0.Add(time.Duration(i)*time.Second)); ok {
			t.Fatalf("retry %d within the minute logged", i)
		}
	}
	if ok, _ := r.allow("b", t0.Add(time.Second)); !ok {
		t.Error("another instance's first retry held back")
	}
	ok, suppressed := r.allow("a", t0.Add(time.Minute))
	if !ok || suppressed != 3 {
		t.Errorf("after the minute: logged=%v, not logged since last=%d; want true, 3", ok, suppressed)
	}
}
