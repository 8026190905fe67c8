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
	// Enabled is the "enabled" field.
	Enabled bool
	// Events is the set of subscribed event constants; nil means all.
	// Names stored in the wire spelling (messages.upsert) are keyed by
	// their constant too.
	Events map[string]bool
	// Retry is the instance's own retry policy ("retry"), or nil to use
	// the process's.
	Retry *Retry
}

// Retry is a per-instance retry policy; a zero part keeps the process's.
type Retry struct {
	// Schedule is the delay before each attempt; nil keeps the process's.
	Schedule []time.Duration
	// MaxAge gives up on a delivery this long after its first attempt; 0
	// keeps the process's.
	MaxAge time.Duration
}

// common is the part of every sink's settings the host reads.
type common struct {
	Enabled bool     `json:"enabled"`
	Events  []string `json:"events"`
	Retry   *struct {
		Schedule []string `json:"schedule"`
		MaxAge   string   `json:"max_age"`
	} `json:"retry"`
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
	s := Settings{Raw: raw, Enabled: c.Enabled}
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
