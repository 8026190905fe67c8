package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/sdk/events"
)

// acceptedAt is testNow as date_time: real UTC, milliseconds, Z.
const acceptedAt = "2024-01-02T06:04:05.678Z"

func TestIngestOneEnvelope(t *testing.T) {
	f := newFixture(t)
	body := `{"event":"messages.upsert","instance":"inst1",
		"data":{"key":{"remoteJid":"5511@s.whatsapp.net","id":"A"},"message":{"conversation":"hi"}},
		"destination":"https://ignored","date_time":"2020-01-01T00:00:00.000Z",
		"sender":"5511@s.whatsapp.net","server_url":"https://engine.example","apikey":"engine-key"}`
	expect(t, f.do("POST", "/events", body), 202, `{"accepted":1,"ids":["ID1"]}`+"\n")
	wantBatches(t, f, [][]spool.Event{{{
		ID: "ID1", Instance: "inst1", Event: "MESSAGES_UPSERT",
		Envelope: []byte(`{"event":"MESSAGES_UPSERT","instance":"inst1","data":{"key":{"remoteJid":"5511@s.whatsapp.net","id":"A"},"message":{"conversation":"hi"}},"date_time":"` + acceptedAt + `","sender":"5511@s.whatsapp.net","server_url":"https://engine.example","apikey":"engine-key"}`),
	}}})
}

func TestIngestArrayInOneAppend(t *testing.T) {
	f := newFixture(t)
	body := `[
		{"event":"CONNECTION_UPDATE","instance":"a","data":{"state":"open"}},
		{"event":"group-participants.update","instance":"b","data":null,"server_url":null},
		{"event":"labels.whatever-new","instance":"a","data":[1,2,3]},
		{"event":"groups-update","instance":"a"}
	]`
	expect(t, f.do("POST", "/events/connection-update", body), 202, `{"accepted":4,"ids":["ID1","ID2","ID3","ID4"]}`+"\n")
	env := func(event, instance, data string) []byte {
		return []byte(`{"event":"` + event + `","instance":"` + instance + `","data":` + data + `,"date_time":"` + acceptedAt + `","sender":null,"server_url":"http://sidecar.local","apikey":null}`)
	}
	wantBatches(t, f, [][]spool.Event{{
		{ID: "ID1", Instance: "a", Event: "CONNECTION_UPDATE", Envelope: env("CONNECTION_UPDATE", "a", `{"state":"open"}`)},
		{ID: "ID2", Instance: "b", Event: "GROUP_PARTICIPANTS_UPDATE", Envelope: env("GROUP_PARTICIPANTS_UPDATE", "b", `null`)},
		// An unknown but well-formed name is carried, for sinks that take all.
		{ID: "ID3", Instance: "a", Event: "LABELS_WHATEVER_NEW", Envelope: env("LABELS_WHATEVER_NEW", "a", `[1,2,3]`)},
		// A spelling that converts to an alias is that alias's event.
		{ID: "ID4", Instance: "a", Event: "GROUP_UPDATE", Envelope: env("GROUP_UPDATE", "a", `null`)},
	}})
}

