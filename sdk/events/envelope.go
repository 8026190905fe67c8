package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TimeLayout is how date_time is written: real UTC with milliseconds and
// a Z, e.g. 2024-01-01T12:00:00.000Z.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// FormatTime writes t in TimeLayout, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// Envelope is an accepted event as the host hands it to every sink. Event
// is always the constant; a sink writes it per the naming mode. DateTime is
// the moment the sidecar accepted the event. ServerURL, Sender and APIKey
// are what the engine sent (ServerURL falls back to EVORELAY_SERVER_URL).
type Envelope struct {
	Event     string          `json:"event"`
	Instance  string          `json:"instance"`
	Data      json.RawMessage `json:"data"`
	DateTime  string          `json:"date_time"`
	Sender    string          `json:"sender"`
	ServerURL string          `json:"server_url"`
	APIKey    string          `json:"apikey"`
}

// WithEvent returns the envelope with its top-level "event" member set to
// name, every other byte as it was: data (which may be several MB of
// base64 media) is neither re-encoded nor reordered. Sinks use it to write
// the event per their naming mode (Naming.Name) into the envelope the host
// gave them. An envelope without
// an event member gets one as its first member. The scan stops at the
// event member, which the host writes first.
func WithEvent(env []byte, name string) ([]byte, error) {
	quoted, err := json.Marshal(name)
	if err != nil {
		return nil, err
	}
	// Fast path: the host writes {"event":"CONSTANT",... with no escapes.
	if rest, ok := bytes.CutPrefix(env, []byte(`{"event":"`)); ok {
		if end := bytes.IndexByte(rest, '"'); end >= 0 && bytes.IndexByte(rest[:end], '\\') < 0 {
			if string(rest[:end]) == name {
				return env, nil
			}
			out := make([]byte, 0, len(env)+len(quoted))
			out = append(out, `{"event":`...)
			out = append(out, quoted...)
			return append(out, rest[end+1:]...), nil
		}
	}
	dec := json.NewDecoder(bytes.NewReader(env))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("the envelope is not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("the envelope is not valid JSON: %w", err)
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, fmt.Errorf("the envelope is not valid JSON: %w", err)
		}
		if tok != "event" {
			continue
		}
		end := int(dec.InputOffset())
		start := end - len(value)
		if start < 0 || !bytes.Equal(env[start:end], value) {
			return nil, errors.New("the envelope's event member could not be located")
		}
		if bytes.Equal(value, quoted) {
			return env, nil
		}
		out := make([]byte, 0, len(env)-len(value)+len(quoted))
		out = append(out, env[:start]...)
		out = append(out, quoted...)
		return append(out, env[end:]...), nil
	}
	open := bytes.IndexByte(env, '{')
	out := make([]byte, 0, len(env)+len(quoted)+10)
	out = append(out, env[:open+1]...)
	out = append(out, `"event":`...)
	out = append(out, quoted...)
	if rest := bytes.TrimSpace(env[open+1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, env[open+1:]...), nil
}
