package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/evorelay/evorelay/host/store"
)

// The delivery controls every sink's settings take (hostMembers), and the
// order its deliveries keep ("ordering"). Each
// parser reads its member as sent and returns it normalized; null means
// none.

// decodeStrict decodes raw into v, refusing unknown members.
func decodeStrict(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// maxPerSecond bounds rate_limit.per_second: above it, a limit limits
// nothing a plugin could reach.
const maxPerSecond = 1e6

// parseRateLimit reads "rate_limit": {"per_second": 50, "burst": 100}.
// burst defaults to per_second rounded up (one second's worth).
func parseRateLimit(raw json.RawMessage) (json.RawMessage, []string) {
	if string(raw) == "null" {
		return nil, nil
	}
	const want = `rate_limit: want {"per_second": 50, "burst": 100} (deliveries a second, and how many may go at once; burst may be left out)`
	var in struct {
		PerSecond *float64 `json:"per_second"`
		Burst     *int     `json:"burst"`
	}
	if err := decodeStrict(raw, &in); err != nil {
		return nil, []string{want + ": " + jsonProblem(err)}
	}
	var msgs []string
	if in.PerSecond == nil {
		return nil, []string{want + ": per_second is missing"}
	}
	if !(*in.PerSecond > 0 && *in.PerSecond <= maxPerSecond) {
		msgs = append(msgs, fmt.Sprintf("rate_limit.per_second: %v is not a rate; want a number above 0 and at most %g, such as 50 or 0.5", *in.PerSecond, maxPerSecond))
	}
	burst := int(math.Ceil(*in.PerSecond))
	if in.Burst != nil {
		burst = *in.Burst
		if burst < 1 || burst > maxPerSecond {
			msgs = append(msgs, fmt.Sprintf("rate_limit.burst: %d is not a burst; want a whole number from 1 to %g", burst, maxPerSecond))
		}
	}
	if len(msgs) > 0 {
		return nil, msgs
	}
	out, _ := json.Marshal(struct {
		PerSecond float64 `json:"per_second"`
		Burst     int     `json:"burst"`
	}{*in.PerSecond, max(burst, 1)})
	return out, nil
}

// maxFailures bounds circuit.failures.
const maxFailures = 1_000_000

// parseCircuit reads "circuit": {"failures": 20, "cool_down": "30s"}, the
// instance's own circuit breaker over the process's
// (EVORELAY_CIRCUIT_FAILURES, EVORELAY_CIRCUIT_COOL_DOWN). Either part may
// be left out; failures 0 turns the breaker off for the instance.
func parseCircuit(raw json.RawMessage) (json.RawMessage, []string) {
	if string(raw) == "null" {
		return nil, nil
	}
	const want = `circuit: want {"failures": 20, "cool_down": "30s"} (consecutive failed attempts that open it, 0 for never; how long it stays open before a probe; either may be left out)`
	var in struct {
		Failures *int    `json:"failures"`
		CoolDown *string `json:"cool_down"`
	}
	if err := decodeStrict(raw, &in); err != nil {
		return nil, []string{want + ": " + jsonProblem(err)}
	}
	var out struct {
		Failures *int   `json:"failures,omitempty"`
		CoolDown string `json:"cool_down,omitempty"`
	}
	var msgs []string
	if in.Failures != nil {
		if *in.Failures < 0 || *in.Failures > maxFailures {
			msgs = append(msgs, fmt.Sprintf("circuit.failures: %d is out of range; want 0 (never open) to %d", *in.Failures, maxFailures))
		}
		out.Failures = in.Failures
	}
	if in.CoolDown != nil {
		d, err := time.ParseDuration(*in.CoolDown)
		if err != nil || d <= 0 {
			msgs = append(msgs, fmt.Sprintf("circuit.cool_down: %q is not a duration above 0, such as 30s or 5m", *in.CoolDown))
		} else {
			out.CoolDown = d.String()
		}
	}
	if len(msgs) > 0 {
		return nil, msgs
	}
	norm, _ := json.Marshal(out)
	return norm, nil
}

// parseOrdering reads "ordering": "chat" or "instance", what the order of
// the instance's deliveries to the sink follows.
func parseOrdering(raw json.RawMessage) (json.RawMessage, []string) {
	if string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || !store.ValidOrdering(s) {
		return nil, []string{fmt.Sprintf("ordering: want %q (each chat's events in order, chats concurrently) or %q (all the instance's events in order), not %s", store.OrderingChat, store.OrderingInstance, snippet(raw))}
	}
	norm, _ := json.Marshal(s)
	return norm, nil
}

// parseExpireAfter reads "expire_after": "6h", how long after it was
// accepted an event is still worth delivering.
func parseExpireAfter(raw json.RawMessage) (json.RawMessage, []string) {
	if string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, []string{fmt.Sprintf("expire_after: want a duration such as \"6h\" or \"90s\", not %s", snippet(raw))}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return nil, []string{fmt.Sprintf("expire_after: %q is not a duration above 0, such as 6h or 90s", s)}
	}
	norm, _ := json.Marshal(d.String())
	return norm, nil
}
