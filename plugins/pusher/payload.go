package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// maxDataBytes is the most event data Pusher takes: 10 KB (it answers 413
// above, and pusher-http-go refuses to send more).
const maxDataBytes = 10 << 10

// mediaKeys are the members that carry media inline, as base64 strings:
// the engine's data.message.base64 and WhatsApp's thumbnails (image,
// video, document, link preview, location; png for stickers).
var mediaKeys = map[string]bool{"base64": true, "jpegThumbnail": true, "pngThumbnail": true, "thumbnail": true}

// payload is what a Pusher event carries as data: the envelope, with the
// event written per EVORELAY_NAMING and sender, server_url and apikey null
// when the engine sent none. Truncated lists the media members set to
// null to fit Pusher's limit.
type payload struct {
	Event     string          `json:"event"`
	Instance  string          `json:"instance"`
	Data      json.RawMessage `json:"data"`
	DateTime  string          `json:"date_time"`
	Sender    *string         `json:"sender"`
	ServerURL *string         `json:"server_url"`
	APIKey    *string         `json:"apikey"`
	Truncated []string        `json:"evorelay_truncated,omitempty"`
}

func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// buildPayload writes a delivery's event data. Over Pusher's 10 KB it
// sets media members to null, data.message.base64 first and then the
// largest, until the payload fits, and lists them in evorelay_truncated.
// If it still does not fit, the delivery is refused for good.
func buildPayload(d sdk.Delivery, naming events.Naming) ([]byte, error) {
	env, err := d.Decode()
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("pusher: malformed envelope: %w", err))
	}
	p := payload{
		Event:     naming.Name(d.Event),
		Instance:  d.Instance,
		Data:      env.Data,
		DateTime:  env.DateTime,
		Sender:    orNull(env.Sender),
		ServerURL: orNull(env.ServerURL),
		APIKey:    orNull(env.APIKey),
	}
	b, err := encode(p)
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("pusher: malformed envelope data: %w", err))
	}
	if len(b) <= maxDataBytes {
		return b, nil
	}
	fields := mediaOrder(mediaFields(p.Data, "data"))
	for i, f := range fields {
		p.Data = nullify(p.Data, f, fields[i+1:])
		p.Truncated = append(p.Truncated, f.path)
		if b, err = encode(p); err != nil {
			return nil, sdk.Permanent(fmt.Errorf("pusher: encode payload: %w", err))
		}
		if len(b) <= maxDataBytes {
			return b, nil
		}
	}
	what := "it has no inline media to remove"
	if len(p.Truncated) > 0 {
		what = "even without " + strings.Join(p.Truncated, ", ")
	}
	return nil, sdk.Permanent(fmt.Errorf(
		"pusher: event data is %d bytes %s; Pusher accepts at most %d bytes an event; not sent",
		len(b), what, maxDataBytes))
}

func encode(p payload) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// field is a media member: its path (data.message.base64) and the byte
// span of its value in the data.
type field struct {
	path       string
	start, end int
}

// mediaFields finds every string member named in mediaKeys in a JSON
// value, at any depth.
func mediaFields(raw json.RawMessage, path string) []field {
	var out []field
	walk(raw, 0, path, &out)
	return out
}

func walk(raw []byte, base int, path string, out *[]field) {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	base += len(raw) - len(trimmed)
	raw = trimmed
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // { or [
		return
	}
	for i := 0; dec.More(); i++ {
		name := strconv.Itoa(i)
		if raw[0] == '{' {
			t, err := dec.Token()
			if err != nil {
				return
			}
			name, _ = t.(string)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return
		}
		end := int(dec.InputOffset())
		start := end - len(v)
		switch {
		case raw[0] == '{' && mediaKeys[name] && len(v) > 0 && v[0] == '"':
			*out = append(*out, field{path: path + "." + name, start: base + start, end: base + end})
		case len(v) > 0 && (v[0] == '{' || v[0] == '['):
			walk(v, base+start, path+"."+name, out)
		}
	}
}

// mediaOrder is the order media members are removed in: the engine's
// data.message.base64 first, then the largest first.
func mediaOrder(fs []field) []field {
	sort.SliceStable(fs, func(i, j int) bool {
		bi, bj := fs[i].path == "data.message.base64", fs[j].path == "data.message.base64"
		if bi != bj {
			return bi
		}
		return fs[i].end-fs[i].start > fs[j].end-fs[j].start
	})
	return fs
}

// nullify replaces one member's value with null, leaving every other byte
// as it was, and moves the spans of the fields still to come that lie
// after it.
func nullify(data json.RawMessage, f field, rest []field) json.RawMessage {
	out := make([]byte, 0, len(data)-(f.end-f.start)+len("null"))
	out = append(out, data[:f.start]...)
	out = append(out, "null"...)
	out = append(out, data[f.end:]...)
	shift := len("null") - (f.end - f.start)
	for i := range rest {
		if rest[i].start >= f.end {
			rest[i].start += shift
			rest[i].end += shift
		}
	}
	return out
}
