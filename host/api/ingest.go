package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"

	fastjson "github.com/segmentio/encoding/json"

	"github.com/evorelay/evorelay/sdk/events"
)

// maxMessages bounds how many problems one 400 lists.
const maxMessages = 20

// incoming is one event of an ingest request, checked and normalized.
type incoming struct {
	// Event is the constant (MESSAGES_UPSERT).
	Event    string
	Instance string
	// Data is the event's data exactly as sent; "null" when absent.
	Data      json.RawMessage
	Sender    string
	ServerURL string
	APIKey    string
}

// wireEnvelope is an envelope as the engine sends it. Every member is raw,
// so a wrong type is reported per field and data is never decoded.
type wireEnvelope struct {
	Event     json.RawMessage `json:"event"`
	Instance  json.RawMessage `json:"instance"`
	Data      json.RawMessage `json:"data"`
	Sender    json.RawMessage `json:"sender"`
	ServerURL json.RawMessage `json:"server_url"`
	APIKey    json.RawMessage `json:"apikey"`
	// An inbound Evolution-channel message has these instead of event.
	Key     json.RawMessage `json:"key"`
	Message json.RawMessage `json:"message"`
}

// empty reports an object with none of the envelope's members.
func (w *wireEnvelope) empty() bool {
	for _, v := range []json.RawMessage{w.Event, w.Instance, w.Data, w.Sender, w.ServerURL, w.APIKey, w.Key, w.Message} {
		if v != nil {
			return false
		}
	}
	return true
}

// badRequest lists what is wrong with a request; it is answered 400.
type badRequest struct {
	messages []string
	// more counts the problems past maxMessages, which are not listed.
	more int
}

func (e *badRequest) Error() string { return fmt.Sprint(e.messages) }

func (e *badRequest) add(format string, args ...any) {
	if len(e.messages) >= maxMessages {
		e.more++
		return
	}
	e.messages = append(e.messages, fmt.Sprintf(format, args...))
}

func bad(format string, args ...any) *badRequest {
	e := &badRequest{}
	e.add(format, args...)
	return e
}

// parseIngest reads an ingest body: one envelope object or a JSON array of
// them. pathInstance is "" for /events, where each envelope names its
// instance; for /webhook/evolution/{instance} it is that (already checked)
// instance, which then overrides the envelopes', and an element may also be
// an inbound Evolution-channel message ({numberId, key, pushName, message,
// messageType}: no event, but key or message), taken as MESSAGES_UPSERT with
// the whole object as data.
//
// All or nothing: it returns every event, or a *badRequest naming each bad
// index and field, or the reader's error (an *http.MaxBytesError when the
// body is over its limit).
//
// The body is read whole first. An /events body of well-formed envelopes
// with nothing to complain about, the engine's every request, is decoded
// in one pass by a faster decoder (segmentio/encoding); any other body
// goes through the streaming parser, whose messages name each problem.
func parseIngest(r io.Reader, pathInstance string) ([]incoming, error) {
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			bodyBuffers.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	if pathInstance == "" {
		if out, ok := parseFast(buf.Bytes()); ok {
			return out, nil
		}
	}
	return parseStream(buf.Bytes(), pathInstance)
}

// bodyBuffers hold ingest bodies while they are parsed; those that grew
// past maxPooledBody (media) are left to the collector.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBody = 1 << 20

// parseFast decodes an /events body of one envelope or an array of them
// in one pass. ok is false when the body is not well-formed JSON of that
// shape, or any envelope has a problem: parseStream then says which.
func parseFast(body []byte) ([]incoming, bool) {
	body = bytes.TrimLeft(body, " \t\r\n")
	var ws []wireEnvelope
	switch {
	case len(body) > 0 && body[0] == '{':
		ws = make([]wireEnvelope, 1)
		if fastjson.Unmarshal(body, &ws[0]) != nil {
			return nil, false
		}
	case len(body) > 0 && body[0] == '[':
		if fastjson.Unmarshal(body, &ws) != nil {
			return nil, false
		}
	default:
		return nil, false
	}
	p := parser{fail: &badRequest{}}
	out := make([]incoming, len(ws))
	for i := range ws {
		ev, ok := p.check(i, &ws[i], nil)
		if !ok {
			return nil, false
		}
		out[i] = ev
	}
	return out, true
}

