package main

// A receiver of Pusher's HTTP API, written from Pusher's documentation
// ("HTTP API Reference", pusher.com/docs/channels/library_auth_reference/rest-api),
// independently of pusher-http-go: no Pusher server can run here, so the
// tests talk to this one on 127.0.0.1. It authenticates every request as
// Pusher does and refuses a wrong one with 401:
//
//   - auth_key is the app's key, auth_version is 1.0, auth_timestamp is
//     within 600 seconds of now, body_md5 is the hex MD5 of the body;
//   - auth_signature is the hex HMAC-SHA256, keyed with the app's secret,
//     of "POST\n<path>\n<query>", where <query> is every parameter but
//     auth_signature, keys lowercased, sorted by key, joined as k=v with &,
//     not URL-escaped.
//
// It takes POST /apps/{app_id}/events and /apps/{app_id}/batch_events,
// refuses a batch of more than 10 events (400) and event data over 10 KB
// (413), and records what it accepted.

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recvEvent is one event the receiver accepted.
type recvEvent struct {
	App, Channel, Name, Data string
}

// recvCall is one accepted request: its endpoint and how many events.
type recvCall struct {
	Endpoint string // "events" or "batch_events"
	Events   int
}

type recvApp struct{ key, secret string }

type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	apps   map[string]recvApp
	status map[string]forced // app id → an answer instead of accepting
	events []recvEvent
	calls  []recvCall
	auths  []string // the reasons of the 401s it gave
}

// forced is an answer the receiver gives an app's requests once they
// have passed authentication.
type forced struct {
	code       int
	retryAfter string
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{apps: map[string]recvApp{}, status: map[string]forced{}}
	r.srv = httptest.NewServer(r) // listens on 127.0.0.1
	t.Cleanup(r.srv.Close)
	return r
}

// host is the receiver's host:port, for EVORELAY_PUSHER_HOST.
func (r *receiver) host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

func (r *receiver) addApp(id, key, secret string) {
	r.mu.Lock()
	r.apps[id] = recvApp{key: key, secret: secret}
	r.mu.Unlock()
}

func (r *receiver) force(app string, f forced) {
	r.mu.Lock()
	r.status[app] = f
	r.mu.Unlock()
}

