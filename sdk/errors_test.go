package sdk

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk/events"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

func TestToAck(t *testing.T) {
	base := errors.New("503 service unavailable")
	for _, tc := range []struct {
		name    string
		err     error
		outcome sinkv1.Outcome
		reason  string
		afterMs int64
		disable bool
	}{
		{"nil", nil, sinkv1.Outcome_OUTCOME_OK, "", 0, false},
		{"plain", base, sinkv1.Outcome_OUTCOME_RETRY, base.Error(), 0, false},
		{"retry after", RetryAfter(base, 30*time.Second), sinkv1.Outcome_OUTCOME_RETRY, base.Error(), 30000, false},
		{"retry after, wrapped", fmt.Errorf("post: %w", RetryAfter(base, time.Second)), sinkv1.Outcome_OUTCOME_RETRY, "post: " + base.Error(), 1000, false},
		{"retry after under a millisecond rounds up", RetryAfter(base, time.Microsecond), sinkv1.Outcome_OUTCOME_RETRY, base.Error(), 1, false},
		{"retry after a negative delay", RetryAfter(base, -time.Second), sinkv1.Outcome_OUTCOME_RETRY, base.Error(), 0, false},
		{"permanent", Permanent(base), sinkv1.Outcome_OUTCOME_REJECT, base.Error(), 0, false},
		{"permanent, wrapped", fmt.Errorf("post: %w", Permanent(base)), sinkv1.Outcome_OUTCOME_REJECT, "post: " + base.Error(), 0, false},
		{"gone", Gone(base), sinkv1.Outcome_OUTCOME_REJECT, base.Error(), 0, true},
		{"permanent wins over retry after", RetryAfter(Permanent(base), time.Second), sinkv1.Outcome_OUTCOME_REJECT, base.Error(), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := toAck("d1", tc.err)
			if a.GetId() != "d1" || a.GetOutcome() != tc.outcome || a.GetReason() != tc.reason ||
				a.GetRetryAfterMs() != tc.afterMs || a.GetDisable() != tc.disable {
				t.Errorf("toAck: %v; want %v %q retry_after_ms=%d disable=%v", a, tc.outcome, tc.reason, tc.afterMs, tc.disable)
			}
		})
	}
}

func TestHelpersKeepNil(t *testing.T) {
	if Permanent(nil) != nil || Gone(nil) != nil || RetryAfter(nil, time.Second) != nil {
		t.Error("a helper turned a nil error into a non-nil one")
	}
}

func TestHelpersWrap(t *testing.T) {
	base := errors.New("refused")
	for _, err := range []error{Permanent(base), Gone(base), RetryAfter(base, time.Second)} {
		if !errors.Is(err, base) || err.Error() != "refused" {
			t.Errorf("%T: Is %v, Error %q; want the wrapped error unchanged", err, errors.Is(err, base), err.Error())
		}
	}
	if !IsPermanent(Permanent(base)) || !IsPermanent(fmt.Errorf("x: %w", Gone(base))) {
		t.Error("IsPermanent misses a Permanent or Gone error")
	}
	if IsPermanent(base) || IsPermanent(RetryAfter(base, time.Second)) || IsPermanent(nil) {
		t.Error("IsPermanent reports a transient error as permanent")
	}
}

func TestFieldErrors(t *testing.T) {
	var fe FieldErrors
	if fe.Err() != nil {
		t.Error("empty FieldErrors.Err() is not nil")
	}
	fe.Add("url", "must be http(s), got %q", "ftp")
	fe.Add("secret", "too short")
	err := fe.Err()
	if err == nil || err.Error() != `url: must be http(s), got "ftp"; secret: too short` {
		t.Errorf("Err() = %v", err)
	}
	var back FieldErrors
	if !errors.As(fmt.Errorf("webhook: %w", err), &back) || len(back) != 2 || back[1].Field != "secret" {
		t.Errorf("errors.As through a wrap: %v", back)
	}
}

func TestSubscription(t *testing.T) {
	all := Subscription{Enabled: true}
	some := Subscription{Enabled: true, Events: []string{"MESSAGES_UPSERT", "groups.update"}}
	if got := some.Subscribed(); len(got) != 2 || got[0] != "MESSAGES_UPSERT" || got[1] != "GROUP_UPDATE" {
		t.Errorf("Subscribed = %v", got)
	}
	if got := all.Subscribed(); len(got) != len(events.All()) {
		t.Errorf("Subscribed with no events = %d events; want all %d", len(got), len(events.All()))
	}
}
