package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func setWebhook(t *testing.T, s *Sidecar, instance string, settings map[string]any) map[string]any {
	t.Helper()
	return decode(t, s.MustDo(201, "POST", "/webhook/set/"+instance, settings))
}

func event(instance, name string, data string) map[string]any {
	return map[string]any{
		"event": name, "instance": instance, "data": json.RawMessage(data),
		"sender": "5511999999999@s.whatsapp.net", "server_url": "http://engine.local:8080", "apikey": "engine-key",
	}
}

func TestWebhookRoutes(t *testing.T) {
	s := StartSidecar(t, []string{"webhook"})
	recv := newReceiver(t)

	// find before set: 200 null.
	if b := s.MustDo(200, "GET", "/webhook/find/inst1", nil); strings.TrimSpace(string(b)) != "null" {
		t.Fatalf("find unset = %s; want null", b)
	}
	// set, flat seed body, events in both spellings.
	got := setWebhook(t, s, "inst1", map[string]any{
		"url": recv.URL, "enabled": true, "events": []string{"MESSAGES_UPSERT", "connection.update"},
		"webhook_by_events": false, "webhook_base64": false,
	})
	if got["url"] != recv.URL || got["enabled"] != true || fmt.Sprint(got["events"]) != "[MESSAGES_UPSERT CONNECTION_UPDATE]" {
		t.Fatalf("set returned %v", got)
	}
	found := decode(t, s.MustDo(200, "GET", "/webhook/find/inst1", nil))
	if fmt.Sprint(found) != fmt.Sprint(got) {
		t.Fatalf("find = %v; want what set returned %v", found, got)
	}

	// Evolution v2 wrapped body with camelCase names.
	got = setWebhook(t, s, "inst2", map[string]any{"webhook": map[string]any{
		"url": recv.URL, "enabled": true, "events": []string{"messages.upsert"}, "byEvents": true, "base64": true,
	}})
	if got["webhook_by_events"] != true || got["webhook_base64"] != true {
		t.Fatalf("wrapped camelCase set returned %v", got)
	}

	// Secrets are masked in find.
	setWebhook(t, s, "inst3", map[string]any{"url": recv.URL, "enabled": true, "secret": testSecret})
	if f := decode(t, s.MustDo(200, "GET", "/webhook/find/inst3", nil)); f["secret"] == testSecret {
		t.Fatalf("find shows the secret: %v", f)
	}

	// Errors use the envelope and name the problem.
	cases := []struct {
		name, method, path, key string
		body                    any
		status                  int
		mentions                string
	}{
		{"unknown events", "POST", "/webhook/set/inst1", testKey, map[string]any{"url": recv.URL, "enabled": true, "events": []string{"NOPE", "messages.upsert", "ALSO_NOPE"}}, 400, "NOPE"},
		{"bad url", "POST", "/webhook/set/inst1", testKey, map[string]any{"url": "ftp://x", "enabled": true}, 400, "url"},
		{"metadata url", "POST", "/webhook/set/inst1", testKey, map[string]any{"url": "http://169.254.169.254/latest", "enabled": true}, 400, "url"},
		{"malformed json", "POST", "/webhook/set/inst1", testKey, "{", 400, ""},
		{"unknown sink", "GET", "/kafka/find/inst1", testKey, nil, 404, "kafka"},
		{"no key", "GET", "/webhook/find/inst1", "", nil, 401, ""},
		{"wrong key", "GET", "/webhook/find/inst1", "nope", nil, 401, ""},
		{"auth before lookup", "GET", "/kafka/find/inst1", "", nil, 401, ""},
		{"ingest without key", "POST", "/events", "", event("inst1", "MESSAGES_UPSERT", `{}`), 401, ""},
		{"ingest malformed", "POST", "/events", testKey, `[{"event": "messages.upsert"}]`, 400, "instance"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, b := s.DoKey(c.method, c.path, c.body, c.key)
			if code != c.status {
				t.Fatalf("status %d %s; want %d", code, b, c.status)
			}
			var env struct {
				Status   int    `json:"status"`
				Error    string `json:"error"`
				Response struct {
					Message []string `json:"message"`
				} `json:"response"`
			}
			if err := json.Unmarshal(b, &env); err != nil || env.Status != c.status || env.Error != http.StatusText(c.status) || len(env.Response.Message) == 0 {
				t.Fatalf("not the error envelope: %s", b)
			}
			if !strings.Contains(strings.Join(env.Response.Message, " "), c.mentions) {
				t.Fatalf("message %q does not mention %q", env.Response.Message, c.mentions)
			}
		})
	}
	// The failed sets changed nothing.
	if f := decode(t, s.MustDo(200, "GET", "/webhook/find/inst1", nil)); fmt.Sprint(f["events"]) != "[MESSAGES_UPSERT CONNECTION_UPDATE]" {
		t.Fatalf("a refused set changed the settings: %v", f)
	}
	// /healthz needs no key; /plugins lists the webhook.
	if code, _ := s.DoKey("GET", "/healthz", nil, ""); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	if ps := s.Plugins(); len(ps) != 1 || ps[0].Name != "webhook" || ps[0].State != "running" || ps[0].Version == "" {
		t.Fatalf("plugins = %+v", ps)
	}
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestWebhookDeliveryBodyAndHeaders(t *testing.T) {
	for _, naming := range []string{"seed", "evolution"} {
		t.Run(naming, func(t *testing.T) {
			s := StartSidecar(t, []string{"webhook"}, "EVORELAY_NAMING="+naming)
			recv := newReceiver(t)
			setWebhook(t, s, "acme", map[string]any{
				"url": recv.URL + "/hook", "enabled": true, "events": []string{"MESSAGES_UPSERT", "GROUP_PARTICIPANTS_UPDATE"},
				"webhook_by_events": true, "webhook_base64": false, "secret": testSecret,
				"headers": map[string]string{"Authorization": "Bearer crm-token"},
			})
			before := time.Now().UTC().Add(-time.Second)
			s.MustDo(202, "POST", "/events", []any{
				event("acme", "messages.upsert", `{"key":{"id":"M1"},"message":{"conversation":"hi","base64":"QUJD"}}`),
				event("acme", "CONNECTION_UPDATE", `{"state":"open"}`), // not subscribed
				event("acme", "group-participants.update", `{"id":"g1"}`),
			})
			// The events share a lane, so once the last one is here the
			// unsubscribed one between them has been settled.
			eventually(t, 10*time.Second, "2 deliveries", func() bool { return len(recv.Hits()) >= 2 })
			hits := recv.Hits()
			if len(hits) != 2 {
				t.Fatalf("got %d deliveries; want 2 (CONNECTION_UPDATE is not subscribed)", len(hits))
			}
			wantPath := map[string]string{"seed": "/hook/messages_upsert", "evolution": "/hook/messages-upsert"}[naming]
			wantEvent := map[string]string{"seed": "MESSAGES_UPSERT", "evolution": "messages.upsert"}[naming]
			var h hit
			for _, x := range hits {
				if x.Path == wantPath {
					h = x
				}
			}
			if h.Body == nil {
				t.Fatalf("no delivery to %s; got paths %s and %s", wantPath, hits[0].Path, hits[1].Path)
			}
			body := decode(t, h.Body)
			keys := []string{"apikey", "data", "date_time", "destination", "event", "instance", "sender", "server_url"}
			if len(body) != len(keys) {
				t.Fatalf("body keys = %v; want %v", body, keys)
			}
			if body["event"] != wantEvent || body["instance"] != "acme" || body["destination"] != recv.URL+wantPath ||
				body["sender"] != "5511999999999@s.whatsapp.net" || body["server_url"] != "http://engine.local:8080" || body["apikey"] != "engine-key" {
				t.Fatalf("body = %s", h.Body)
			}
			msg := body["data"].(map[string]any)["message"].(map[string]any)
			if _, has := msg["base64"]; has || msg["conversation"] != "hi" {
				t.Fatalf("webhook_base64=false must strip data.message.base64 and keep the rest: %v", msg)
			}
			dt, err := time.Parse("2006-01-02T15:04:05.000Z", body["date_time"].(string))
			if err != nil || dt.Before(before) || dt.After(time.Now().UTC().Add(time.Second)) {
				t.Fatalf("date_time %v is not the acceptance time in UTC with ms and Z (%v)", body["date_time"], err)
			}
			if h.Header.Get("Authorization") != "Bearer crm-token" || !strings.HasPrefix(h.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("headers = %v", h.Header)
			}
			verifySignature(t, h)
		})
	}
}