func (r *receiver) received() ([]recvEvent, []recvCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recvEvent(nil), r.events...), append([]recvCall(nil), r.calls...)
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != "apps" || (parts[2] != "events" && parts[2] != "batch_events") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if req.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	appID, endpoint := parts[1], parts[2]
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	a, ok := r.apps[appID]
	f, isForced := r.status[appID]
	r.mu.Unlock()
	if !ok {
		http.Error(w, "Unknown app", http.StatusNotFound)
		return
	}
	if err := verifyPusherRequest(req.Method, req.URL.Path, req.URL.RawQuery, body, a.key, a.secret, time.Now()); err != nil {
		r.mu.Lock()
		r.auths = append(r.auths, err.Error())
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if isForced {
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		http.Error(w, "forced by the test", f.code)
		return
	}

	type event struct {
		Name     string   `json:"name"`
		Channel  string   `json:"channel"`
		Channels []string `json:"channels"`
		Data     *string  `json:"data"`
	}
	var evs []event
	if endpoint == "events" {
		var e event
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, "body is not a JSON event: "+err.Error(), http.StatusBadRequest)
			return
		}
		evs = []event{e}
	} else {
		var b struct {
			Batch []event `json:"batch"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			http.Error(w, "body is not a JSON batch: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(b.Batch) == 0 || len(b.Batch) > 10 {
			http.Error(w, fmt.Sprintf("batch of %d events; 1 to 10 allowed", len(b.Batch)), http.StatusBadRequest)
			return
		}
		evs = b.Batch
	}
	var accepted []recvEvent
	for _, e := range evs {
		channels := e.Channels
		if e.Channel != "" {
			channels = append(channels, e.Channel)
		}
		switch {
		case e.Name == "" || e.Data == nil || len(channels) == 0:
			http.Error(w, "an event needs name, data and a channel", http.StatusBadRequest)
			return
		case len(*e.Data) > 10240:
			http.Error(w, fmt.Sprintf("event data is %d bytes; 10240 allowed", len(*e.Data)), http.StatusRequestEntityTooLarge)
			return
		}
		for _, c := range channels {
			accepted = append(accepted, recvEvent{App: appID, Channel: c, Name: e.Name, Data: *e.Data})
		}
	}
	r.mu.Lock()
	r.events = append(r.events, accepted...)
	r.calls = append(r.calls, recvCall{Endpoint: endpoint, Events: len(evs)})
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if endpoint == "batch_events" {
		io.WriteString(w, `{"batch":[`+strings.Repeat(`{},`, len(evs)-1)+`{}]}`)
		return
	}
	io.WriteString(w, `{}`)
}

// verifyPusherRequest authenticates a request to Pusher's HTTP API.
func verifyPusherRequest(method, path, rawQuery string, body []byte, key, secret string, now time.Time) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fmt.Errorf("query string: %v", err)
	}
	params := map[string]string{}
	for k, v := range q {
		if len(v) != 1 {
			return fmt.Errorf("parameter %s given %d times", k, len(v))
		}
		params[strings.ToLower(k)] = v[0]
	}
	for _, k := range []string{"auth_key", "auth_timestamp", "auth_version", "auth_signature"} {
		if params[k] == "" {
			return fmt.Errorf("missing %s", k)
		}
	}
	if params["auth_key"] != key {
		return errors.New("unknown auth_key")
	}
	if params["auth_version"] != "1.0" {
		return fmt.Errorf("auth_version %q; 1.0 expected", params["auth_version"])
	}
	ts, err := strconv.ParseInt(params["auth_timestamp"], 10, 64)
	if err != nil {
		return fmt.Errorf("auth_timestamp %q is not a number", params["auth_timestamp"])
	}
	if d := now.Unix() - ts; d > 600 || d < -600 {
		return fmt.Errorf("timestamp expired: %d seconds from the server's time; 600 allowed", d)
	}
	if len(body) > 0 {
		sum := md5.Sum(body)
		if params["body_md5"] != hex.EncodeToString(sum[:]) {
			return errors.New("body_md5 does not match the body")
		}
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "auth_signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + params[k]
	}
	toSign := method + "\n" + path + "\n" + strings.Join(pairs, "&")
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(toSign))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(params["auth_signature"])) {
		return errors.New("invalid signature: the string to sign was " + strconv.Quote(toSign))
	}
	return nil
}

// TestVerifierWorkedExample checks the receiver's verifier against the
// worked example in Pusher's HTTP API reference, and that it refuses what
// it must.
func TestVerifierWorkedExample(t *testing.T) {
	const (
		key    = "278d425bdf160c739803"
		secret = "7ad3773142a6692b25b8"
		path   = "/apps/3/events"
		query  = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0" +
			"&body_md5=ec365a775a4cd0599faeb73354201b6f" +
			"&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
	)
	body := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	at := time.Unix(1353088179, 0)
	if err := verifyPusherRequest("POST", path, query, body, key, secret, at); err != nil {
		t.Fatalf("the documented request: %v", err)
	}
	tests := []struct {
		name                string
		method, path, query string
		body                []byte
		key, secret         string
		now                 time.Time
		want                string
	}{
		{"wrong secret", "POST", path, query, body, key, "7ad3773142a6692b25b9", at, "invalid signature"},
		{"wrong key", "POST", path, query, body, "other", secret, at, "unknown auth_key"},
		{"body changed", "POST", path, query, []byte(`{"name":"bar"}`), key, secret, at, "body_md5"},
		{"other path", "POST", "/apps/4/events", query, body, key, secret, at, "invalid signature"},
		{"other method", "GET", path, query, body, key, secret, at, "invalid signature"},
		{"ten minutes and a second late", "POST", path, query, body, key, secret, at.Add(601 * time.Second), "timestamp expired"},
		{"no signature", "POST", path, strings.Split(query, "&auth_signature")[0], body, key, secret, at, "missing auth_signature"},
		{"extra parameter", "POST", path, query + "&name=x", body, key, secret, at, "invalid signature"},
		{"old version", "POST", path, strings.Replace(query, "auth_version=1.0", "auth_version=0.9", 1), body, key, secret, at, "auth_version"},
	}
	for _, tt := range tests {
		err := verifyPusherRequest(tt.method, tt.path, tt.query, tt.body, tt.key, tt.secret, tt.now)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
