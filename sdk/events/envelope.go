package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// TimeLayout is how date_time is written: real UTC with milliseconds and
// a Z, e.g. 2024-01-01T12:00:00.000Z.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// FormatTime writes t in TimeLayout, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// Envelope is an accepted event as the host hands it to every sink. The
// host writes Event as the constant; the SDK rewrites it per the naming
// mode before a sink sees it. DateTime is the moment the sidecar accepted
// the event. ServerURL, Sender and APIKey are what the engine sent
// (ServerURL falls back to EVORELAY_SERVER_URL); empty means not sent.
//
// Append (and MarshalJSON) is the one writer of an envelope's bytes: the
// host's ingest, its APPLICATION_STARTUP and any sink that rewrites an
// envelope use it, so the same event has the same bytes on every path.
type Envelope struct {
	Event    string          `json:"event"`
	Instance string          `json:"instance"`
	Data     json.RawMessage `json:"data"`
	// Destination is where a webhook posts the event; written after data,
	// and only when set.
	Destination string `json:"destination,omitempty"`
	DateTime    string `json:"date_time"`
	Sender      string `json:"sender"`
	ServerURL   string `json:"server_url"`
	APIKey      string `json:"apikey"`
}

// Append appends the envelope's JSON to b: {event, instance, data,
// [destination,] date_time, sender, server_url, apikey} in this order, the
// event first (WithEvent relies on it), data copied as it is (null when
// empty: a multi-MB base64 payload is neither decoded nor re-encoded),
// strings without HTML escaping, and null for an empty date_time, sender,
// server_url or apikey, as Evolution API writes what it does not have.
func (e Envelope) Append(b []byte) []byte {
	b = slices.Grow(b, len(e.Data)+len(e.Event)+len(e.Instance)+len(e.Destination)+len(e.Sender)+len(e.ServerURL)+len(e.APIKey)+128)
	b = e.appendHead(b)
	b = appendData(b, e.Data, e.Destination)
	return e.appendTail(b)
}

// Raw is the envelope cut around its data: what Cut returns for the bytes
// of Append (Destination aside).
func (e Envelope) Raw() Raw {
	b := e.appendHead(nil)
	n := len(b)
	b = e.appendTail(b)
	return Raw{head: b[:n:n], Data: e.Data, tail: b[n:]}
}

// appendHead appends what comes before data's value.
func (e Envelope) appendHead(b []byte) []byte {
	b = append(b, rawEvent...)
	b = appendString(b, e.Event)
	b = append(b, rawInstance...)
	b = appendString(b, e.Instance)
	return append(b, rawData...)
}

// appendTail appends what comes after data (and destination).
func (e Envelope) appendTail(b []byte) []byte {
	for _, m := range []struct{ name, value string }{
		{`,"date_time":`, e.DateTime}, {`,"sender":`, e.Sender}, {`,"server_url":`, e.ServerURL}, {`,"apikey":`, e.APIKey},
	} {
		b = append(b, m.name...)
		if m.value == "" {
			b = append(b, "null"...)
		} else {
			b = appendString(b, m.value)
		}
	}
	return append(b, '}')
}

// MarshalJSON is Append, for encoding/json (which HTML-escapes what it
// returns; write with Append to send the exact bytes).
func (e Envelope) MarshalJSON() ([]byte, error) {
	if len(bytes.TrimSpace(e.Data)) > 0 && !json.Valid(e.Data) {
		return nil, errors.New("events: envelope data is not valid JSON")
	}
	return e.Append(nil), nil
}

// appendData appends data's value (null when empty) and, when set, the
// destination member that follows it.
func appendData(b, data []byte, destination string) []byte {
	if len(bytes.TrimSpace(data)) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, data...)
	}
	if destination != "" {
		b = append(b, `,"destination":`...)
		b = appendString(b, destination)
	}
	return b
}

// Raw is an envelope as Append wrote it, cut around its data, so that a
// sink can replace data or add a destination without decoding the rest
// (the webhook's body is the envelope with its destination).
type Raw struct {
	head []byte // {"event":…,"instance":…,"data":
	// Data is the value of data, as the envelope has it.
	Data []byte
	tail []byte // ,"date_time":…}
}

var (
	rawEvent    = []byte(`{"event":`)
	rawInstance = []byte(`,"instance":`)
	rawData     = []byte(`,"data":`)
	rawDateTime = []byte(`,"date_time":`)
	rawDest     = []byte(`,"destination":`)
)

// Cut cuts env, as Append wrote it without a destination, around its
// data. ok is false for an envelope of any other shape: decode it instead.
// It reads only the first two members and looks for the date_time member
// from the end: the last `,"date_time":` of the envelope is that member's,
// since the strings after it cannot hold an unescaped quote.
func Cut(env []byte) (r Raw, ok bool) {
	i, ok := skipMember(env, 0, rawEvent)
	if ok {
		i, ok = skipMember(env, i, rawInstance)
	}
	if !ok || !bytes.HasPrefix(env[i:], rawData) {
		return Raw{}, false
	}
	i += len(rawData)
	j := bytes.LastIndex(env, rawDateTime)
	if j < i || env[len(env)-1] != '}' || bytes.Contains(env[i:j], rawDest) {
		return Raw{}, false
	}
	return Raw{head: env[:i:i], Data: env[i:j:j], tail: env[j:]}, true
}

// skipMember checks that env[i:] starts with key (`,"name":`) and a JSON
// string, and returns where the string ends.
func skipMember(env []byte, i int, key []byte) (int, bool) {
	if !bytes.HasPrefix(env[i:], key) {
		return 0, false
	}
	i += len(key)
	if i >= len(env) || env[i] != '"' {
		return 0, false
	}
	for i++; i < len(env); i++ {
		switch env[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// Append appends the envelope, with r.Data as its data and destination
// (when not "") after it: the bytes Envelope.Append writes for the same
// members.
func (r Raw) Append(b []byte, destination string) []byte {
	b = slices.Grow(b, len(r.head)+len(r.Data)+len(r.tail)+len(destination)+24)
	b = append(b, r.head...)
	b = appendData(b, r.Data, destination)
	return append(b, r.tail...)
}

// appendString appends s as a JSON string, without HTML escaping.
func appendString(b []byte, s string) []byte {
	if plain(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// plain reports whether s is printable ASCII without a quote or a
// backslash: a JSON string of it is s between quotes.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
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
