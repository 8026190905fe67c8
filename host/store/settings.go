package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

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
}

// common is the part of every sink's settings the host reads.
type common struct {
	Enabled bool     `json:"enabled"`
	Events  []string `json:"events"`
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
