package events

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
)

// Chat returns the chat the event in envelope belongs to: the lane key
// for per-chat ordering, and what the SQS sink groups messages by with
// group_by chat. The chat is data.key.remoteJid when that is a non-empty
// JSON string (messages.upsert, send.message), else data.remoteJid when
// that is one (messages.update, typebot.change-status). An event without
// a chat (connection.update, presence.update, a data that is not an
// object) returns "".
//
// It reads what encoding/json would: member names are compared unescaped,
// the last of duplicate members wins, a value that is not a string counts
// as absent, and the chat is decoded as a Go string (escapes, invalid
// UTF-8 as U+FFFD). It is made for the hot path: it walks the top-level
// members of the envelope, of data and of key, skipping every other value
// without decoding it, and allocates only the string it returns. On
// invalid JSON it never panics, but what it returns is unspecified.
func Chat(envelope []byte) string {
	i := skipSpace(envelope, 0)
	if i == len(envelope) || envelope[i] != '{' {
		return ""
	}
	var chat []byte
	m := members{b: envelope, i: i}
	for m.next() {
		if m.is("data") {
			chat, m.i = dataChat(envelope, m.i)
		} else {
			m.i = skipValue(envelope, m.i)
		}
	}
	if m.i < 0 {
		return ""
	}
	return unquote(chat)
}

// dataChat returns the chat of the data value at b[i] (as a JSON string,
// quotes included; nil when there is none) and where the value ends (-1
// when it does not).
func dataChat(b []byte, i int) (chat []byte, end int) {
	if b[i] != '{' {
		return nil, skipValue(b, i)
	}
	var keyJid, jid []byte
	m := members{b: b, i: i}
	for m.next() {
		switch {
		case !m.is("key"):
			jid = m.stringIf("remoteJid", jid)
		case b[m.i] == '{':
			keyJid = nil
			k := members{b: b, i: m.i}
			for k.next() {
				keyJid = k.stringIf("remoteJid", keyJid)
			}
			m.i = k.i
		default: // a key that is not an object has no remoteJid
			keyJid = nil
			m.i = skipValue(b, m.i)
		}
	}
	if len(keyJid) > len(`""`) {
		return keyJid, m.i
	}
	if len(jid) > len(`""`) {
		return jid, m.i
	}
	return nil, m.i
}

// members reads the members of one JSON object in turn. i is where the
// reading is: after next returns true, the start of the member's value,
// which the caller must read past; after it returns false, just after the
// object, or -1 when the object is not valid JSON.
type members struct {
	b       []byte
	i       int
	started bool   // false: b[i] is the object's '{'
	name    []byte // the current member's name, quotes included
	plain   bool   // the name has no backslash
}

// next reads up to the next member's value and reports whether there is one.
func (m *members) next() bool {
	b := m.b
	if m.i < 0 {
		return false
	}
	if !m.started {
		m.started = true
		m.i = skipSpace(b, m.i+1)
		if m.i < len(b) && b[m.i] == '}' {
			m.i++
			return false
		}
	} else {
		m.i = skipSpace(b, m.i)
		if m.i == len(b) {
			m.i = -1
			return false
		}
		switch b[m.i] {
		case ',':
			m.i = skipSpace(b, m.i+1)
		case '}':
			m.i++
			return false
		default:
			m.i = -1
			return false
		}
	}
	if m.i == len(b) || b[m.i] != '"' {
		m.i = -1
		return false
	}
	end, plain := skipString(b, m.i)
	if end < 0 {
		m.i = -1
		return false
	}
	m.name, m.plain = b[m.i:end], plain
	m.i = skipSpace(b, end)
	if m.i == len(b) || b[m.i] != ':' {
		m.i = -1
		return false
	}
	m.i = skipSpace(b, m.i+1)
	if m.i == len(b) {
		m.i = -1
		return false
	}
	return true
}

// is reports whether the current member's name, unescaped, is name (an
// ASCII name).
func (m *members) is(name string) bool {
	inner := m.name[1 : len(m.name)-1]
	if m.plain || len(inner) > 6*len(name) {
		// Decoding a name without escapes changes only invalid UTF-8,
		// into U+FFFD, which an ASCII name does not have; it shortens
		// one with escapes by at most five bytes in six (\u0041).
		return string(inner) == name
	}
	var s string
	return json.Unmarshal(m.name, &s) == nil && s == name
}

// stringIf reads past the current member's value. It returns the value
// when the member is name and the value a string, nil when the member is
// name and the value is not a string, and was for any other member: the
// last of duplicate members wins.
func (m *members) stringIf(name string, was []byte) []byte {
	start := m.i
	m.i = skipValue(m.b, m.i)
	if !m.is(name) {
		return was
	}
	if m.i < 0 || m.b[start] != '"' {
		return nil
	}
	return m.b[start:m.i]
}

// unquote decodes the JSON string s (quotes included) as encoding/json
// does; nil is "".
func unquote(s []byte) string {
	if len(s) < len(`""`) {
		return ""
	}
	inner := s[1 : len(s)-1]
	for _, c := range inner {
		if c < 0x20 || c > 0x7e || c == '\\' {
			var v string
			if json.Unmarshal(s, &v) != nil {
				return ""
			}
			return v
		}
	}
	return string(inner)
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace, or len(b).
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns where the JSON value at b[i] ends, or -1 when it does
// not. It checks no more than it needs to find the end.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		end, _ := skipString(b, i)
		return end
	case '{', '[':
		return skipNested(b, i)
	}
	// A number, true, false or null: up to the next delimiter.
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// skipString returns where the JSON string starting at b[i] ('"') ends,
// or -1 when it does not, and whether it is plain: without a backslash.
// It reads a short string eight bytes at a time (its last bytes one by
// one); the rest of a long one (a caption, base64 media) is searched for
// quotes, a quote ending the string unless an odd number of backslashes
// precedes it, and is not reported plain.
func skipString(b []byte, i int) (end int, plain bool) {
	start := i + 1
	plain = true
	for i = start; i-start < shortString; {
		if i+8 > len(b) {
			for ; i < len(b); i++ {
				switch b[i] {
				case '"':
					return i + 1, plain
				case '\\':
					i++
					plain = false
				}
			}
			return -1, false
		}
		m := quoteOrBackslash(binary.LittleEndian.Uint64(b[i:]))
		if m == 0 {
			i += 8
			continue
		}
		i += bits.TrailingZeros64(m) / 8
		if b[i] == '"' {
			return i + 1, plain
		}
		i += 2 // the backslash and the byte it escapes
		plain = false
	}
	for i < len(b) {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return -1, false
		}
		i += q
		k := i
		for k > start && b[k-1] == '\\' {
			k--
		}
		if (i-k)%2 == 0 {
			return i + 1, false
		}
		i++
	}
	return -1, false
}

// shortString is how many bytes of a string skipString reads eight at a
// time before it searches for the closing quote instead.
const shortString = 64

// quoteOrBackslash returns w (eight bytes, the first in the low bits)
// with the high bit of its lowest byte that is '"' or '\\' set, and maybe
// of higher bytes too; 0 when it has neither.
func quoteOrBackslash(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, bs := w^(ones*'"'), w^(ones*'\\')
	return ((q-ones)&^q | (bs-ones)&^bs) & highs
}

// skipNested returns where the object or array starting at b[i] ends, or
// -1 when it does not.
func skipNested(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			if i, _ = skipString(b, i); i < 0 {
				return -1
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return -1
}
