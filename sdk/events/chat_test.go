package events

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

const (
	peer  = "5511977776666@s.whatsapp.net"
	group = "120363025246125486@g.us"
)

// appended is the envelope Append writes for event with data.
func appended(event, data string) string {
	return string(Envelope{Event: event, Instance: "acme", Data: json.RawMessage(data),
		DateTime: "2024-01-01T12:00:00.000Z", Sender: peer, ServerURL: "https://engine.example", APIKey: "k"}.Append(nil))
}

// upsert is the data of a messages.upsert as Evolution API sends it, with
// text as the message.
func upsert(text string) string {
	return `{"key":{"remoteJid":"` + peer + `","fromMe":false,"id":"3EB0C767D26A1D2F"},"pushName":"Ana Souza",` +
		`"message":{"conversation":` + quote(text) + `,"messageContextInfo":{"deviceListMetadata":{"senderKeyHash":"x/+4=","recipientKeyHash":"y+z="},"deviceListMetadataVersion":2}},` +
		`"contextInfo":{"remoteJid":"` + group + `","participant":"` + peer + `"},` +
		`"messageType":"conversation","messageTimestamp":1704110400,"instanceId":"6f1c2a4e-0d3b-4c55-9a8e-1b2c3d4e5f60","source":"android"}`
}

func quote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

