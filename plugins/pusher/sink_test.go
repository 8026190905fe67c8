package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// openSink opens a sink whose requests go to the receiver.
func openSink(t testing.TB, r *receiver, extra map[string]string, naming ...events.Naming) *Sink {
	t.Helper()
	env := map[string]string{"host": r.host()}
	for k, v := range extra {
		env[k] = v
	}
	s := New()
	cfg := sdk.Config{Settings: env, Logger: sinktest.TestLogger(t, hclog.Debug)}
	if len(naming) > 0 {
		cfg.Naming = naming[0]
	}
	if err := s.Open(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// appSettings are enabled instance settings for an app on the receiver
// (useTLS false: it speaks plain HTTP).
func appSettings(appID, key, secret string) string {
	return fmt.Sprintf(`{"enabled":true,"events":[],"appId":%q,"key":%q,"secret":%q,"cluster":"mt1","useTLS":false}`, appID, key, secret)
}

// delivery is one event for instance with the given data, in the envelope
// the host writes.
func delivery(id, instance, event, data, settings string) sdk.Delivery {
	env := events.Envelope{
		Event: event, Instance: instance, Data: json.RawMessage(data),
		DateTime: "2024-01-01T12:00:00.000Z", Sender: "5511988880000@s.whatsapp.net",
		ServerURL: "https://engine.example.com",
	}
	return sdk.Delivery{ID: id, Instance: instance, Event: event, Attempt: 1, Envelope: env.Append(nil), Settings: json.RawMessage(settings)}
}

// outcomes are each delivery's ack.
type outcomes map[string]error

// outcome is the ack of id as the host reads it; see sinktest.Outcome.
func (o outcomes) outcome(id string) string { return sinktest.Outcome(o[id]) }

// deliver hands the batch to the sink as the SDK does; every delivery must
// be acknowledged once.
func deliver(t testing.TB, s *Sink, batch []sdk.Delivery) outcomes {
	return sinktest.Deliver(t, s, s.naming, batch...)
}

func TestDeliverChannelEventData(t *testing.T) {
	for _, naming := range []events.Naming{events.NamingSeed, events.NamingEvolution} {
		t.Run(naming.String(), func(t *testing.T) {
			r := newReceiver(t)
			r.addApp("1001", "app-key", "app-secret")
			s := openSink(t, r, nil, naming)
			set := appSettings("1001", "app-key", "app-secret")
			data := `{"key":{"remoteJid":"5511977776666@s.whatsapp.net","fromMe":false,"id":"3EB0"},"message":{"conversation":"<b>Olá</b> & 🚚"}}`
			a := deliver(t, s, []sdk.Delivery{
				delivery("d1", "shop-1", "MESSAGES_UPSERT", data, set),
				delivery("d2", "shop-1", "GROUP_PARTICIPANTS_UPDATE", `{"id":"120363@g.us","action":"add"}`, set),
				delivery("d3", "shop-1", "GROUP_UPDATE", `{"id":"120363@g.us","subject":"x"}`, set),
			})
			for _, id := range []string{"d1", "d2", "d3"} {
				if a.outcome(id) != "ok" {
					t.Fatalf("%s: %s", id, a.outcome(id))
				}
			}
			got, _ := r.received()
			upsert, participants, group := "MESSAGES_UPSERT", "GROUP_PARTICIPANTS_UPDATE", "GROUP_UPDATE"
			if naming == events.NamingEvolution {
				upsert, participants, group = "messages.upsert", "group-participants.update", "groups.update"
			}
			want := []recvEvent{
				{App: "1001", Channel: "shop-1", Name: "messages.upsert", Data: `{"event":"` + upsert + `","instance":"shop-1","data":` + data +
					`,"date_time":"2024-01-01T12:00:00.000Z","sender":"5511988880000@s.whatsapp.net","server_url":"https://engine.example.com","apikey":null}`},
				{App: "1001", Channel: "shop-1", Name: "group-participants.update", Data: `{"event":"` + participants + `","instance":"shop-1","data":{"id":"120363@g.us","action":"add"}` +
					`,"date_time":"2024-01-01T12:00:00.000Z","sender":"5511988880000@s.whatsapp.net","server_url":"https://engine.example.com","apikey":null}`},
				{App: "1001", Channel: "shop-1", Name: "groups.update", Data: `{"event":"` + group + `","instance":"shop-1","data":{"id":"120363@g.us","subject":"x"}` +
					`,"date_time":"2024-01-01T12:00:00.000Z","sender":"5511988880000@s.whatsapp.net","server_url":"https://engine.example.com","apikey":null}`},
			}
			if !slices.Equal(got, want) {
				t.Errorf("the receiver got\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestDeliverBatchesOfTen(t *testing.T) {
	r := newReceiver(t)
	r.addApp("1001", "k", "s")
	s := openSink(t, r, nil)
	set := appSettings("1001", "k", "s")
	var batch []sdk.Delivery
	for i := range 25 {
		batch = append(batch, delivery(fmt.Sprintf("n%02d", i), "shop", "MESSAGES_UPSERT", fmt.Sprintf(`{"n":%d}`, i), set))
	}
	a := deliver(t, s, batch)
	for _, d := range batch {
		if a.outcome(d.ID) != "ok" {
			t.Fatalf("%s: %s", d.ID, a.outcome(d.ID))
		}
	}
	got, calls := r.received()
	want := []recvCall{{"batch_events", 10}, {"batch_events", 10}, {"batch_events", 5}}
	if !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	if len(got) != 25 {
		t.Fatalf("%d events received, want 25", len(got))
	}
	for i, e := range got {
		if !strings.Contains(e.Data, fmt.Sprintf(`"data":{"n":%d}`, i)) {
			t.Fatalf("event %d out of order: %s", i, e.Data)
		}
	}
}

func TestWrongSecretRejected(t *testing.T) {
	r := newReceiver(t)
	r.addApp("1001", "k", "right")
	s := openSink(t, r, nil)
	a := deliver(t, s, []sdk.Delivery{
		delivery("w1", "shop", "MESSAGES_UPSERT", `{}`, appSettings("1001", "k", "wrong")),
		delivery("w2", "shop", "CONNECTION_UPDATE", `{}`, appSettings("1001", "k", "wrong")),
	})
	for _, id := range []string{"w1", "w2"} {
		got := a.outcome(id)
		if !strings.HasPrefix(got, "reject: ") || !strings.Contains(got, "HTTP 401") ||
			!strings.Contains(got, "invalid signature") || !strings.Contains(got, "check the instance's appId, key and secret") {
			t.Errorf("%s: %s, want reject with the 401 and what to check", id, got)
		}
	}
	if got, _ := r.received(); len(got) != 0 {
		t.Errorf("the receiver accepted %d events signed with a wrong secret", len(got))
	}
	if len(r.auths) != 1 {
		t.Errorf("%d requests refused, want 1 (one batch)", len(r.auths))
	}
}

func TestStatusOutcomes(t *testing.T) {
	tests := []struct {
		f    forced
		want string // prefix of the outcome, and a part of it
		has  string
	}{
		{forced{code: 403}, "reject: ", "HTTP 403"},
		{forced{code: 413}, "reject: ", "too large"},
		{forced{code: 400}, "reject: ", "HTTP 400"},
		{forced{code: 404}, "reject: ", "HTTP 404"},
		{forced{code: 429, retryAfter: "7"}, "retry: ", "HTTP 429"},
		{forced{code: 500}, "retry: ", "HTTP 500"},
		{forced{code: 503}, "retry: ", "HTTP 503"},
		{forced{code: 408}, "retry: ", "HTTP 408"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.f.code), func(t *testing.T) {
			r := newReceiver(t)
			r.addApp("1001", "k", "s")
			r.force("1001", tt.f)
			s := openSink(t, r, nil)
			a := deliver(t, s, []sdk.Delivery{delivery("x", "shop", "CALL", `{}`, appSettings("1001", "k", "s"))})
			if got := a.outcome("x"); !strings.HasPrefix(got, tt.want) || !strings.Contains(got, tt.has) {
				t.Errorf("HTTP %d: %s, want %s…%s", tt.f.code, got, tt.want, tt.has)
			}
		})
	}
	t.Run("network", func(t *testing.T) {
		r := newReceiver(t)
		s := openSink(t, r, nil)
		r.srv.Close() // nothing listens any more
		a := deliver(t, s, []sdk.Delivery{delivery("x", "shop", "CALL", `{}`, appSettings("1001", "k", "s"))})
		if got := a.outcome("x"); !strings.HasPrefix(got, "retry: ") {
			t.Errorf("receiver down: %s, want retry", got)
		}
	})
}

func TestMediaStrippedToFit(t *testing.T) {
	r := newReceiver(t)
	r.addApp("1001", "k", "s")
	s := openSink(t, r, nil)
	set := appSettings("1001", "k", "s")
	media := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff, 0xd8, 7}, 12<<10)) // 48 KiB of base64
	small := strings.Repeat("A", 800)
	big := strings.Repeat("B", 12<<10)

	t.Run("base64 only", func(t *testing.T) {
		data := `{"key":{"id":"m1"},"message":{"imageMessage":{"caption":"receipt","jpegThumbnail":"` + small + `"},"base64":"` + media + `"},"messageType":"imageMessage"}`
		a := deliver(t, s, []sdk.Delivery{delivery("m1", "shop", "MESSAGES_UPSERT", data, set)})
		if a.outcome("m1") != "ok" {
			t.Fatalf("m1: %s", a.outcome("m1"))
		}
		got := lastData(t, r)
		wantData := `{"key":{"id":"m1"},"message":{"imageMessage":{"caption":"receipt","jpegThumbnail":"` + small + `"},"base64":null},"messageType":"imageMessage"}`
		if !strings.Contains(got, `"data":`+wantData+`,`) {
			t.Errorf("data received:\n%.400s\nwant base64 null and the rest untouched:\n%.400s", got, wantData)
		}
		if !strings.HasSuffix(got, `,"evorelay_truncated":["data.message.base64"]}`) {
			t.Errorf("payload does not end with the truncation mark: …%s", got[max(0, len(got)-120):])
		}
	})
	t.Run("base64 and a large thumbnail", func(t *testing.T) {
		data := `{"key":{"id":"m2"},"message":{"videoMessage":{"jpegThumbnail":"` + big + `","seconds":12},"base64":"` + media + `"}}`
		a := deliver(t, s, []sdk.Delivery{delivery("m2", "shop", "MESSAGES_UPSERT", data, set)})
		if a.outcome("m2") != "ok" {
			t.Fatalf("m2: %s", a.outcome("m2"))
		}
		got := lastData(t, r)
		if !strings.Contains(got, `"data":{"key":{"id":"m2"},"message":{"videoMessage":{"jpegThumbnail":null,"seconds":12},"base64":null}}`) {
			t.Errorf("data received: %.400s", got)
		}
		if !strings.HasSuffix(got, `"evorelay_truncated":["data.message.base64","data.message.videoMessage.jpegThumbnail"]}`) {
			t.Errorf("payload does not list both members: …%s", got[max(0, len(got)-160):])
		}
	})
	t.Run("still too big", func(t *testing.T) {
		_, before := r.received()
		data := `{"key":{"id":"m3"},"message":{"conversation":"` + big + `","base64":"` + media + `"}}`
		a := deliver(t, s, []sdk.Delivery{delivery("m3", "shop", "MESSAGES_UPSERT", data, set)})
		got := a.outcome("m3")
		if !strings.HasPrefix(got, "reject: ") || !strings.Contains(got, "even without data.message.base64") ||
			!strings.Contains(got, "at most 10240 bytes") {
			t.Errorf("m3: %s, want reject saying media was removed and it is still over 10240 bytes", got)
		}
		if _, after := r.received(); len(after) != len(before) {
			t.Errorf("an event over the limit was sent")
		}
	})
	t.Run("too big without media", func(t *testing.T) {
		data := `{"key":{"id":"m4"},"message":{"conversation":"` + big + `"}}`
		a := deliver(t, s, []sdk.Delivery{delivery("m4", "shop", "MESSAGES_UPSERT", data, set)})
		if got := a.outcome("m4"); !strings.HasPrefix(got, "reject: ") || !strings.Contains(got, "no inline media") {
			t.Errorf("m4: %s", got)
		}
	})
}

// lastData is the data of the last event the receiver accepted.
func lastData(t *testing.T, r *receiver) string {
	t.Helper()
	got, _ := r.received()
	if len(got) == 0 {
		t.Fatal("the receiver got nothing")
	}
	if d := got[len(got)-1].Data; len(d) > maxDataBytes {
		t.Fatalf("event data is %d bytes, over Pusher's limit", len(d))
	}
	return got[len(got)-1].Data
}

func TestClientCachedBySettings(t *testing.T) {
	r := newReceiver(t)
	r.addApp("1001", "k", "one")
	s := openSink(t, r, nil)
	if a := deliver(t, s, []sdk.Delivery{delivery("c1", "shop", "CALL", `{}`, appSettings("1001", "k", "one"))}); a.outcome("c1") != "ok" {
		t.Fatalf("c1: %s", a.outcome("c1"))
	}
	if a := deliver(t, s, []sdk.Delivery{delivery("c2", "shop", "CALL", `{}`, appSettings("1001", "k", "one"))}); a.outcome("c2") != "ok" {
		t.Fatalf("c2: %s", a.outcome("c2"))
	}
	if n := len(s.clients); n != 1 {
		t.Errorf("%d clients cached for one app's settings, want 1", n)
	}
	// The secret is rotated at Pusher and then in the settings: the
	// delivery after the change uses a client built with the new secret.
	r.addApp("1001", "k", "two")
	if a := deliver(t, s, []sdk.Delivery{delivery("c3", "shop", "CALL", `{}`, appSettings("1001", "k", "one"))}); !strings.HasPrefix(a.outcome("c3"), "reject: ") {
		t.Fatalf("c3 with the old secret: %s, want reject", a.outcome("c3"))
	}
	if a := deliver(t, s, []sdk.Delivery{delivery("c4", "shop", "CALL", `{}`, appSettings("1001", "k", "two"))}); a.outcome("c4") != "ok" {
		t.Fatalf("c4 with the new secret: %s", a.outcome("c4"))
	}
	if n := len(s.clients); n != 2 {
		t.Errorf("%d clients cached, want 2", n)
	}
	one, two := app{AppID: "1001", Key: "k", Secret: "one", Cluster: "mt1"}, app{AppID: "1001", Key: "k", Secret: "two", Cluster: "mt1"}
	if s.client(one) != s.client(one) || s.client(one) == s.client(two) {
		t.Errorf("clients are not cached by their settings")
	}
}

func TestGlobalApp(t *testing.T) {
	r := newReceiver(t)
	r.addApp("9000", "gk", "gs")
	s := openSink(t, r, map[string]string{"global": "true", "app_id": "9000", "key": "gk", "secret": "gs", "cluster": "eu", "use_tls": "false"})
	noApp := `{"enabled":true,"events":[]}`
	out, err := s.Validate(context.Background(), "shop", json.RawMessage(noApp))
	if err != nil {
		t.Fatalf("settings without an app while a global app is configured: %v", err)
	}
	a := deliver(t, s, []sdk.Delivery{delivery("g1", "shop", "CALL", `{}`, string(out))})
	if a.outcome("g1") != "ok" {
		t.Fatalf("g1: %s", a.outcome("g1"))
	}
	if got, _ := r.received(); len(got) != 1 || got[0].App != "9000" || got[0].Channel != "shop" || got[0].Name != "call" {
		t.Errorf("received %+v, want one call event on channel shop of app 9000", got)
	}
	// Naming an app of its own, the instance must name all of it.
	_, err = s.Validate(context.Background(), "shop", json.RawMessage(`{"enabled":true,"events":[],"appId":"1"}`))
	for _, f := range []string{"key", "secret", "cluster"} {
		sinktest.FieldError(t, err, f, "required")
	}
}

func TestDescribe(t *testing.T) {
	d := New().Describe()
	if d.Name != "pusher" || !slices.Equal(d.SecretFields, []string{"secret"}) {
		t.Errorf("Describe = %+v", d)
	}
}

func newLogger(w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: w, Level: hclog.Debug})
}
