package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
)

// member is one "key": value of a JSON object; value is obj[start:end].
type member struct {
	key        string
	start, end int
}

// members lists an object's members in order, duplicates included. ok is
// false when obj is not one well-formed JSON object.
func members(obj []byte) (ms []member, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		end := int(dec.InputOffset())
		ms = append(ms, member{key: key, start: end - len(v), end: end})
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // something after the object
	}
	return ms, true
}

// lookup returns the value of key (the last one, as encoding/json reads
// duplicates) and whether it is there.
func lookup(obj []byte, ms []member, key string) ([]byte, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].key == key {
			return obj[ms[i].start:ms[i].end], true
		}
	}
	return nil, false
}

// without removes every member named key from obj, leaving every other
// byte as it was. It returns obj itself when there is none.
func without(obj []byte, ms []member, key string) []byte {
	out := obj
	copied := false
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].key != key {
			continue
		}
		if !copied {
			out = append([]byte(nil), obj...)
			copied = true
		}
		var from, to int
		if i > 0 {
			// cut `, "key": value` back to the end of the previous value
			from, to = ms[i-1].end, ms[i].end
		} else {
			// cut `"key": value`, and the comma and space after it if any
			open := bytes.IndexByte(out, '{') + 1
			from = len(out) - len(bytes.TrimLeft(out[open:], " \t\r\n"))
			to = ms[i].end
			if rest := bytes.TrimLeft(out[to:], " \t\r\n"); len(rest) > 0 && rest[0] == ',' {
				rest = bytes.TrimLeft(rest[1:], " \t\r\n")
				to = len(out) - len(rest)
			}
		}
		out = append(out[:from], out[to:]...)
	}
	return out
}

// with appends "key": value to obj, which must have no member named key,
// right after its last member.
func with(obj []byte, ms []member, key string, value []byte) []byte {
	at := bytes.LastIndexByte(obj, '}')
	if len(ms) > 0 {
		at = ms[len(ms)-1].end
	}
	var b bytes.Buffer
	b.Grow(len(obj) + len(key) + len(value) + 4)
	b.Write(obj[:at])
	if len(ms) > 0 {
		b.WriteByte(',')
	}
	k, _ := json.Marshal(key) // a string always encodes
	b.Write(k)
	b.WriteByte(':')
	b.Write(value)
	b.Write(obj[at:])
	return b.Bytes()
}

// message finds data.message. ok is false when data is not an object or
// has no object named message.
func message(data []byte) (msg []byte, ms []member, at member, ok bool) {
	dms, ok := members(data)
	if !ok {
		return nil, nil, member{}, false
	}
	found := false
	for _, m := range dms {
		if m.key == "message" {
			at, found = m, true // the last one, as encoding/json reads it
		}
	}
	if !found {
		return nil, nil, member{}, false
	}
	msg = data[at.start:at.end]
	ms, ok = members(msg)
	return msg, ms, at, ok
}

// replace puts msg where at was in data.
func replace(data []byte, at member, msg []byte) []byte {
	out := make([]byte, 0, len(data)-(at.end-at.start)+len(msg))
	out = append(out, data[:at.start]...)
	out = append(out, msg...)
	return append(out, data[at.end:]...)
}

// stringValue reads a JSON string value; "" for anything else.
func stringValue(raw []byte) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return strings.TrimSpace(s)
}
