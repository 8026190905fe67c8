package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/evorelay/evorelay/sdk"
)

// maxDataBytes is the most event data Pusher takes: 10 KB (it answers 413
// above, and pusher-http-go refuses to send more).
const maxDataBytes = 10 << 10

// mediaKeys are the members that carry media inline, as base64 strings:
// the engine's data.message.base64 and WhatsApp's thumbnails (image,
// video, document, link preview, location; png for stickers).
var mediaKeys = map[string]bool{"base64": true, "jpegThumbnail": true, "pngThumbnail": true, "thumbnail": true}

// buildPayload writes a delivery's event data: the envelope as the SDK
// hands it over (the event written per EVORELAY_NAMING). Over Pusher's
// 10 KB it sets media members to null, data.message.base64 first and then
// the largest, until the payload fits, and lists them in
// evorelay_truncated. If it still does not fit, the delivery is refused
// for good.
func buildPayload(d sdk.Delivery) ([]byte, error) {
	if len(d.Envelope) <= maxDataBytes {
		return d.Envelope, nil
	}
	env, err := d.Decode()
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("pusher: malformed envelope: %w", err))
	}
	b := d.Envelope
	fields := mediaOrder(mediaFields(env.Data, "data"))
	var truncated []string
	for i, f := range fields {
		env.Data = nullify(env.Data, f, fields[i+1:])
		truncated = append(truncated, f.path)
		b = withTruncated(env.Append(nil), truncated)
		if len(b) <= maxDataBytes {
			return b, nil
		}
	}
	what := "it has no inline media to remove"
	if len(truncated) > 0 {
		what = "even without " + strings.Join(truncated, ", ")
	}
	return nil, sdk.Permanent(fmt.Errorf(
		"pusher: event data is %d bytes %s; Pusher accepts at most %d bytes an event; not sent",
		len(b), what, maxDataBytes))
}

// withTruncated adds "evorelay_truncated": paths as the last member of env.
func withTruncated(env []byte, paths []string) []byte {
	list, _ := json.Marshal(paths) // strings always encode
	out := make([]byte, 0, len(env)+len(list)+24)
	out = append(out, env[:len(env)-1]...)
	out = append(out, `,"evorelay_truncated":`...)
	out = append(out, list...)
	return append(out, '}')
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