var chatTests = []struct {
	name     string
	envelope string
	want     string
}{
	{"messages.upsert: data.key.remoteJid", appended("messages.upsert", upsert("Olá! Is my order on its way? 🚚")), peer},
	{"messages.update: data.remoteJid", appended("messages.update",
		`{"key":{"id":"3EB0"},"keyId":"3EB0","remoteJid":"`+peer+`","fromMe":true,"status":"READ"}`), peer},
	{"data.key.remoteJid before data.remoteJid", appended("MESSAGES_UPDATE",
		`{"remoteJid":"`+group+`","key":{"remoteJid":"`+peer+`"}}`), peer},
	{"empty data.key.remoteJid: data.remoteJid", appended("MESSAGES_UPDATE",
		`{"key":{"remoteJid":""},"remoteJid":"`+peer+`"}`), peer},
	{"null data.key.remoteJid: data.remoteJid", appended("MESSAGES_UPDATE",
		`{"key":{"remoteJid":null},"remoteJid":"`+peer+`"}`), peer},
	{"numeric data.key.remoteJid: data.remoteJid", appended("MESSAGES_UPDATE",
		`{"key":{"remoteJid":5511},"remoteJid":"`+peer+`"}`), peer},
	{"key that is not an object: data.remoteJid", appended("MESSAGES_UPDATE",
		`{"key":"`+group+`","remoteJid":"`+peer+`"}`), peer},
	{"object data.remoteJid", appended("MESSAGES_UPDATE", `{"remoteJid":{"id":"`+peer+`"}}`), ""},
	{"presence.update: data.id only", appended("presence.update",
		`{"id":"`+peer+`","presences":{"`+peer+`":{"lastKnownPresence":"composing"}}}`), ""},
	{"connection.update", appended("connection.update", `{"instance":"acme","state":"open","statusReason":200}`), ""},
	{"remoteJid deeper than key is not the chat", appended("MESSAGES_UPSERT",
		`{"message":{"key":{"remoteJid":"`+peer+`"}},"contextInfo":{"remoteJid":"`+group+`"}}`), ""},
	{"remoteJid inside a string is not a member", appended("MESSAGES_UPSERT",
		`{"text":"\"key\":{\"remoteJid\":\"x\"}","key":{"id":"A"}}`), ""},
	{"data null", appended("CALL", `null`), ""},
	{"data array", appended("CHATS_SET", `[{"key":{"remoteJid":"`+peer+`"}}]`), ""},
	{"data string", appended("CALL", `"`+peer+`"`), ""},
	{"no data", `{"event":"CALL","instance":"acme"}`, ""},
	{"envelope null", `null`, ""},
	{"envelope array", `[{"data":{"remoteJid":"` + peer + `"}}]`, ""},
	{"envelope empty", ``, ""},
	{"escaped member names", appended("MESSAGES_UPSERT", `{"k\u0065y":{"remote\u004aid":"`+peer+`"}}`), peer},
	{"escaped data name", `{"d\u0061ta":{"remoteJid":"` + peer + `"}}`, peer},
	{"name that only looks escaped", appended("MESSAGES_UPSERT", `{"key":{"remote\\u004aid":"`+peer+`"}}`), ""},
	{"escaped value", appended("MESSAGES_UPSERT", `{"key":{"remoteJid":"5511\u0039@s.whatsapp.net\\"}}`), `55119@s.whatsapp.net\`},
	{"escaped data.remoteJid name", appended("MESSAGES_UPDATE", `{"remote\u004Aid":"`+peer+`"}`), peer},
	{"surrogates in the value", appended("MESSAGES_UPSERT", `{"key":{"remoteJid":"\ud83d\ude9a \ud800"}}`), "🚚 \uFFFD"},
	{"long strings with escapes", appended("MESSAGES_UPSERT", `{"caption":"`+strings.Repeat("a", 100)+`\\\"quoted\\\\",`+
		`"key":{"remoteJid":"`+strings.Repeat("b", 100)+`\\\"@g.us"}}`), strings.Repeat("b", 100) + `\"@g.us`},
	{"long member names", appended("MESSAGES_UPDATE", `{"`+strings.Repeat("x", 70)+`":1,"`+strings.Repeat("\\", 40)+`":2,"remoteJid":"`+peer+`"}`), peer},
	{"non-ASCII value", appended("MESSAGES_UPSERT", `{"key":{"remoteJid":"chat-ü-🚚"}}`), "chat-ü-🚚"},
	{"invalid UTF-8 in the value", "{\"data\":{\"remoteJid\":\"a\xffb\"}}", "a\uFFFDb"},
	{"invalid UTF-8 in a name", "{\"data\":{\"remoteJid\xff\":\"a\"}}", ""},
	{"last data wins, after the tail", strings.TrimSuffix(appended("MESSAGES_UPSERT", `{"key":{"remoteJid":"`+group+`"}}`), "}") +
		`,"data":{"remoteJid":"` + peer + `"}}`, peer},
	{"last data wins, hidden before the tail", `{"event":"E","instance":"i","data":{"remoteJid":"` + group + `"},"data":{"remoteJid":"` + peer + `"},"date_time":null}`, peer},
	{"last data wins, even null", `{"data":{"remoteJid":"` + peer + `"},"data":null}`, ""},
	{"last key wins", appended("MESSAGES_UPDATE",
		`{"key":{"remoteJid":"`+group+`"},"remoteJid":"`+peer+`","key":{"id":"A"}}`), peer},
	{"last remoteJid wins", appended("MESSAGES_UPSERT",
		`{"key":{"remoteJid":"`+group+`","remoteJid":"`+peer+`"}}`), peer},
	{"last remoteJid wins, even null", appended("MESSAGES_UPDATE",
		`{"remoteJid":"`+peer+`","remoteJid":null}`), ""},
	{"with a destination", string(Envelope{Event: "MESSAGES_UPSERT", Instance: "i", Data: json.RawMessage(upsert("hi")),
		Destination: "https://hook.example/x"}.Append(nil)), peer},
	{"other order and spacing", "{ \"apikey\" : null ,\n \"data\" : { \"key\" : { \"id\" : \"A\" , \"remoteJid\" :\t\"" + peer + "\" } } ,\"event\":\"x\" }", peer},
	{"date_time inside data", appended("MESSAGES_UPSERT", `{"key":{"remoteJid":"`+peer+`"},"date_time":"x","note":"a,\"date_time\":"}`), peer},
	{"strings ending in backslashes", appended("MESSAGES_UPSERT", `{"a":"\\","b":"\\\"","key":{"c":"\\\\","remoteJid":"`+peer+`"}}`), peer},
}

func TestChat(t *testing.T) {
	for _, tt := range chatTests {
		t.Run(tt.name, func(t *testing.T) {
			env := []byte(tt.envelope)
			if got := Chat(env); got != tt.want {
				t.Errorf("Chat(%s) = %q, want %q", env, got, tt.want)
			}
			if len(env) > 0 && !json.Valid(env) {
				t.Errorf("the test is wrong: %s is not valid JSON", env)
			} else if want := chatByDecoding(env); want != tt.want {
				t.Errorf("the test is wrong: encoding/json says %q", want)
			}
		})
	}
}

// Every prefix of an envelope, valid or not, is read without a panic.
func TestChatTruncated(t *testing.T) {
	for _, tt := range chatTests {
		for n := range len(tt.envelope) {
			Chat([]byte(tt.envelope[:n]))
		}
	}
}

// chatByDecoding is Chat by encoding/json: what Chat must return for
// valid JSON.
func chatByDecoding(envelope []byte) string {
	var env, data, key map[string]json.RawMessage
	if json.Unmarshal(envelope, &env) != nil || json.Unmarshal(env["data"], &data) != nil {
		return ""
	}
	if json.Unmarshal(data["key"], &key) == nil {
		if s := decodeString(key["remoteJid"]); s != "" {
			return s
		}
	}
	return decodeString(data["remoteJid"])
}

// decodeString is raw as a string, or "" when it is not one.
func decodeString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// FuzzChat checks Chat against encoding/json on the input, when it is
// valid JSON, and on the envelope built from it: mutated bytes are seldom
// valid JSON, and more seldom have a chat.
func FuzzChat(f *testing.F) {
	for _, tt := range chatTests {
		f.Add([]byte(tt.envelope))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, envelope := range [][]byte{in, built(in)} {
			got := Chat(envelope)
			if !json.Valid(envelope) {
				continue
			}
			if want := chatByDecoding(envelope); got != want {
				t.Errorf("Chat(%q) = %q, encoding/json says %q", envelope, got, want)
			}
		}
	})
}