// verifySignature checks a Standard Webhooks signature as a receiver does.
func verifySignature(t *testing.T, h hit) {
	t.Helper()
	id, ts, sig := h.Header.Get("webhook-id"), h.Header.Get("webhook-timestamp"), h.Header.Get("webhook-signature")
	if id == "" || ts == "" || sig == "" {
		t.Fatalf("signature headers missing: %v", h.Header)
	}
	sec, _ := strconv.ParseInt(ts, 10, 64)
	if d := time.Since(time.Unix(sec, 0)); d < -time.Minute || d > 5*time.Minute {
		t.Fatalf("webhook-timestamp %s is not now", ts)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(testSecret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, h.Body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(sig) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return
		}
	}
	t.Fatalf("webhook-signature %q does not verify (want %q)", sig, want)
}

func TestWebhookBase64Kept(t *testing.T) {
	s := StartSidecar(t, []string{"webhook"})
	recv := newReceiver(t)
	setWebhook(t, s, "media", map[string]any{"url": recv.URL, "enabled": true, "webhook_base64": true})
	blob := strings.Repeat("A", 3<<20) // a 3 MB "video"
	s.MustDo(202, "POST", "/webhook/evolution/media", event("ignored", "MESSAGES_UPSERT", `{"message":{"base64":"`+blob+`"}}`))
	eventually(t, 10*time.Second, "the media delivery", func() bool { return len(recv.Hits()) == 1 })
	body := decode(t, recv.Hits()[0].Body)
	if body["instance"] != "media" {
		t.Fatalf("instance = %v; want the path's", body["instance"])
	}
	if got := body["data"].(map[string]any)["message"].(map[string]any)["base64"]; got != blob {
		t.Fatalf("webhook_base64=true must keep data.message.base64 (got %d chars)", len(fmt.Sprint(got)))
	}
}

