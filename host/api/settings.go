package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk/events"
)

// maxInstanceLen bounds an instance name, in bytes.
const maxInstanceLen = 128

// checkInstance returns what is wrong with an instance name, or "". The
// rule is loose on purpose (engines let users pick names): 1 to 128 bytes of
// valid UTF-8, no control characters, no '/', no leading or trailing space.
// A sink whose broker cannot carry a name refuses it in Validate.
func checkInstance(name string) string {
	switch {
	case name == "":
		return "is empty; give the instance's name"
	case len(name) > maxInstanceLen:
		return fmt.Sprintf("is %d bytes long; an instance name has at most %d", len(name), maxInstanceLen)
	case !utf8.ValidString(name) || strings.ContainsRune(name, utf8.RuneError):
		return "is not valid UTF-8"
	case strings.TrimSpace(name) != name:
		return fmt.Sprintf("%q starts or ends with white space; remove it", name)
	case strings.ContainsRune(name, '/'):
		return fmt.Sprintf("%q contains '/'; an instance name cannot", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Sprintf("%q contains a control character; an instance name cannot", name)
		}
	}
	return ""
}

// mask replaces a secret's value in find and set answers.
const mask = "********"

// field is one member of a JSON object, in the order it was sent.
type field struct {
	name  string
	value json.RawMessage
}

// settingsBody is a parsed settings body: the two fields the host
// normalizes, and the others, untouched and in order, for the plugin.
type settingsBody struct {
	enabled bool
	// events are constants, de-duplicated, in the order sent; empty
	// means every event.
	events []string
	// host are the members the host owns (hostMembers), normalized, in
	// the order sent. The host applies them; plugins never see them.
	host []field
	rest []field
}

// hostMember is a member of every sink's settings that the host owns
// (store.HostOwned) and a client sets: the API checks and normalizes it,
// the store keeps it, dispatch applies it, and plugins never see it.
type hostMember struct {
	name string
	// parse returns the normalized value (nil for none), or one message
	// per problem, each naming the member.
	parse func(json.RawMessage) (json.RawMessage, []string)
}

// hostMembers lists them; each is in store.HostOwned too (a test checks).
var hostMembers = []hostMember{
	{"retry", parseRetry},
	{"rate_limit", parseRateLimit},
	{"circuit", parseCircuit},
	{"expire_after", parseExpireAfter},
	{"ordering", parseOrdering},
}

// hostMemberNamed returns the host member called name, ignoring case, and
// whether there is one.
func hostMemberNamed(name string) (hostMember, bool) {
	for _, m := range hostMembers {
		if strings.EqualFold(m.name, name) {
			return m, true
		}
	}
	return hostMember{}, false
}

// evolutionReadOnly are the members Evolution API adds to its own find
// answers; a client that sends such an object back gets them dropped.
var evolutionReadOnly = map[string]bool{"id": true, "instanceId": true, "createdAt": true, "updatedAt": true}

// parseSettings reads a POST /{sink}/set/{instance} body: a flat object, or
// one wrapped in the sink's name ({"webhook": {...}}) as Evolution API v2
// clients send it. It returns one message per problem; none means ok.
func parseSettings(sink string, body []byte) (settingsBody, []string) {
	fields, msg := readObject(body)
	if msg != "" {
		return settingsBody{}, []string{msg}
	}
	if len(fields) == 1 && fields[0].name == sink {
		inner := fields[0].value
		if !isObject(inner) {
			return settingsBody{}, []string{fmt.Sprintf("%s: must be an object holding the settings, as in {%q: {\"enabled\": true, \"events\": [...]}}", sink, sink)}
		}
		// inner was decoded from valid JSON, so readObject cannot fail.
		fields, msg = readObject(inner)
		if msg != "" {
			return settingsBody{}, []string{sink + ": " + msg}
		}
	}

	var (
		b    settingsBody
		msgs []string
	)
	for _, f := range fields {
		switch {
		case f.name == "enabled":
			switch string(f.value) {
			case "true":
				b.enabled = true
			case "false", "null":
			default:
				msgs = append(msgs, fmt.Sprintf("enabled: must be true or false, not %s", snippet(f.value)))
			}
		case f.name == "events":
			var m []string
			b.events, m = parseEventList(f.value)
			msgs = append(msgs, m...)
		case isHostMember(f.name):
			m, _ := hostMemberNamed(f.name)
			v, problems := m.parse(f.value)
			msgs = append(msgs, problems...)
			if v != nil {
				b.host = append(b.host, field{f.name, v})
			}
		case strings.EqualFold(f.name, "enabled") || strings.EqualFold(f.name, "events") || isHostMemberFold(f.name):
			// A plugin decoding case-insensitively would read this one
			// instead of the field the host checked.
			msgs = append(msgs, fmt.Sprintf("%s: field names are case-sensitive; write %s", f.name, strings.ToLower(f.name)))
		case contains(store.HostOwned, f.name), evolutionReadOnly[f.name]:
			// The host writes these (a settings object copied from find
			// carries them); they are not the plugin's to validate.
		default:
			b.rest = append(b.rest, f)
		}
	}
	if len(msgs) > 0 {
		return settingsBody{}, msgs
	}
	return b, nil
}