func TestIngestEvolutionRoute(t *testing.T) {
	f := newFixture(t)
	// The path names the instance; an envelope's own is not used.
	expect(t, f.do("POST", "/webhook/evolution/inst2", `{"event":"qrcode.updated","instance":"other","data":{"qrcode":"x"}}`), 202, `{"accepted":1,"ids":["ID1"]}`+"\n")
	// An inbound Evolution-channel message becomes MESSAGES_UPSERT with the
	// whole object as data, exactly as sent.
	msg := `{"numberId":"1234", "key":{"remoteJid":"5511@s.whatsapp.net","fromMe":false,"id":"B"},"pushName":"Ann","message":{"conversation":"oi"},"messageType":"conversation"}`
	expect(t, f.do("POST", "/webhook/evolution/inst2", msg), 202, `{"accepted":1,"ids":["ID2"]}`+"\n")
	expect(t, f.do("POST", "/webhook/evolution/inst2", `[`+msg+`,{"event":"CALL","data":{}}]`), 202, `{"accepted":2,"ids":["ID3","ID4"]}`+"\n")
	env := func(event, data string) []byte {
		return []byte(`{"event":"` + event + `","instance":"inst2","data":` + data + `,"date_time":"` + acceptedAt + `","sender":null,"server_url":"http://sidecar.local","apikey":null}`)
	}
	wantBatches(t, f, [][]spool.Event{
		{{ID: "ID1", Instance: "inst2", Event: "QRCODE_UPDATED", Envelope: env("QRCODE_UPDATED", `{"qrcode":"x"}`)}},
		{{ID: "ID2", Instance: "inst2", Event: "MESSAGES_UPSERT", Envelope: env("MESSAGES_UPSERT", msg)}},
		{
			{ID: "ID3", Instance: "inst2", Event: "MESSAGES_UPSERT", Envelope: env("MESSAGES_UPSERT", msg)},
			{ID: "ID4", Instance: "inst2", Event: "CALL", Envelope: env("CALL", `{}`)},
		},
	})

	// On /events the channel form is not an envelope.
	expect(t, f.do("POST", "/events", `{"instance":"a","key":{},"message":{}}`), 400,
		envelope(400, "event: missing; name the event, such as MESSAGES_UPSERT or messages.upsert"))
	expect(t, f.do("POST", "/webhook/evolution/%20a", `{"event":"CALL"}`), 400,
		envelope(400, `instance in the path: " a" starts or ends with white space; remove it`))
}

// One bad envelope refuses the request: every problem is named by index
// and field, and nothing is appended.
func TestIngestBadEnvelopes(t *testing.T) {
	nameHelp := "use a constant such as MESSAGES_UPSERT or a wire name such as messages.upsert"
	objHelp := `must be an event object {"event", "instance", "data"}`
	cases := []struct {
		name, path, body string
		messages         []string
	}{
		{"array", "/events", `[
			{"event":"messages.upsert","instance":"a","data":{}},
			{"event":"bad name!","instance":"a"},
			{"instance":"a"},
			{"event":"x.y"},
			{"event":5,"instance":7,"sender":true,"server_url":1,"apikey":{}},
			"str",
			null,
			{},
			{"event":"","instance":"a/b"},
			{"event":"CALL","instance":""}
		]`, []string{
			`[1].event: "bad name!" is not an event name; ` + nameHelp,
			`[2].event: missing; name the event, such as MESSAGES_UPSERT or messages.upsert`,
			`[3].instance: missing; name the instance, or post to /webhook/evolution/{instance}`,
			`[4].event: must be a string, not 5`,
			`[4].instance: must be a string, not 7`,
			`[4].sender: must be a string, not true`,
			`[4].server_url: must be a string, not 1`,
			`[4].apikey: must be a string, not {}`,
			`[5]: ` + objHelp + `, not string`,
			`[6]: ` + objHelp + `; it has none of those fields`,
			`[7]: ` + objHelp + `; it has none of those fields`,
			`[8].event: "" is not an event name; ` + nameHelp,
			`[8].instance: "a/b" contains '/'; an instance name cannot`,
			`[9].instance: is empty; give the instance's name`,
		}},
		{"one object", "/events", `{"event":"` + strings.Repeat("E", 65) + `","instance":" a"}`, []string{
			`event: "` + strings.Repeat("E", 64) + `"... is not an event name; ` + nameHelp,
			`instance: " a" starts or ends with white space; remove it`,
		}},
		{"evolution route array", "/webhook/evolution/i", `[{"event":"CALL"}, 3, null, {"numberId":"1"}]`, []string{
			`[1]: ` + objHelp + `, not number`,
			`[2]: ` + objHelp + `, not null`,
			`[3]: ` + objHelp + `; it has none of those fields`,
		}},
		{"not an object", "/events", `"MESSAGES_UPSERT"`, []string{`the body must be an event object {"event", "instance", "data"} or an array of them`}},
		{"empty", "/events", " \n", []string{`the body is empty; send an event object {"event", "instance", "data"} or an array of them`}},
		{"invalid JSON", "/events", `[{"event":"CALL","instance":"a"}, {"event": tru}]`, []string{`the body is not valid JSON: invalid character '}' in literal true (expecting 'e') (near byte 46)`}},
		{"truncated", "/events", `[{"event":"CALL","instance":"a"}`, []string{`the body is not valid JSON: it ends before the value is complete`}},
		{"trailing data", "/events", `{"event":"CALL","instance":"a"} {}`, []string{`the body has more after the JSON value; send one object or one array`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			expect(t, f.do("POST", c.path, c.body), 400, envelope(400, c.messages...))
			if n := len(f.spool.appended()); n != 0 {
				t.Errorf("%d batches appended from a bad request", n)
			}
		})
	}
}

