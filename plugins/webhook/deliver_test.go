package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
)

// TestBodyGolden checks the exact body a receiver gets, in both naming
// modes: field order, event spelling, data as the engine's bytes (escapes,
// spacing and <&> untouched), server_url from EVORELAY_SERVER_URL when the
// engine sent none, and null for what it did not send.
func TestBodyGolden(t *testing.T) {
	for _, tc := range []struct {
		naming events.Naming
		golden string
	}{
		{events.NamingSeed, "body_seed.json"},
		{events.NamingEvolution, "body_evolution.json"},
	} {
		t.Run(tc.naming.String(), func(t *testing.T) {
			rc := newReceiver(t, nil)
			s := openSink(t, nil, tc.naming)
			set := settings(t, s, `{"url":"`+rc.URL+`/hook?tenant=a&b=1","enabled":true,"events":[]}`)
			if err := deliver(t, s, delivery("d-1", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["d-1"]; err != nil {
				t.Fatalf("outcome: %v", err)
			}
			got := rc.one(t)
			if got.method != http.MethodPost || got.path != "/hook" || got.query != "tenant=a&b=1" {
				t.Errorf("request %s %s?%s, want POST /hook?tenant=a&b=1", got.method, got.path, got.query)
			}
			body := bytes.ReplaceAll(got.body, []byte(rc.URL), []byte("{{RECEIVER}}"))
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, append(body, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, bytes.TrimSuffix(want, []byte("\n"))) {
				t.Errorf("body:\n%s\nwant (%s):\n%s", body, path, want)
			}
			if !json.Valid(got.body) {
				t.Errorf("body is not JSON")
			}
		})
	}
}

// TestByEvents checks the path a by-events webhook posts to, and that
// destination in the body is that URL.
func TestByEvents(t *testing.T) {
	for _, tc := range []struct {
		naming    events.Naming
		event     string
		url       string // after the receiver's address
		wantPath  string
		wantQuery string
	}{
		{events.NamingSeed, "MESSAGES_UPSERT", "/hook", "/hook/messages_upsert", ""},
		{events.NamingEvolution, "MESSAGES_UPSERT", "/hook", "/hook/messages-upsert", ""},
		{events.NamingSeed, "GROUP_PARTICIPANTS_UPDATE", "/hook", "/hook/group_participants_update", ""},
		{events.NamingEvolution, "GROUP_PARTICIPANTS_UPDATE", "/hook", "/hook/group-participants-update", ""},
		{events.NamingEvolution, "GROUP_UPDATE", "/hook", "/hook/groups-update", ""},
		{events.NamingSeed, "CONNECTION_UPDATE", "/hook/?k=v", "/hook/connection_update", "k=v"},
		{events.NamingEvolution, "QRCODE_UPDATED", "", "/qrcode-updated", ""},
	} {
		t.Run(tc.naming.String()+"/"+tc.event+"/"+tc.url, func(t *testing.T) {
			rc := newReceiver(t, nil)
			s := openSink(t, nil, tc.naming)
			set := settings(t, s, `{"url":"`+rc.URL+tc.url+`","enabled":true,"events":[],"byEvents":true}`)
			env := []byte(`{"event":"` + tc.event + `","instance":"shop-1","data":{}}`)
			if err := deliver(t, s, delivery("d-1", tc.event, env, set))["d-1"]; err != nil {
				t.Fatalf("outcome: %v", err)
			}
			got := rc.one(t)
			if got.path != tc.wantPath || got.query != tc.wantQuery {
				t.Errorf("posted to %s?%s, want %s?%s", got.path, got.query, tc.wantPath, tc.wantQuery)
			}
			var b struct{ Event, Destination string }
			if err := json.Unmarshal(got.body, &b); err != nil {
				t.Fatal(err)
			}
			wantDest := rc.URL + tc.wantPath
			if tc.wantQuery != "" {
				wantDest += "?" + tc.wantQuery
			}
			if b.Destination != wantDest {
				t.Errorf("destination %q, want %q", b.Destination, wantDest)
			}
			if want := tc.naming.Name(tc.event); b.Event != want {
				t.Errorf("event %q, want %q", b.Event, want)
			}
		})
	}
}

// TestHeaders checks what headers a receiver gets without a secret: JSON,
// the settings' headers, the delivery id and no signature.
func TestHeaders(t *testing.T) {
	rc := newReceiver(t, nil)
	s := openSink(t, nil, events.NamingSeed)
	set := settings(t, s, `{"url":"`+rc.URL+`","enabled":true,"events":[],
		"headers":{"Authorization":"Bearer t0k","x-tenant":"acme","User-Agent":"my-agent/1"}}`)
	if err := deliver(t, s, delivery("d-7", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["d-7"]; err != nil {
		t.Fatalf("outcome: %v", err)
	}
	h := rc.one(t).header
	for name, want := range map[string]string{
		"Content-Type":  "application/json",
		"Authorization": "Bearer t0k",
		"X-Tenant":      "acme",
		"User-Agent":    "my-agent/1",
		"Webhook-Id":    "d-7",
	} {
		if got := h.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %q, want [%q]", name, got, want)
		}
	}
	for _, name := range []string{"Webhook-Timestamp", "Webhook-Signature"} {
		if got := h.Values(name); len(got) != 0 {
			t.Errorf("%s: %q without a secret, want none", name, got)
		}
	}
}

// TestDeliveryIDStable: a retry carries the same webhook-id.
func TestDeliveryIDStable(t *testing.T) {
	rc := newReceiver(t, nil)
	s := openSink(t, nil, events.NamingSeed)
	set := settings(t, s, `{"url":"`+rc.URL+`","enabled":true,"events":[]}`)
	d := delivery("evt-42", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set)
	deliver(t, s, d)
	d.Attempt = 2
	deliver(t, s, d)
	first, second := rc.one(t), rc.one(t)
	if first.header.Get("Webhook-Id") != "evt-42" || second.header.Get("Webhook-Id") != "evt-42" {
		t.Errorf("webhook-id %q then %q, want evt-42 both times", first.header.Get("Webhook-Id"), second.header.Get("Webhook-Id"))
	}
}

// verifyStandardWebhook checks a request as a Standard Webhooks receiver
// does: decode the secret, HMAC-SHA256 over id.timestamp.body, compare
// each v1 signature in constant time, refuse a timestamp out of tolerance.
func verifyStandardWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %v", ts, err)
	}
	const tolerance = 5 * time.Minute
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("timestamp %s is %v away", ts, d)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(sigs) {
		version, value, _ := strings.Cut(sig, ",")
		got, err := base64.StdEncoding.DecodeString(value)
		if version == "v1" && err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

func TestSignature(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	rc := newReceiver(t, nil)
	s := openSink(t, nil, events.NamingSeed)
	set := settings(t, s, `{"url":"`+rc.URL+`","enabled":true,"events":[],"secret":"`+secret+`","headers":{"X-A":"b"}}`)
	if err := deliver(t, s, delivery("msg_1", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["msg_1"]; err != nil {
		t.Fatalf("outcome: %v", err)
	}
	got := rc.one(t)
	now := time.Now()
	if err := verifyStandardWebhook(secret, got.header, got.body, now); err != nil {
		t.Fatalf("the receiver refuses the delivery: %v", err)
	}
	if got.header.Get("X-A") != "b" {
		t.Errorf("custom header lost with a secret")
	}
	// The verifier is not a yes-man.
	tampered := bytes.Replace(got.body, []byte("shop-1"), []byte("shop-2"), 1)
	if verifyStandardWebhook(secret, got.header, tampered, now) == nil {
		t.Error("the verifier accepts a tampered body")
	}
	if verifyStandardWebhook("whsec_"+base64.StdEncoding.EncodeToString(make([]byte, 24)), got.header, got.body, now) == nil {
		t.Error("the verifier accepts another secret")
	}
	if verifyStandardWebhook(secret, got.header, got.body, now.Add(10*time.Minute)) == nil {
		t.Error("the verifier accepts a stale timestamp")
	}
}

// TestSignatureVector checks signature against the example the Standard
// Webhooks documentation publishes.
func TestSignatureVector(t *testing.T) {
	key, err := decodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("signature %s, want %s", got, want)
	}
}

// TestOutcomes checks what every class of answer becomes, as the host is
// told it.
func TestOutcomes(t *testing.T) {
	now := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if ra := r.URL.Query().Get("retry_after"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		if loc := r.URL.Query().Get("location"); loc != "" {
			w.Header().Set("Location", loc)
		}
		w.WriteHeader(code)
		fmt.Fprint(w, r.URL.Query().Get("say"))
	})
	s := openSink(t, nil, events.NamingSeed)
	s.now = func() time.Time { return now }

	for _, tc := range []struct {
		path        string
		want        verdict
		inReason    []string
		notInReason string
	}{
		{"/200", verdict{kind: "ok"}, nil, ""},
		{"/201", verdict{kind: "ok"}, nil, ""},
		{"/204", verdict{kind: "ok"}, nil, ""},
		{"/400?say=" + url.QueryEscape(`{"error": "missing field x"}`), verdict{kind: "reject"}, []string{"400 Bad Request", "missing field x", "/400"}, "say="},
		{"/404", verdict{kind: "reject"}, []string{"404 Not Found"}, ""},
		{"/422?say=" + url.QueryEscape(strings.Repeat("long ", 500)), verdict{kind: "reject"}, []string{"422", "long long", "…"}, strings.Repeat("long ", 300)},
		{"/301?location=/elsewhere", verdict{kind: "reject"}, []string{"301", "/elsewhere", "redirect"}, ""},
		{"/408", verdict{kind: "retry"}, []string{"408 Request Timeout"}, ""},
		{"/410?say=gone", verdict{kind: "reject", disable: true}, []string{"410 Gone", "gone"}, ""},
		{"/429?retry_after=120", verdict{kind: "retry", after: 120 * time.Second}, []string{"429 Too Many Requests"}, ""},
		{"/429?retry_after=" + url.QueryEscape(now.Add(90*time.Second).Format(http.TimeFormat)), verdict{kind: "retry", after: 90 * time.Second}, nil, ""},
		{"/429?retry_after=" + url.QueryEscape(now.Add(-time.Hour).Format(http.TimeFormat)), verdict{kind: "retry", after: 30 * time.Second}, nil, ""},
		{"/429?retry_after=soon", verdict{kind: "retry", after: 30 * time.Second}, nil, ""},
		{"/429?retry_after=5", verdict{kind: "retry", after: 30 * time.Second}, nil, ""},
		{"/429", verdict{kind: "retry", after: 30 * time.Second}, nil, ""},
		{"/503?retry_after=99999999999", verdict{kind: "retry", after: maxRetryAfter}, nil, ""},
		{"/500?say=boom", verdict{kind: "retry"}, []string{"500 Internal Server Error", "boom"}, ""},
		{"/503?retry_after=7", verdict{kind: "retry", after: 7 * time.Second}, []string{"503 Service Unavailable"}, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			set := settings(t, s, `{"url":"`+rc.URL+tc.path+`","enabled":true,"events":[]}`)
			err := deliver(t, s, delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["d"]
			rc.one(t)
			if got := verdictOf(err); got != tc.want {
				t.Errorf("outcome %+v (%v), want %+v", got, err, tc.want)
			}
			for _, part := range tc.inReason {
				if err == nil || !strings.Contains(err.Error(), part) {
					t.Errorf("reason %q does not say %q", err, part)
				}
			}
			if tc.notInReason != "" && err != nil && strings.Contains(err.Error(), tc.notInReason) {
				t.Errorf("reason %q says %q", err, tc.notInReason)
			}
		})
	}
}

// TestNetworkFailures: no receiver, or one that does not answer in time,
// is retried.
func TestNetworkFailures(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		s := openSink(t, nil, events.NamingSeed)
		set := settings(t, s, `{"url":"http://`+addr+`/hook","enabled":true,"events":[]}`)
		err = deliver(t, s, delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["d"]
		if v := verdictOf(err); v.kind != "retry" || !strings.Contains(err.Error(), "refused") {
			t.Errorf("outcome %+v (%v), want a retry saying refused", v, err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
			select {
			case <-r.Context().Done():
			case <-done:
			}
		})
		s := openSink(t, map[string]string{"timeout": "300ms"}, events.NamingSeed)
		set := settings(t, s, `{"url":"`+rc.URL+`/slow?token=secret-token","enabled":true,"events":[]}`)
		err := deliver(t, s, delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["d"]
		if v := verdictOf(err); v.kind != "retry" || !strings.Contains(err.Error(), "no answer within 300ms") {
			t.Errorf("outcome %+v (%v), want a retry saying no answer within 300ms", v, err)
		}
		if strings.Contains(err.Error(), "secret-token") {
			t.Errorf("reason %q repeats the URL's query", err)
		}
	})
	t.Run("refused address", func(t *testing.T) {
		// Settings stored before the policy (or by hand) reach the dialer's
		// check, which refuses before connecting: no packet leaves.
		s := openSink(t, nil, events.NamingSeed)
		set := json.RawMessage(`{"url":"http://169.254.169.254/latest/meta-data","enabled":true,"events":[]}`)
		err := deliver(t, s, delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["d"]
		if v := verdictOf(err); v.kind != "reject" || !strings.Contains(err.Error(), "metadata") {
			t.Errorf("outcome %+v (%v), want a reject naming the metadata address", v, err)
		}
	})
}

// TestMalformed: what the sink cannot make sense of is dead-lettered.
func TestMalformed(t *testing.T) {
	s := openSink(t, nil, events.NamingSeed)
	good := settings(t, s, `{"url":"http://127.0.0.1:1/hook","enabled":true,"events":[]}`)
	for name, d := range map[string]sdk.Delivery{
		"envelope":       delivery("d", "MESSAGES_UPSERT", []byte(`{"event":`), good),
		"envelope type":  delivery("d", "MESSAGES_UPSERT", []byte(`[1,2]`), good),
		"settings":       delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), []byte(`"x"`)),
		"no url":         delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), []byte(`{"enabled":true}`)),
		"bad secret":     delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), []byte(`{"url":"http://127.0.0.1:1/","secret":"x"}`)),
		"no event":       {ID: "d", Envelope: []byte(`{"data":{}}`), Settings: good},
		"invalid scheme": delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), []byte(`{"url":"ftp://127.0.0.1/"}`)),
	} {
		t.Run(name, func(t *testing.T) {
			err := deliver(t, s, d)["d"]
			if v := verdictOf(err); v.kind != "reject" {
				t.Errorf("outcome %+v (%v), want reject", v, err)
			}
			if err != nil && strings.Contains(err.Error(), `"x"`) && name == "bad secret" {
				t.Errorf("reason repeats the secret: %v", err)
			}
		})
	}
}

