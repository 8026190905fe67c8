package sinktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// memSink is a sink whose destination is a slice in memory. Its settings
// have one field, "target": "ok" delivers, "busy" fails transiently,
// "refuse" for good. flaw makes it break one rule of the protocol.
type memSink struct {
	sdk.UnimplementedSink
	flaw string
	dest *memDest
	stop chan struct{}
}

type memDest struct {
	mu  sync.Mutex
	ids []string
}

func (d *memDest) add(id string) {
	d.mu.Lock()
	d.ids = append(d.ids, id)
	d.mu.Unlock()
}

func (d *memDest) received(testing.TB, []string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.ids...)
}

func (s *memSink) Describe() sdk.Description {
	return sdk.Description{Name: "memory", Version: "0.1.0"}
}

func (s *memSink) Open(context.Context, sdk.Config) error {
	if s.flaw == "leaks-goroutine" {
		s.stop = make(chan struct{}) // never closed
		go func() { <-s.stop }()
	}
	return nil
}

func (s *memSink) Validate(_ context.Context, _ string, raw json.RawMessage) (json.RawMessage, error) {
	st, err := sdk.ParseSettings[memSettings](raw)
	if s.flaw == "accepts-unknown" {
		err = json.Unmarshal(raw, &st)
	}
	if err != nil {
		return nil, err
	}
	var fe sdk.FieldErrors
	if t := st.Target; t != "ok" && t != "busy" && t != "refuse" {
		if s.flaw == "internal-error-for-bad" {
			return nil, errors.New("bad target")
		}
		fe.Add("target", "want ok, busy or refuse, got %q", t)
	}
	if err := fe.Err(); err != nil {
		return nil, err
	}
	if s.flaw == "drops-events" {
		return json.Marshal(map[string]any{"enabled": st.Enabled, "target": st.Target})
	}
	return json.Marshal(st)
}

type memSettings struct {
	sdk.Subscription
	Target string `json:"target"`
}

func (s *memSink) Deliver(_ context.Context, batch []sdk.Delivery, acks sdk.Acks) error {
	var wg sync.WaitGroup
	for i, d := range batch {
		if s.flaw == "forgets-ack" && i == len(batch)-1 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			set, err := sdk.SettingsOf[memSettings](d)
			if s.flaw == "strict-settings" {
				set, err = sdk.ParseSettings[memSettings](d.Settings)
			}
			if err != nil {
				acks.Done(d.ID, sdk.Permanent(err))
				return
			}
			switch {
			case set.Target == "busy":
				acks.Done(d.ID, sdk.RetryAfter(errors.New("destination busy"), time.Second))
			case set.Target == "refuse" && s.flaw == "retries-refusals":
				acks.Done(d.ID, errors.New("refused"))
			case set.Target == "refuse":
				acks.Done(d.ID, sdk.Permanent(errors.New("refused")))
			case s.flaw == "loses-deliveries":
				acks.Done(d.ID, nil)
			default:
				if _, err := d.Decode(); err != nil {
					acks.Done(d.ID, sdk.Permanent(err))
					return
				}
				s.dest.add(d.ID)
				acks.Done(d.ID, nil)
			}
		}()
	}
	wg.Wait()
	return nil
}

func memConfig(flaw string) sinktest.Config {
	dest := &memDest{}
	settings := func(target string) json.RawMessage {
		return json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT","GROUP_UPDATE"],"target":"` + target + `"}`)
	}
	return sinktest.Config{
		New:  func() sdk.Sink { return &memSink{flaw: flaw, dest: dest} },
		Open: map[string]string{"region": "memory"},
		Good: []json.RawMessage{settings("ok"), json.RawMessage(`{"enabled":false,"events":[],"target":"busy"}`)},
		Bad:  map[string]json.RawMessage{"target": settings("nowhere")},
		Deliver: &sinktest.DeliverCase{
			Settings: settings("ok"),
			Received: dest.received,
		},
		Retry:  &sinktest.Failure{Settings: settings("busy")},
		Reject: &sinktest.Failure{Settings: settings("refuse"), Open: map[string]string{"region": "elsewhere"}},
	}
}

func TestRun(t *testing.T) {
	if os.Getenv(flawEnv) != "" {
		t.Skip("running a flawed sink")
	}
	sinktest.Run(t, memConfig(""))
}

const flawEnv = "SINKTEST_FLAW"

// TestFlawed is what TestSuiteFails runs in a child process: the suite
// against a sink with one flaw.
func TestFlawed(t *testing.T) {
	flaw := os.Getenv(flawEnv)
	if flaw == "" {
		t.Skip("run by TestSuiteFails")
	}
	sinktest.Run(t, memConfig(flaw))
}

// TestSuiteFails checks that the suite fails a sink that breaks a rule, in
// the subtest that names the rule, by running it in a child test process.
func TestSuiteFails(t *testing.T) {
	if os.Getenv(flawEnv) != "" {
		t.Skip("running a flawed sink")
	}
	for _, tc := range []struct {
		flaw string
		want []string
	}{
		{"forgets-ack", []string{"--- FAIL: TestFlawed/Deliver", "outcome OUTCOME_RETRY (sdk: Deliver returned without acknowledging this delivery), want OK"}},
		{"loses-deliveries", []string{"--- FAIL: TestFlawed/Deliver", "the destination did not get 8 of 8 deliveries"}},
		{"drops-events", []string{"--- FAIL: TestFlawed/Validate/good/0", `normalized settings changed "events": missing`}},
		{"internal-error-for-bad", []string{"--- FAIL: TestFlawed/Validate/bad/target", "answered an error instead of field errors"}},
		{"retries-refusals", []string{"--- FAIL: TestFlawed/Reject", "outcome OUTCOME_RETRY (refused), want OUTCOME_REJECT"}},
		{"accepts-unknown", []string{"--- FAIL: TestFlawed/Validate/unknown", `want a field error for "sinktest_unknown_member"`}},
		{"strict-settings", []string{"--- FAIL: TestFlawed/Deliver/IgnoresMembersItDoesNotOwn", "outcome OUTCOME_REJECT (disabled_reason: unknown field"}},
		{"leaks-goroutine", []string{"--- FAIL: TestFlawed/NoGoroutineLeaks", "found unexpected goroutines"}},
	} {
		t.Run(tc.flaw, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFlawed$", "-test.v")
			cmd.Env = append(os.Environ(), flawEnv+"="+tc.flaw)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite passed a sink that %s (err %v):\n%s", tc.flaw, err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestDeliveryID(t *testing.T) {
	env := sinktest.Envelope(t, "acme", "MESSAGES_UPSERT", map[string]any{"key": map[string]any{"id": "d-7"}})
	if id, err := sinktest.DeliveryID(env); err != nil || id != "d-7" {
		t.Errorf("DeliveryID = %q, %v; want d-7", id, err)
	}
	for _, bad := range []string{`not json`, `{"data":{}}`} {
		if _, err := sinktest.DeliveryID([]byte(bad)); err == nil {
			t.Errorf("DeliveryID(%s) gave no error", bad)
		}
	}
}
