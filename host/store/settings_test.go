package store

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseAndWants(t *testing.T) {
	cases := []struct {
		name    string
		raw     string
		enabled bool
		wants   map[string]bool // event → Wants
	}{
		{"enabled, no events: all", `{"enabled":true}`, true,
			map[string]bool{"MESSAGES_UPSERT": true, "CALL": true, "SOMETHING_NEW": true}},
		{"enabled, empty events: all", `{"enabled":true,"events":[]}`, true,
			map[string]bool{"MESSAGES_UPSERT": true}},
		{"enabled, listed events", `{"enabled":true,"events":["MESSAGES_UPSERT","CONNECTION_UPDATE"]}`, true,
			map[string]bool{"MESSAGES_UPSERT": true, "CONNECTION_UPDATE": true, "MESSAGES_UPDATE": false}},
		{"wire spelling keyed by constant", `{"enabled":true,"events":["messages.upsert","group-participants.update","groups.update"]}`, true,
			map[string]bool{"MESSAGES_UPSERT": true, "GROUP_PARTICIPANTS_UPDATE": true, "GROUP_UPDATE": true, "CALL": false}},
		{"disabled wants nothing", `{"enabled":false,"events":["MESSAGES_UPSERT"]}`, false,
			map[string]bool{"MESSAGES_UPSERT": false}},
		{"enabled missing is false", `{"url":"https://x"}`, false,
			map[string]bool{"MESSAGES_UPSERT": false}},
		{"other fields kept", ` {"url":"https://x","enabled":true,"webhook_by_events":true}`, true,
			map[string]bool{"CALL": true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(json.RawMessage(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if s.Enabled != tc.enabled {
				t.Errorf("Enabled = %v, want %v", s.Enabled, tc.enabled)
			}
			if string(s.Raw) != tc.raw {
				t.Errorf("Raw = %s, want %s", s.Raw, tc.raw)
			}
			for ev, want := range tc.wants {
				if got := s.Wants(ev); got != want {
					t.Errorf("Wants(%s) = %v, want %v", ev, got, want)
				}
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, raw := range []string{``, `null`, `[]`, `"x"`, `{`, `{"enabled":"yes"}`, `{"events":"MESSAGES_UPSERT"}`} {
		if _, err := Parse(json.RawMessage(raw)); err == nil {
			t.Errorf("Parse(%q) accepted", raw)
		} else if !strings.HasPrefix(err.Error(), "store: settings: ") {
			t.Errorf("Parse(%q) error %q not prefixed", raw, err)
		}
	}
}

// The delivery controls the API stored are parsed once, with the
// settings.
func TestParseDeliveryControls(t *testing.T) {
	s, err := Parse(json.RawMessage(`{"enabled":true,"rate_limit":{"per_second":2.5,"burst":3},"circuit":{"failures":0},"expire_after":"6h0m0s","ordering":"instance"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.RateLimit == nil || *s.RateLimit != (RateLimit{PerSecond: 2.5, Burst: 3}) {
		t.Errorf("rate limit %+v", s.RateLimit)
	}
	if s.Circuit == nil || s.Circuit.Failures == nil || *s.Circuit.Failures != 0 || s.Circuit.CoolDown != 0 {
		t.Errorf("circuit %+v", s.Circuit)
	}
	if s.ExpireAfter != 6*time.Hour {
		t.Errorf("expire_after %v", s.ExpireAfter)
	}
	if s.ByChat {
		t.Error(`"ordering":"instance" parsed as by chat`)
	}
	if s, _ := Parse(json.RawMessage(`{"enabled":true}`)); s.RateLimit != nil || s.Circuit != nil || s.ExpireAfter != 0 || !s.ByChat {
		t.Errorf("settings without controls parsed as %+v", s)
	}
	for _, bad := range []string{`{"circuit":{"cool_down":"soon"}}`, `{"expire_after":"later"}`} {
		if _, err := Parse(json.RawMessage(bad)); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}