// TestHangingReceiverDoesNotDelay: in one batch, a delivery of one
// instance to a receiver that never answers does not hold back another
// instance's delivery: the second is acknowledged while the first waits.
func TestHangingReceiverDoesNotDelay(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	hanging := newReceiver(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		close(entered)
		select {
		case <-release:
		case <-done:
		}
	})
	fast := newReceiver(t, nil)
	// a timeout far beyond the guard below, so it cannot rescue a sink
	// that sends one after the other
	s := openSink(t, map[string]string{"timeout": "10m"}, events.NamingSeed)
	env := envelope(t, "envelope.json")
	other := delivery("fast", "MESSAGES_UPSERT", env, settings(t, s, `{"url":"`+fast.URL+`","enabled":true,"events":[]}`))
	other.Instance = "shop-2"
	batch := []sdk.Delivery{
		delivery("slow", "MESSAGES_UPSERT", env, settings(t, s, `{"url":"`+hanging.URL+`","enabled":true,"events":[]}`)),
		other,
	}
	acks := newAcks(2)
	returned := make(chan error, 1)
	go func() { returned <- s.Deliver(context.Background(), batch, acks) }()

	guard := time.After(time.Minute) // a failure guard, not a measurement
	select {
	case <-entered:
	case <-guard:
		t.Fatal("the hanging receiver never got its request")
	}
	select {
	case a := <-acks.ch:
		if a.id != "fast" || a.err != nil {
			t.Fatalf("first ack %s (%v), want fast delivered", a.id, a.err)
		}
	case <-guard:
		t.Fatal("the fast delivery was not acknowledged while the other hangs")
	}
	select {
	case <-returned:
		t.Fatal("Deliver returned with a delivery still in flight")
	default:
	}
	close(release)
	if a := <-acks.ch; a.id != "slow" || a.err != nil {
		t.Errorf("second ack %s (%v), want slow delivered", a.id, a.err)
	}
	if err := <-returned; err != nil {
		t.Errorf("Deliver: %v", err)
	}
}