func TestIngestListsAtMost20Problems(t *testing.T) {
	f := newFixture(t)
	body := "[" + strings.TrimSuffix(strings.Repeat(`{"instance":"a"},`, 25), ",") + "]"
	msgs := expectError(t, f.do("POST", "/events", body), 400)
	if len(msgs) != 21 || msgs[20] != "and 5 more problems" {
		t.Errorf("got %d messages, last %q", len(msgs), msgs[len(msgs)-1])
	}
}

func TestIngestEmptyArray(t *testing.T) {
	f := newFixture(t)
	expect(t, f.do("POST", "/events", ` [ ] `), 202, `{"accepted":0,"ids":[]}`+"\n")
	if n := len(f.spool.appended()); n != 0 {
		t.Errorf("an empty request appended %d batches", n)
	}
}

func TestIngestBodyLimit(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBodyBytes = 100 })
	small := `{"event":"CALL","instance":"a","data":"` + strings.Repeat("x", 50) + `"}`
	expect(t, f.do("POST", "/events", small), 202, `{"accepted":1,"ids":["ID1"]}`+"\n")
	for _, body := range []string{
		`{"event":"CALL","instance":"a","data":"` + strings.Repeat("x", 100) + `"}`,
		`[{"event":"CALL","instance":"a"},` + strings.Repeat(" ", 100) + `]`,
		strings.Repeat(" ", 101),
	} {
		expect(t, f.do("POST", "/events", body), 413,
			envelope(413, "the request body is over the limit of 100 bytes; send fewer or smaller events a request, or raise the sidecar's body limit"))
	}
	if n := len(f.spool.appended()); n != 1 {
		t.Errorf("%d batches appended; want only the one under the limit", n)
	}

	// The default admits a media event of several MB, data kept exactly.
	f = newFixture(t)
	b64 := strings.Repeat("QUJD", 2<<20) // 8 MiB of base64
	data := `{"message":{"base64":"` + b64 + `"},"messageType":"videoMessage"}`
	expect(t, f.do("POST", "/events", `{"event":"MESSAGES_UPSERT","instance":"a","data":`+data+`}`), 202, `{"accepted":1,"ids":["ID1"]}`+"\n")
	got := f.spool.appended()
	if len(got) != 1 || !strings.Contains(string(got[0][0].Envelope), `"data":`+data+`,"date_time"`) {
		t.Error("the media event's data was not spooled as sent")
	}
}