// parseEventList reads "events": a list of event names in either spelling,
// returned as constants without duplicates.
func parseEventList(raw json.RawMessage) ([]string, []string) {
	if string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, []string{fmt.Sprintf("events: must be a list of event names such as [\"MESSAGES_UPSERT\"], not %s", snippet(raw))}
	}
	var (
		msgs    []string
		names   []string
		unknown []string
		seen    = map[string]bool{}
	)
	for i, it := range items {
		var name string
		if len(it) == 0 || it[0] != '"' || json.Unmarshal(it, &name) != nil {
			msgs = append(msgs, fmt.Sprintf("events[%d]: must be an event name (a string), not %s", i, snippet(it)))
			continue
		}
		c, ok := events.Lookup(name)
		if !ok {
			if !seen["?"+name] {
				seen["?"+name] = true
				unknown = append(unknown, name)
			}
			continue
		}
		if !seen[c] {
			seen[c] = true
			names = append(names, c)
		}
	}
	if bad := events.Unknown(unknown); len(bad) > 0 {
		q := make([]string, len(bad))
		for i, n := range bad {
			q[i] = fmt.Sprintf("%q", n)
		}
		msgs = append(msgs, fmt.Sprintf("events: unknown event names %s; use constants such as MESSAGES_UPSERT or wire names such as messages.upsert", strings.Join(q, ", ")))
	}
	if names == nil {
		names = []string{}
	}
	return names, msgs
}

// maxRetrySchedule bounds a per-instance retry schedule.
const maxRetrySchedule = 50