// parseStream parses a body value by value, and names every problem.
func parseStream(body []byte, pathInstance string) ([]incoming, error) {
	value := bytes.TrimLeft(body, " \t\n\r")
	skipped := int64(len(body) - len(value))
	switch {
	case len(value) == 0:
		return nil, bad("the body is empty; send an event object {\"event\", \"instance\", \"data\"} or an array of them")
	case value[0] != '{' && value[0] != '[':
		return nil, bad("the body must be an event object {\"event\", \"instance\", \"data\"} or an array of them")
	}

	p := parser{pathInstance: pathInstance, dec: json.NewDecoder(bytes.NewReader(value)), fail: &badRequest{}}
	var out []incoming
	if value[0] == '{' {
		if ev, ok := p.element(-1); ok {
			out = append(out, ev)
		}
	} else {
		if _, err := p.dec.Token(); err != nil { // '['
			return nil, p.fatal(err, skipped)
		}
		for i := 0; p.dec.More() && p.err == nil; i++ {
			if ev, ok := p.element(i); ok {
				out = append(out, ev)
			}
		}
		if p.err == nil {
			if _, err := p.dec.Token(); err != nil { // ']'
				p.err = err
			}
		}
	}
	if p.err != nil {
		return nil, p.fatal(p.err, skipped)
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, bad("the body has more after the JSON value; send one object or one array")
	}
	if len(p.fail.messages) > 0 {
		if p.fail.more > 0 {
			p.fail.messages = append(p.fail.messages, fmt.Sprintf("and %d more problems", p.fail.more))
		}
		return nil, p.fail
	}
	return out, nil
}

// parser holds one ingest body's decoding state.
type parser struct {
	pathInstance string
	dec          *json.Decoder
	// err stops parsing: the body is not valid JSON, or could not be read.
	err error
	// fail collects the problems of well-formed JSON.
	fail *badRequest
}

// fatal turns the error that stopped decoding into the request's answer.
func (p *parser) fatal(err error, skipped int64) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// The decoder's offsets are approximate in a stream of values.
		return bad("the body is not valid JSON: %v (near byte %d)", se, se.Offset+skipped)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return bad("the body is not valid JSON: it ends before the value is complete")
	}
	return bad("the body is not valid JSON: %v", err)
}

// element decodes and checks the next envelope; index -1 is a lone object.
func (p *parser) element(index int) (incoming, bool) {
	where := func(field string) string { return where(index, field) }

	var (
		w     wireEnvelope
		whole json.RawMessage
		err   error
	)
	if p.pathInstance != "" {
		// The Evolution-channel form needs the whole object as data.
		if err = p.dec.Decode(&whole); err == nil {
			if len(whole) == 0 || whole[0] != '{' {
				err = &json.UnmarshalTypeError{Value: kind(whole)}
			} else {
				err = json.Unmarshal(whole, &w)
			}
		}
	} else {
		err = p.dec.Decode(&w)
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		p.fail.add("%s: must be an event object {\"event\", \"instance\", \"data\"}, not %s", where(""), te.Value)
		return incoming{}, false
	case err != nil:
		p.err = err
		return incoming{}, false
	}
	return p.check(index, &w, whole)
}