func TestIngestSpoolRefuses(t *testing.T) {
	for _, c := range []struct {
		err error
		msg string
	}{
		{spool.ErrFull, "the spool is full because sinks are behind; nothing of this request was accepted, retry later"},
		{fmt.Errorf("spool: append: %w", spool.ErrFull), "the spool is full because sinks are behind; nothing of this request was accepted, retry later"},
		{errors.New("spool: append: disk I/O error"), "the events could not be spooled: spool: append: disk I/O error; nothing of this request was accepted, retry later"},
	} {
		f := newFixture(t)
		f.spool.err = c.err
		res := f.do("POST", "/events", `[{"event":"CALL","instance":"a"},{"event":"CALL","instance":"b"}]`)
		expect(t, res, 503, envelope(503, c.msg))
		if ra := res.header.Get("Retry-After"); ra != "5" {
			t.Errorf("Retry-After = %q, want 5", ra)
		}
	}
}

// A batch the spool can never hold is 413, not a 503 to retry forever.
func TestIngestTooLargeForTheSpool(t *testing.T) {
	f := newFixture(t)
	f.spool.err = fmt.Errorf("spool: append: 2 events of 900 bytes: %w", spool.ErrTooLarge)
	res := f.do("POST", "/events", `[{"event":"CALL","instance":"a"},{"event":"CALL","instance":"b"}]`)
	expect(t, res, 413, envelope(413, "the 2 events of this request are more than the spool holds at once (spool: append: 2 events of 900 bytes: spool: larger than the spool's limits); nothing was accepted, send fewer or smaller events a request"))
	if ra := res.header.Get("Retry-After"); ra != "" {
		t.Errorf("Retry-After = %q on a request that cannot succeed", ra)
	}
}

// Without Options.NewID, ids are ULIDs, increasing in the order accepted.
func TestDefaultIDsAreMonotonicULIDs(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.NewID = nil; o.Now = nil })
	body := "[" + strings.TrimSuffix(strings.Repeat(`{"event":"CALL","instance":"a"},`, 500), ",") + "]"
	var all []string
	for i := 0; i < 3; i++ {
		res := f.do("POST", "/events", body)
		var a accepted
		if err := json.Unmarshal([]byte(res.body), &a); err != nil || res.status != 202 {
			t.Fatalf("%d %s", res.status, res.body)
		}
		all = append(all, a.IDs...)
	}
	for i, id := range all {
		if _, err := ulid.ParseStrict(id); err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		if i > 0 && id <= all[i-1] {
			t.Fatalf("id %d %s is not after %s", i, id, all[i-1])
		}
	}
	batches := f.spool.appended()
	if batches[2][499].ID != all[1499] {
		t.Error("the spooled ids are not the answered ids")
	}
}

// The envelope written by hand is exactly events.Envelope, marshalled.
func TestEnvelopeIsEventsEnvelope(t *testing.T) {
	ev := incoming{Event: "MESSAGES_UPSERT", Instance: "Loja \"01\"", Data: json.RawMessage(`{"a":"<b>\u00e9"}`),
		Sender: "55\n11", APIKey: "k"}
	got := ev.envelope(acceptedAt, "http://fallback")
	var e events.Envelope
	if err := json.Unmarshal(got, &e); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	want := events.Envelope{Event: "MESSAGES_UPSERT", Instance: `Loja "01"`, Data: json.RawMessage(`{"a":"<b>\u00e9"}`),
		DateTime: acceptedAt, Sender: "55\n11", ServerURL: "http://fallback", APIKey: "k"}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("got %+v\nwant %+v", e, want)
	}
}

func wantBatches(t *testing.T, f *fixture, want [][]spool.Event) {
	t.Helper()
	got := f.spool.appended()
	if !reflect.DeepEqual(got, want) {
		var g, w strings.Builder
		for _, b := range got {
			for _, e := range b {
				fmt.Fprintf(&g, "  %s %s %s %s\n", e.ID, e.Instance, e.Event, e.Envelope)
			}
			g.WriteString("  --\n")
		}
		for _, b := range want {
			for _, e := range b {
				fmt.Fprintf(&w, "  %s %s %s %s\n", e.ID, e.Instance, e.Event, e.Envelope)
			}
			w.WriteString("  --\n")
		}
		t.Errorf("appended:\n%swant:\n%s", g.String(), w.String())
	}
}