// TestInstanceOrder: one instance's deliveries reach the receiver in the
// batch's order, the next only once the previous one is answered.
func TestInstanceOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	inFlight := 0
	recv := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		mu.Lock()
		inFlight++
		if inFlight > 1 {
			t.Errorf("two deliveries of one instance at the receiver at once")
		}
		got = append(got, r.Header.Get("webhook-id"))
		mu.Unlock()
		time.Sleep(time.Millisecond) // give a concurrent sender the chance to overlap
		mu.Lock()
		inFlight--
		mu.Unlock()
	})
	s := openSink(t, nil, events.NamingSeed)
	env := envelope(t, "envelope.json")
	set := settings(t, s, `{"url":"`+recv.URL+`","enabled":true,"events":[]}`)
	var batch []sdk.Delivery
	var want []string
	for i := range 20 {
		id := fmt.Sprintf("d%02d", i)
		batch = append(batch, delivery(id, "MESSAGES_UPSERT", env, set))
		want = append(want, id)
	}
	for id, err := range deliver(t, s, batch...) {
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("receiver order %v; want %v", got, want)
	}
}

// TestLimiter: a host at its bound does not take the slots of another, a
// request waiting for its host holds no shared slot, and the bookkeeping
// empties.
func TestLimiter(t *testing.T) {
	l := newLimiter(1, 2)
	bg := context.Background()
	canceled, cancel := context.WithCancel(bg)
	cancel()

	relA, err := l.acquire(bg, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.acquire(canceled, "a"); err == nil {
		t.Fatal("a second request to a host at its bound did not wait")
	}
	relB, err := l.acquire(bg, "b")
	if err != nil {
		t.Fatalf("another host is held back by a host at its bound: %v", err)
	}
	if _, err := l.acquire(canceled, "c"); err == nil {
		t.Fatal("a request beyond the shared bound did not wait")
	}
	relA()
	relA2, err := l.acquire(bg, "a")
	if err != nil {
		t.Fatal(err)
	}
	relA2()
	relB()
	if n := len(l.hosts); n != 0 {
		t.Errorf("%d hosts still tracked after every release", n)
	}
	if n := len(l.all); n != 0 {
		t.Errorf("%d shared slots still held after every release", n)
	}
}

func TestHealth(t *testing.T) {
	if h := New().Health(context.Background()); !h.Ready {
		t.Errorf("Health %+v, want ready", h)
	}
}

// internalServer is a server on 127.0.0.2, loopback that the tests' policy
// (allow 127.0.0.1/32 only) refuses: what an attacker would like to read.
func internalServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	hits := new(atomic.Int32)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "internal secret")
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, hits
}