// check checks one decoded envelope (whole is the element as sent, for the
// Evolution-channel form) and returns it as an event.
func (p *parser) check(index int, w *wireEnvelope, whole json.RawMessage) (incoming, bool) {
	where := func(field string) string { return where(index, field) }
	if w.empty() {
		p.fail.add("%s: must be an event object {\"event\", \"instance\", \"data\"}; it has none of those fields", where(""))
		return incoming{}, false
	}

	ok := true
	ev := incoming{Data: w.Data}
	if absent(w.Event) && p.pathInstance != "" && (!absent(w.Key) || !absent(w.Message)) {
		ev.Event = "MESSAGES_UPSERT"
		ev.Data = whole
	} else {
		name, isStr := str(w.Event)
		switch {
		case absent(w.Event):
			p.fail.add("%s: missing; name the event, such as MESSAGES_UPSERT or messages.upsert", where("event"))
			ok = false
		case !isStr:
			p.fail.add("%s: must be a string, not %s", where("event"), snippet(w.Event))
			ok = false
		default:
			ev.Event = events.Normalize(name)
			if ev.Event == "" {
				p.fail.add("%s: %s is not an event name; use a constant such as MESSAGES_UPSERT or a wire name such as messages.upsert", where("event"), quoteShort(name))
				ok = false
			}
		}
	}

	if p.pathInstance != "" {
		ev.Instance = p.pathInstance
	} else {
		name, isStr := str(w.Instance)
		switch {
		case absent(w.Instance):
			p.fail.add("%s: missing; name the instance, or post to /webhook/evolution/{instance}", where("instance"))
			ok = false
		case !isStr:
			p.fail.add("%s: must be a string, not %s", where("instance"), snippet(w.Instance))
			ok = false
		default:
			if msg := checkInstance(name); msg != "" {
				p.fail.add("%s: %s", where("instance"), msg)
				ok = false
			}
			ev.Instance = name
		}
	}

	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{
		{"sender", w.Sender, &ev.Sender},
		{"server_url", w.ServerURL, &ev.ServerURL},
		{"apikey", w.APIKey, &ev.APIKey},
	} {
		if absent(f.raw) {
			continue
		}
		s, isStr := str(f.raw)
		if !isStr {
			p.fail.add("%s: must be a string, not %s", where(f.name), snippet(f.raw))
			ok = false
		}
		*f.dst = s
	}

	if len(ev.Data) == 0 {
		ev.Data = json.RawMessage("null")
	}
	return ev, ok
}

// where names a field of the envelope at index (-1: the body is one
// envelope) in a message; "" names the envelope.
func where(index int, field string) string {
	switch {
	case index < 0 && field == "":
		return "the body"
	case index < 0:
		return field
	case field == "":
		return "[" + strconv.Itoa(index) + "]"
	}
	return "[" + strconv.Itoa(index) + "]." + field
}

// envelope writes the JSON every sink receives, with events' one writer:
// data copied as sent, null for what the engine did not send.
func (e incoming) envelope(dateTime, serverURL string) []byte {
	if e.ServerURL != "" {
		serverURL = e.ServerURL
	}
	return events.Envelope{
		Event: e.Event, Instance: e.Instance, Data: e.Data, DateTime: dateTime,
		Sender: e.Sender, ServerURL: serverURL, APIKey: e.APIKey,
	}.Append(nil)
}

// appendString appends s as a JSON string.
func appendString(out []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return append(out, b...)
}

// absent reports a member that was not sent, or sent as null.
func absent(v json.RawMessage) bool { return len(v) == 0 || string(v) == "null" }

// str decodes a JSON string member.
func str(v json.RawMessage) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	// Names are plain: no escape, no control byte, valid UTF-8. Anything
	// else goes through the decoder, which knows every rule.
	if len(v) >= 2 && v[len(v)-1] == '"' && plain(v[1:len(v)-1]) {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// plain reports whether b is a JSON string's content that means itself:
// valid UTF-8 with no backslash, quote or control byte.
func plain(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '\\' || c == '"' {
			return false
		}
	}
	return utf8.Valid(b)
}

// kind names the JSON type of a value, for messages.
func kind(v json.RawMessage) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "string"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// quoteShort quotes a name in a message, cut short when long.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}
