package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk/events"
)

// FuzzIngest: the envelope parser never panics, and either refuses the body
// (a 400 with messages) or returns one event per envelope, every one with a
// known-form event constant, a valid instance, data that is JSON, and an
// envelope that decodes back to exactly what was parsed.
func FuzzIngest(f *testing.F) {
	for _, s := range []string{
		`{"event":"messages.upsert","instance":"i","data":{"key":{"id":"A"}}}`,
		`[{"event":"CALL","instance":"a","data":null,"sender":"s","server_url":"u","apikey":"k"},{"event":"groups-update","instance":"b"}]`,
		`{"numberId":"1","key":{"id":"x"},"pushName":"A","message":{"conversation":"oi"},"messageType":"conversation"}`,
		`[{"event":5},"x",null,{},[]]`,
		`[{"event":"CALL","instance":"a"} {"x":1}]`,
		` [ ] `, `[`, `{`, `"x"`, ``, `{"event":"a\u0000","instance":"\ud800"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, evolution bool) {
		path := ""
		if evolution {
			path = "inst"
		}
		got, err := parseIngest(bytes.NewReader(body), path)
		if err != nil {
			var br *badRequest
			if !errors.As(err, &br) || len(br.messages) == 0 {
				t.Fatalf("error %v is not a 400 with messages", err)
			}
			for _, m := range br.messages {
				if m == "" {
					t.Fatal("an empty message")
				}
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		want := 1
		if trimmed := bytes.TrimSpace(body); trimmed[0] == '[' {
			var items []json.RawMessage
			_ = json.Unmarshal(body, &items)
			want = len(items)
		}
		if len(got) != want {
			t.Fatalf("%d events from %d envelopes", len(got), want)
		}
		for _, ev := range got {
			if ev.Event == "" || events.Normalize(ev.Event) != ev.Event {
				t.Fatalf("event %q is not a constant", ev.Event)
			}
			if msg := checkInstance(ev.Instance); msg != "" || (evolution && ev.Instance != path) {
				t.Fatalf("instance %q: %s", ev.Instance, msg)
			}
			if !json.Valid(ev.Data) {
				t.Fatalf("data %q is not JSON", ev.Data)
			}
			raw := ev.envelope("2024-01-01T00:00:00.000Z", "http://fallback")
			var e events.Envelope
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatalf("envelope %q: %v", raw, err)
			}
			serverURL := ev.ServerURL
			if serverURL == "" {
				serverURL = "http://fallback"
			}
			if e.Event != ev.Event || e.Instance != ev.Instance || !bytes.Equal(e.Data, ev.Data) || e.Sender != ev.Sender ||
				e.APIKey != ev.APIKey || e.ServerURL != serverURL || e.DateTime != "2024-01-01T00:00:00.000Z" {
				t.Fatalf("envelope %s does not hold %+v", raw, ev)
			}
		}
	})
}

// FuzzIngestFast: whatever the one-pass decoder accepts, the streaming
// parser accepts too, with the same events, byte for byte.
func FuzzIngestFast(f *testing.F) {
	for _, s := range []string{
		`{"event":"messages.upsert","instance":"i","data":{"key":{"id":"A"}}}`,
		`[{"event":"CALL","instance":"a","data":null,"sender":"s","server_url":"u","apikey":"k"},{"event":"groups-update","instance":"b"}]`,
		`[{"Event":"CALL","INSTANCE":"a","data": [1, 2 ,3] ,"event":"call"}]`,
		`{"event":"CALL","instance":"a","data":"\u00e9\ud800"} `,
		` [ ] `, `[null]`, `{"event":"CALL","instance":"a"}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := parseFast(body)
		if !ok {
			return
		}
		slow, err := parseStream(body, "")
		if err != nil {
			t.Fatalf("one-pass accepted %q, streaming refused it: %v", body, err)
		}
		if len(fast) != len(slow) {
			t.Fatalf("%q: %d events one-pass, %d streaming", body, len(fast), len(slow))
		}
		for i := range fast {
			a, b := fast[i], slow[i]
			if a.Event != b.Event || a.Instance != b.Instance || !bytes.Equal(a.Data, b.Data) ||
				a.Sender != b.Sender || a.ServerURL != b.ServerURL || a.APIKey != b.APIKey {
				t.Fatalf("%q: event %d one-pass %+v, streaming %+v", body, i, a, b)
			}
		}
	})
}

// FuzzSettings: the settings parser never panics, and either refuses the
// body with messages or yields an object the store can parse, with enabled
// a bool and events known constants without duplicates; parsing what it
// yields yields it again, and masking it hides every secret.
func FuzzSettings(f *testing.F) {
	for _, s := range []string{
		seedBody,
		`{"webhook":{"enabled":true,"events":["messages.upsert","GROUPS_UPDATE"],"byEvents":true}}`,
		`{"enabled":"yes","events":[1,"FOO"],"Enabled":1}`,
		`{"a":1,"a":2}`, `{"webhook":3}`, `[]`, `{`, ``, `{"secret":"********","url":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, msgs := parseSettings("webhook", body)
		if len(msgs) > 0 {
			for _, m := range msgs {
				if m == "" {
					t.Fatal("an empty message")
				}
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		out := b.json()
		st, err := store.Parse(out)
		if err != nil || !json.Valid(out) || !isObject(out) {
			t.Fatalf("yielded %q: %v", out, err)
		}
		if st.Enabled != b.enabled {
			t.Fatalf("enabled %v, stored as %v", b.enabled, st.Enabled)
		}
		seen := map[string]bool{}
		for _, e := range b.events {
			if c, ok := events.Lookup(e); !ok || c != e || seen[e] {
				t.Fatalf("events %q", b.events)
			}
			seen[e] = true
		}
		again, msgs := parseSettings("webhook", out)
		if len(msgs) > 0 || !bytes.Equal(again.json(), out) {
			t.Fatalf("re-parsing %s: %s %v", out, again.json(), msgs)
		}

		masked, err := maskSecrets(out, []string{"secret", "url"})
		if err != nil {
			t.Fatalf("masking %s: %v", out, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(masked, &m); err != nil {
			t.Fatalf("masked %q: %v", masked, err)
		}
		for _, k := range []string{"secret", "url"} {
			if v, ok := m[k]; ok && !isEmpty(v) && string(v) != `"`+mask+`"` {
				t.Fatalf("%s not masked in %s", k, masked)
			}
		}
	})
}

// FuzzStr: the shortcut for plain names reads every JSON value as the
// decoder does: the same string, or not a string.
func FuzzStr(f *testing.F) {
	for _, s := range []string{`"MESSAGES_UPSERT"`, `"a\"b"`, `"\u00e9"`, `"é"`, "\"\xff\"", "\"a\tb\"", `""`, `"`, `1`, `"a"b"`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := str(b)
		var want string
		wantOK := len(b) > 0 && b[0] == '"' && json.Unmarshal(b, &want) == nil
		if ok != wantOK || got != want {
			t.Fatalf("str(%q) = %q, %v; the decoder: %q, %v", b, got, ok, want, wantOK)
		}
	})
}