func TestApplicationStartup(t *testing.T) {
	s := StartSidecar(t, []string{"webhook"})
	recv := newReceiver(t)
	setWebhook(t, s, "boot", map[string]any{"url": recv.URL, "enabled": true, "events": []string{"APPLICATION_STARTUP"}})
	s.Kill9()
	s.Restart()
	eventually(t, 10*time.Second, "APPLICATION_STARTUP", func() bool { return len(recv.Hits()) >= 1 })
	if b := decode(t, recv.Hits()[0].Body); b["event"] != "APPLICATION_STARTUP" || b["instance"] != "boot" {
		t.Fatalf("got %v", b)
	}
}

// postMany ingests n MESSAGES_UPSERT events for instance, in requests of
// 50, with data {"seq": i}.
func postMany(t *testing.T, s *Sidecar, instance string, n int) {
	t.Helper()
	if err := post(s, instance, n); err != nil {
		t.Fatal(err)
	}
}

// post is postMany for use off the test goroutine.
func post(s *Sidecar, instance string, n int) error {
	for i := 0; i < n; i += 50 {
		var batch []any
		for j := i; j < min(i+50, n); j++ {
			batch = append(batch, event(instance, "MESSAGES_UPSERT", fmt.Sprintf(`{"seq":%d}`, j)))
		}
		if code, b := s.Do("POST", "/events", batch); code != http.StatusAccepted {
			return fmt.Errorf("POST /events = %d %s", code, b)
		}
	}
	return nil
}

// seqs counts the "seq" of every body a receiver got: seq → times.
func seqs(t *testing.T, r *receiver) map[int]int { return seqsOf(t, r.Hits()) }

func seqsOf(t *testing.T, hits []hit) map[int]int {
	out := map[int]int{}
	for _, h := range hits {
		out[seqOf(t, h)]++
	}
	return out
}

// seqOf is the "seq" in a delivered body's data.
func seqOf(t *testing.T, h hit) int {
	var b struct {
		Data struct {
			Seq int `json:"seq"`
		} `json:"data"`
	}
	if err := json.Unmarshal(h.Body, &b); err != nil {
		t.Fatal(err)
	}
	return b.Data.Seq
}

func reportDuplicates(t *testing.T, got map[int]int) {
	dups := 0
	for _, n := range got {
		dups += n - 1
	}
	t.Logf("%d distinct events delivered, %d duplicates (at-least-once)", len(got), dups)
}

func TestHostKill9LosesNothing(t *testing.T) {
	const n = 200
	recv := newReceiver(t)
	recv.SetStatus(http.StatusServiceUnavailable) // the receiver is down: nothing is delivered
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_RETRY_SCHEDULE=0s,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms")
	setWebhook(t, s, "crash", map[string]any{"url": recv.URL, "enabled": true})
	postMany(t, s, "crash", n)
	eventually(t, 10*time.Second, "first attempts", func() bool { return len(recv.Hits()) > 0 })
	s.Kill9()

	recv.SetStatus(http.StatusOK)
	before := len(recv.Hits())
	s.Restart()
	after := func() map[int]int { return seqsOf(t, recv.Hits()[before:]) }
	eventually(t, 30*time.Second, fmt.Sprintf("%d events after restart", n), func() bool { return len(after()) == n })
	reportDuplicates(t, after())
}

func TestPluginKill9LosesNothing(t *testing.T) {
	const n = 500
	recv := newReceiver(t)
	s := StartSidecar(t, []string{"webhook"})
	setWebhook(t, s, "pk", map[string]any{"url": recv.URL, "enabled": true})
	pid := s.PluginPID("webhook")
	if pid == 0 {
		t.Fatal("no webhook plugin pid in /plugins")
	}
	posted := make(chan error, 1)
	go func() { posted <- post(s, "pk", n) }()
	eventually(t, 10*time.Second, "deliveries under way", func() bool { return len(recv.Hits()) > 20 })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-posted; err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, fmt.Sprintf("all %d events", n), func() bool { return len(seqs(t, recv)) == n })
	reportDuplicates(t, seqs(t, recv))
	eventually(t, 10*time.Second, "the restart in /plugins", func() bool {
		ps := s.Plugins()
		return ps[0].Restarts >= 1 && ps[0].State == "running" && ps[0].PID != pid
	})
}
