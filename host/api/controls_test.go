package api

import (
	"strings"
	"testing"
)

// The delivery controls are the host's, as retry is: checked and
// normalized by the API, kept out of the plugin's settings, stored with
// them and shown by find.
func TestSetDeliveryControls(t *testing.T) {
	f := newFixture(t)
	body := `{"enabled":true,"rate_limit":{"per_second":2.5},"circuit":{"failures":5,"cool_down":"90s"},"expire_after":"6h","ordering":"instance"}`
	want := `{"enabled":true,"events":[],"rate_limit":{"per_second":2.5,"burst":3},"circuit":{"failures":5,"cool_down":"1m30s"},"expire_after":"6h0m0s","ordering":"instance"}` + "\n"
	expect(t, f.do("POST", "/rabbitmq/set/inst", body), 201, want)
	if calls := f.sinks.validated(); len(calls) != 1 || calls[0].settings != `{"enabled":true,"events":[]}` {
		t.Fatalf("the plugin was asked to validate %v; want it not to see the controls", calls)
	}
	expect(t, f.do("GET", "/rabbitmq/find/inst", ""), 200, want)

	// failures 0 turns the breaker off; it is kept, not dropped as empty.
	expect(t, f.do("POST", "/rabbitmq/set/inst", `{"enabled":true,"circuit":{"failures":0},"rate_limit":{"per_second":10,"burst":1}}`), 201,
		`{"enabled":true,"events":[],"circuit":{"failures":0},"rate_limit":{"per_second":10,"burst":1}}`+"\n")
	// A later set without them drops them.
	expect(t, f.do("POST", "/rabbitmq/set/inst", `{"enabled":true}`), 201, `{"enabled":true,"events":[]}`+"\n")

	for body, mentions := range map[string]string{
		`{"rate_limit":{}}`:                         "per_second is missing",
		`{"rate_limit":{"per_second":0}}`:           "rate_limit.per_second",
		`{"rate_limit":{"per_second":-1}}`:          "rate_limit.per_second",
		`{"rate_limit":{"per_second":5,"burst":0}}`: "rate_limit.burst",
		`{"rate_limit":{"rate":5}}`:                 "rate_limit:",
		`{"rate_limit":50}`:                         "rate_limit:",
		`{"circuit":{"failures":-1}}`:               "circuit.failures",
		`{"circuit":{"cool_down":"soon"}}`:          "circuit.cool_down",
		`{"circuit":{"cool_down":"0s"}}`:            "circuit.cool_down",
		`{"circuit":{"threshold":3}}`:               "circuit:",
		`{"expire_after":"later"}`:                  "expire_after",
		`{"expire_after":"-1h"}`:                    "expire_after",
		`{"expire_after":3600}`:                     "expire_after",
		`{"Expire_After":"1h"}`:                     "case-sensitive",
		`{"ordering":"none"}`:                       `ordering: want "chat"`,
		`{"ordering":"Chat"}`:                       "ordering:",
		`{"ordering":1}`:                            "ordering:",
		`{"RATE_LIMIT":{"per_second":1}}`:           "case-sensitive",
	} {
		msgs := expectError(t, f.do("POST", "/rabbitmq/set/inst", body), 400)
		if !strings.Contains(strings.Join(msgs, " "), mentions) {
			t.Errorf("%s: %v does not mention %q", body, msgs, mentions)
		}
	}
}