// parseRetry reads "retry": {"schedule": ["0s", "10s", ...], "max_age":
// "2h"}, an instance's own retry policy over the process's
// (EVORELAY_RETRY_SCHEDULE, EVORELAY_RETRY_MAX_AGE). Either part may be
// left out; null means none.
func parseRetry(raw json.RawMessage) (json.RawMessage, []string) {
	if string(raw) == "null" {
		return nil, nil
	}
	const want = `retry: want {"schedule": ["0s", "10s", "1m"], "max_age": "2h"} (Go durations; either may be left out)`
	var in struct {
		Schedule []string `json:"schedule"`
		MaxAge   *string  `json:"max_age"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, []string{want + ": " + jsonProblem(err)}
	}
	var out struct {
		Schedule []string `json:"schedule,omitempty"`
		MaxAge   string   `json:"max_age,omitempty"`
	}
	var msgs []string
	if in.Schedule != nil && (len(in.Schedule) == 0 || len(in.Schedule) > maxRetrySchedule) {
		msgs = append(msgs, fmt.Sprintf("retry.schedule: want 1 to %d delays, the first before attempt 1", maxRetrySchedule))
	}
	for i, v := range in.Schedule {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			msgs = append(msgs, fmt.Sprintf("retry.schedule[%d]: %q is not a duration of 0 or more, such as 30s or 2m", i, v))
			continue
		}
		out.Schedule = append(out.Schedule, d.String())
	}
	if in.MaxAge != nil {
		d, err := time.ParseDuration(*in.MaxAge)
		if err != nil || d < 0 {
			msgs = append(msgs, fmt.Sprintf("retry.max_age: %q is not a duration of 0 or more, such as 24h", *in.MaxAge))
		} else {
			out.MaxAge = d.String()
		}
	}
	if len(msgs) > 0 {
		return nil, msgs
	}
	norm, _ := json.Marshal(out)
	return norm, nil
}

// withHost sets the host's members in a plugin's normalized settings to
// those sent, removing any the plugin returned.
func (b settingsBody) withHost(normalized json.RawMessage) json.RawMessage {
	fields, msg := readObject(normalized)
	if msg != "" {
		return normalized
	}
	kept := fields[:0]
	for _, f := range fields {
		if !isHostMember(f.name) {
			kept = append(kept, f)
		}
	}
	return writeObject(append(kept, b.host...))
}

func isHostMember(name string) bool {
	m, ok := hostMemberNamed(name)
	return ok && m.name == name
}

func isHostMemberFold(name string) bool {
	_, ok := hostMemberNamed(name)
	return ok
}

// json is the object the plugin validates: enabled and events first, then
// the other fields as sent.
func (b settingsBody) json() json.RawMessage {
	evs, _ := json.Marshal(b.events)
	if b.events == nil {
		evs = []byte("[]")
	}
	fields := make([]field, 0, len(b.rest)+2)
	fields = append(fields, field{"enabled", json.RawMessage(fmt.Sprint(b.enabled))}, field{"events", evs})
	fields = append(fields, b.rest...)
	return writeObject(fields)
}

// restoreSecrets puts back the stored value of each secret field sent as
// the mask, so that a client may post back what find answered. A mask with
// no stored secret behind it is an error.
func (b *settingsBody) restoreSecrets(secrets []string, stored json.RawMessage) []string {
	var msgs []string
	var old []field
	if stored != nil {
		old, _ = readObject(stored)
	}
	for i, f := range b.rest {
		if !contains(secrets, f.name) || !isMask(f.value) {
			v, more := restoreCredentials(f, old)
			b.rest[i].value = v
			msgs = append(msgs, more...)
			continue
		}
		v, ok := lookup(old, f.name)
		if !ok || isEmpty(v) {
			msgs = append(msgs, fmt.Sprintf("%s: %q is the mask find answers with, not a secret; send the secret itself", f.name, mask))
			continue
		}
		b.rest[i].value = v
	}
	return msgs
}

// maskSecrets returns a stored settings object with the value of each
// non-empty secret field replaced by the mask, and the credentials of the
// others masked (credentials.go), members in stored order.
func maskSecrets(raw json.RawMessage, secrets []string) ([]byte, error) {
	fields, msg := readObject(raw)
	if msg != "" {
		return nil, errors.New("stored settings: " + msg)
	}
	for i, f := range fields {
		if contains(secrets, f.name) && !isEmpty(f.value) {
			fields[i].value = quote(mask)
		} else {
			fields[i].value = maskCredentials(f)
		}
	}
	return writeObject(fields), nil
}

// readObject reads a JSON object's members in order. It returns a message
// saying what is wrong, or "": not an object, invalid JSON, a member given
// twice, or anything after the object.
func readObject(data []byte) ([]field, string) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, "the body is empty; send a JSON object with the settings, such as {\"enabled\": true, \"events\": [\"MESSAGES_UPSERT\"]}"
	}
	// Settings are small: check the whole body first, for an exact offset.
	if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
		return nil, jsonProblem(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonProblem(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, "the body must be a JSON object with the settings, such as {\"enabled\": true, \"events\": [\"MESSAGES_UPSERT\"]}"
	}
	var fields []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonProblem(err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, "the body is not valid JSON: an object key is not a string"
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, jsonProblem(err)
		}
		if seen[name] {
			return nil, fmt.Sprintf("%s: the field is given twice; send it once", name)
		}
		seen[name] = true
		fields = append(fields, field{name, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "the body has more after the JSON object; send one object"
	}
	return fields, ""
}

// writeObject writes members as a JSON object, in order.
func writeObject(fields []field) []byte {
	n := 2
	for _, f := range fields {
		n += len(f.name) + len(f.value) + 4
	}
	out := make([]byte, 0, n)
	out = append(out, '{')
	for i, f := range fields {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, f.name)
		out = append(out, ':')
		out = append(out, f.value...)
	}
	return append(out, '}')
}

// jsonProblem says what is wrong with a body the JSON decoder refused.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se) && se.Error() == "unexpected end of JSON input",
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the body is not valid JSON: it ends before the value is complete"
	case errors.As(err, &se):
		return fmt.Sprintf("the body is not valid JSON: %v (at byte %d)", se, se.Offset)
	}
	return "the body is not valid JSON: " + err.Error()
}

// snippet quotes a JSON value in a message, cut short when long.
func snippet(v json.RawMessage) string {
	const max = 40
	if len(v) > max {
		return string(v[:max]) + "..."
	}
	return string(v)
}

func isObject(v json.RawMessage) bool { return len(v) > 0 && v[0] == '{' }

func isEmpty(v json.RawMessage) bool { return string(v) == `""` || string(v) == "null" }

func isMask(v json.RawMessage) bool {
	var s string
	return len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil && s == mask
}

func lookup(fields []field, name string) (json.RawMessage, bool) {
	for _, f := range fields {
		if f.name == name {
			return f.value, true
		}
	}
	return nil, false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
