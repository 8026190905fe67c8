package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/evorelay/evorelay/sdk/events"
)

// Settings are one instance's settings for one sink, as stored: the
// normalized JSON object the plugin's Validate returned, plus the two
// fields every sink shares, parsed once so that filtering an event never
// parses JSON.
type Settings struct {
	// Raw is the stored JSON object (it includes "enabled" and "events").
	Raw json.RawMessage
	// Plugin is Raw without the host's own members (HostOwned): what the
	// plugin validated, and all it receives with a batch.
	Plugin json.RawMessage
	// Enabled is the "enabled" field.
	Enabled bool
	// Events is the set of subscribed event constants; nil means all.
	// Names stored in the wire spelling (messages.upsert) are keyed by
	// their constant too.
	Events map[string]bool
	// Retry is the instance's own retry policy ("retry"), or nil to use
	// the process's.
	Retry *Retry
	// RateLimit bounds the instance's deliveries ("rate_limit"); nil
	// means none.
	RateLimit *RateLimit
	// Circuit is the instance's own circuit breaker ("circuit"), or nil
	// to use the process's.
	Circuit *Circuit
	// ExpireAfter dead-letters a delivery still undelivered this long
	// after it was accepted ("expire_after"); 0 means never.
	ExpireAfter time.Duration
	// ByChat is "ordering": "chat" (the default): the instance's
	// deliveries keep their order within each chat, and chats go
	// concurrently; false is "instance": all in one order.
	ByChat bool
}

// The values of "ordering".
const (
	OrderingChat     = "chat"
	OrderingInstance = "instance"
)

// ValidOrdering reports whether s is a value of "ordering".
func ValidOrdering(s string) bool { return s == OrderingChat || s == OrderingInstance }

// RateLimit is a token bucket: PerSecond deliveries a second on average,
// up to Burst at once.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// Circuit is a per-instance circuit breaker; a zero part keeps the
// process's.
type Circuit struct {
	// Failures is how many consecutive failed attempts open the circuit;
	// nil keeps the process's, 0 turns the breaker off.
	Failures *int
	// CoolDown is how long an open circuit waits before it probes; 0
	// keeps the process's.
	CoolDown time.Duration
}

// Retry is a per-instance retry policy; a zero part keeps the process's.
type Retry struct {
	// Schedule is the delay before each attempt; nil keeps the process's.
	Schedule []time.Duration
	// MaxAge gives up on a delivery this long after its first attempt; 0
	// keeps the process's.
	MaxAge time.Duration
}

// HostOwned are the members of an instance's settings that are the host's
// and never the plugin's: the API parses them (or the store writes them),
// dispatch applies them, and the plugin never sees them, neither in
// Validate nor with a delivery. A new host-side setting is added here, and
// its parsing to host/api's hostMembers.
var HostOwned = []string{"retry", "rate_limit", "circuit", "expire_after", "ordering", DisabledReasonKey, DisabledAtKey}

// common is the part of every sink's settings the host reads.
type common struct {
	Enabled bool     `json:"enabled"`
	Events  []string `json:"events"`
	Retry   *struct {
		Schedule []string `json:"schedule"`
		MaxAge   string   `json:"max_age"`
	} `json:"retry"`
	RateLimit *struct {
		PerSecond float64 `json:"per_second"`
		Burst     int     `json:"burst"`
	} `json:"rate_limit"`
	Circuit *struct {
		Failures *int   `json:"failures"`
		CoolDown string `json:"cool_down"`
	} `json:"circuit"`
	ExpireAfter string `json:"expire_after"`
	Ordering    string `json:"ordering"`
}

// errNotObject is Parse's error for JSON that is not an object; null
// would otherwise unmarshal into nothing, silently.
var errNotObject = errors.New("store: settings: not a JSON object")

// Parse reads a stored settings object. Raw is raw itself, not a copy.
func Parse(raw json.RawMessage) (Settings, error) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Settings{}, errNotObject
	}
	var c common
	if err := json.Unmarshal(raw, &c); err != nil {
		return Settings{}, fmt.Errorf("store: settings: %w", err)
	}
	s := Settings{Raw: raw, Plugin: withoutHostOwned(raw), Enabled: c.Enabled, ByChat: c.Ordering != OrderingInstance}
	if c.Retry != nil {
		s.Retry = &Retry{}
		for _, v := range c.Retry.Schedule {
			d, err := time.ParseDuration(v)
			if err != nil {
				return Settings{}, fmt.Errorf("store: settings: retry.schedule: %w", err)
			}
			s.Retry.Schedule = append(s.Retry.Schedule, d)
		}
		if c.Retry.MaxAge != "" {
			d, err := time.ParseDuration(c.Retry.MaxAge)
			if err != nil {
				return Settings{}, fmt.Errorf("store: settings: retry.max_age: %w", err)
			}
			s.Retry.MaxAge = d
		}
	}
	if r := c.RateLimit; r != nil && r.PerSecond > 0 {
		s.RateLimit = &RateLimit{PerSecond: r.PerSecond, Burst: max(r.Burst, 1)}
	}
	if c.Circuit != nil {
		s.Circuit = &Circuit{Failures: c.Circuit.Failures}
		if c.Circuit.CoolDown != "" {
			d, err := time.ParseDuration(c.Circuit.CoolDown)
			if err != nil {
				return Settings{}, fmt.Errorf("store: settings: circuit.cool_down: %w", err)
			}
			s.Circuit.CoolDown = d
		}
	}
	if c.ExpireAfter != "" {
		d, err := time.ParseDuration(c.ExpireAfter)
		if err != nil {
			return Settings{}, fmt.Errorf("store: settings: expire_after: %w", err)
		}
		s.ExpireAfter = d
	}
	if len(c.Events) > 0 {
		s.Events = make(map[string]bool, len(c.Events))
		for _, e := range c.Events {
			// Either spelling (messages.upsert) is keyed by its constant,
			// as Wants is asked.
			if n := events.Normalize(e); n != "" {
				e = n
			}
			s.Events[e] = true
		}
	}
	return s, nil
}

// Wants reports whether an event (constant) is to be delivered.
func (s Settings) Wants(event string) bool {
	return s.Enabled && (s.Events == nil || s.Events[event])
}

// withoutHostOwned returns raw without the HostOwned members, every other
// member as it was; raw itself when it has none.
func withoutHostOwned(raw json.RawMessage) json.RawMessage {
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &members) != nil {
		return raw
	}
	found := false
	for _, k := range HostOwned {
		if _, ok := members[k]; ok {
			found = true
			delete(members, k)
		}
	}
	if !found {
		return raw
	}
	out, err := json.Marshal(members)
	if err != nil {
		return raw
	}
	return out
}