// built is a valid JSON object built from choices read from in: members
// named as envelopes, data and key name theirs (plainly, escaped, or
// almost), with strings, other values and nested objects and arrays.
func built(in []byte) []byte {
	g := &builder{in: in}
	g.object(0)
	return g.out
}

type builder struct {
	in  []byte
	out []byte
}

var (
	builtNames = []string{`"data"`, `"key"`, `"remoteJid"`, `"d\u0061ta"`, `"k\u0065y"`, `"remote\u004aid"`,
		`"remoteJid\u0000"`, `"remotejid"`, `"id"`, `"event"`, "\"remoteJid\xff\"", `"\\\"data"`}
	builtStrings = []string{`"` + peer + `"`, `""`, `"` + group + `"`, `"55\u0031\"\\\/\b\f\n\r\t"`, `"ü🚚"`,
		"\"a\xffb\xc3\"", `"\ud83d\ude9a\ud800"`, `"` + strings.Repeat(`x\\`, 40) + `"`, `"\u007f\u2028"`}
	builtValues = []string{`null`, `true`, `-1.5e3`, `0`, `[]`, `{}`}
	builtSpaces = []string{"", " ", "\n\t ", "\r"}
)

// choose returns the next choice among n.
func (g *builder) choose(n int) int {
	if len(g.in) == 0 {
		return 0
	}
	c := int(g.in[0])
	g.in = g.in[1:]
	return c % n
}

func (g *builder) space() { g.out = append(g.out, builtSpaces[g.choose(len(builtSpaces))]...) }

func (g *builder) object(depth int) {
	g.out = append(g.out, '{')
	for i := range g.choose(6) {
		if i > 0 {
			g.out = append(g.out, ',')
		}
		g.space()
		g.out = append(g.out, builtNames[g.choose(len(builtNames))]...)
		g.space()
		g.out = append(g.out, ':')
		g.space()
		g.value(depth + 1)
		g.space()
	}
	g.out = append(g.out, '}')
}

func (g *builder) value(depth int) {
	switch c := g.choose(8); {
	case c < 3 || depth > 4:
		g.out = append(g.out, builtStrings[g.choose(len(builtStrings))]...)
	case c < 5:
		g.object(depth)
	case c < 6:
		g.out = append(g.out, '[')
		g.value(depth + 1)
		g.out = append(g.out, ',')
		g.value(depth + 1)
		g.out = append(g.out, ']')
	default:
		g.out = append(g.out, builtValues[g.choose(len(builtValues))]...)
	}
}

func BenchmarkChat(b *testing.B) {
	for _, bb := range []struct{ name, envelope string }{
		// About 1 KB, as most text messages are.
		{"messages.upsert", appended("messages.upsert", upsert(strings.Repeat("lorem ipsum ", 30)))},
		{"messages.update", appended("messages.update",
			`{"key":{"id":"3EB0"},"keyId":"3EB0","remoteJid":"`+peer+`","fromMe":true,"status":"READ","instanceId":"6f1c2a4e-0d3b-4c55-9a8e-1b2c3d4e5f60"}`)},
		{"presence.update", appended("presence.update", `{"id":"`+peer+`","presences":{"`+peer+`":{"lastKnownPresence":"composing"}}}`)},
		// An image with its media inline: 48 KiB of base64 to skip.
		{"image", appended("messages.upsert", `{"key":{"remoteJid":"`+peer+`","fromMe":false,"id":"3EB0"},`+
			`"message":{"imageMessage":{"mimetype":"image/jpeg","caption":"receipt"},"base64":"`+
			base64.StdEncoding.EncodeToString(make([]byte, 36<<10))+`"},"messageType":"imageMessage"}`)},
	} {
		env := []byte(bb.envelope)
		want := chatByDecoding(env)
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(env)))
			b.ReportAllocs()
			for b.Loop() {
				if Chat(env) != want {
					b.Fatal("wrong chat")
				}
			}
		})
	}
}