// TestEgressPolicyAtDialTime: deliveries and media fetches dial only where
// the policy allows, checked on the address a connection is made to:
// a receiver on refused loopback gets nothing, and a mediaUrl on it (or
// redirecting to it from an allowed server) is not read back into the
// webhook's body.
func TestEgressPolicyAtDialTime(t *testing.T) {
	internal, hits := internalServer(t)
	rc := newReceiver(t, nil) // on 127.0.0.1, which the policy allows
	s := openSinkWith(t, nil, events.NamingSeed, policy(t, "127.0.0.1/32", ""))

	t.Run("delivery", func(t *testing.T) {
		// stored as it would have been before the policy, or by hand
		set := json.RawMessage(`{"url":"` + internal.URL + `/hook","enabled":true,"events":[]}`)
		err := deliver(t, s, delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["d"]
		if v := verdictOf(err); v.kind != "reject" || !strings.Contains(err.Error(), "EVORELAY_EGRESS_ALLOW") {
			t.Errorf("outcome %+v (%v), want a reject naming EVORELAY_EGRESS_ALLOW", v, err)
		}
	})
	redirector := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		http.Redirect(w, r, internal.URL+"/latest/meta-data", http.StatusFound)
	})
	for name, mediaURL := range map[string]string{
		"media fetch":              internal.URL + "/secret.jpg",
		"media fetch via redirect": redirector.URL + "/photo.jpg",
	} {
		t.Run(name, func(t *testing.T) {
			set := settings(t, s, `{"url":"`+rc.URL+`/hook","enabled":true,"events":[],"webhook_base64":true}`)
			err := deliver(t, s, delivery("d", "MESSAGES_UPSERT", mediaEnvelope(mediaURL), set))["d"]
			if err != nil {
				t.Fatalf("outcome %v, want delivered without the media", err)
			}
			body := rc.one(t).body
			if strings.Contains(string(body), base64.StdEncoding.EncodeToString([]byte("internal secret"))) || strings.Contains(string(body), `"base64"`) {
				t.Errorf("the webhook got the internal response: %s", body)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the internal server got %d requests, want none", n)
	}
}

// TestPublicOnlyAtDialTime: settings a scoped key set (public_only) are
// refused a private address when dialed, whatever the name resolved to at
// set time; the same URL set by the admin is dialed.
func TestPublicOnlyAtDialTime(t *testing.T) {
	s := openSinkWith(t, nil, events.NamingSeed, egress.Policy{})
	// nothing is sent: the check runs before the connection is made
	set := json.RawMessage(`{"url":"http://10.255.255.1:9/hook","enabled":true,"events":[],"public_only":true}`)
	err := deliver(t, s, delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["d"]
	if v := verdictOf(err); v.kind != "reject" || !strings.Contains(err.Error(), "private") {
		t.Errorf("outcome %+v (%v), want a reject saying private", v, err)
	}

	rc := newReceiver(t, nil)
	allowed := openSinkWith(t, nil, events.NamingSeed, policy(t, "127.0.0.1/32", ""))
	set = json.RawMessage(`{"url":"` + rc.URL + `/hook","enabled":true,"events":[],"public_only":true}`)
	if err := deliver(t, allowed, delivery("d", "MESSAGES_UPSERT", envelope(t, "envelope.json"), set))["d"]; err != nil {
		t.Errorf("public_only to an address the operator allows: %v", err)
	}
	rc.one(t)
}
