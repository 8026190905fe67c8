package e2e

// End-to-end tests of the SQS and Pusher sinks: the built host and plugin,
// driven over HTTP, observed as a consumer would observe them. SQS is a
// real goaws (an SQS server speaking the query protocol) started by the
// test on a free loopback port; a goaws that cannot start fails the test.
// Pusher has no server that can run here, so the tests use a receiver of
// Pusher's HTTP API that authenticates each request as Pusher documents
// it and refuses a wrong signature with 401.

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// ---- SQS ------------------------------------------------------------------

const goawsVersion = "v0.4.5"

// goawsBinary is the goaws executable: EVORELAY_GOAWS, or the one in
// $(go env GOPATH)/bin/goaws-v0.4.5/, installed there when missing.
func goawsBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("EVORELAY_GOAWS"); p != "" {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env GOPATH: %v", err)
	}
	gopath := strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0]
	dir := filepath.Join(gopath, "bin", "goaws-"+goawsVersion)
	bin := filepath.Join(dir, "cmd")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "install", "github.com/Admiral-Piett/goaws/app/cmd@"+goawsVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	cmd.Dir = os.TempDir() // outside this module
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("goaws %s is not installed and go install failed: %v\n%s", goawsVersion, err, b)
	}
	return bin
}

// startGoaws runs goaws on a free loopback port until the test ends and
// returns its endpoint. It fails the test if goaws does not answer.
func startGoaws(t *testing.T) string {
	t.Helper()
	bin := goawsBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	// EnableDuplicates makes goaws drop a repeated MessageDeduplicationId.
	conf := fmt.Sprintf("Local:\n  Host: 127.0.0.1\n  Port: %q\n  AccountId: \"100010001000\"\n  EnableDuplicates: true\n"+
		"  QueueAttributeDefaults:\n    VisibilityTimeout: 30\n    ReceiveMessageWaitTimeSeconds: 0\n", port)
	confPath := filepath.Join(dir, "goaws.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "-config", confPath, "Local")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start goaws %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			tail := logs.String()
			if len(tail) > 4000 {
				tail = "…" + tail[len(tail)-4000:]
			}
			t.Logf("goaws log:\n%s", tail)
		}
	})
	endpoint := "http://" + addr
	eventually(t, 30*time.Second, "goaws to answer on "+endpoint, func() bool {
		select {
		case <-exited:
			t.Fatalf("goaws exited at start-up:\n%s", logs.String())
		default:
		}
		resp, err := http.Get(endpoint + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return endpoint
}

// sqsReader is a plain SQS client the tests read queues with.
type sqsReader struct {
	t *testing.T
	c *sqs.Client
}

func newSQSReader(t *testing.T, endpoint string) *sqsReader {
	return &sqsReader{t: t, c: sqs.New(sqs.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("x", "x", ""),
		BaseEndpoint: aws.String(endpoint),
	})}
}

func sqsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// queueURL looks a queue up; "" when it does not exist. Any other error
// fails the test: it must not pass for an absent queue.
func (r *sqsReader) queueURL(name string) string {
	r.t.Helper()
	out, err := r.c.GetQueueUrl(sqsCtx(r.t), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	var missing *types.QueueDoesNotExist
	switch {
	case errors.As(err, &missing) || err != nil && strings.Contains(err.Error(), "NonExistentQueue"):
		return ""
	case err != nil:
		r.t.Fatalf("GetQueueUrl %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// takeOne receives one message from a queue and deletes it; nil when the
// queue has none. One at a time: goaws hides a FIFO group's later messages
// from a receive of more than one.
func (r *sqsReader) takeOne(queueURL string) *types.Message {
	r.t.Helper()
	ctx := sqsCtx(r.t)
	out, err := r.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 1, WaitTimeSeconds: 0,
	})
	if err != nil {
		r.t.Fatalf("ReceiveMessage from %s: %v", queueURL, err)
	}
	if len(out.Messages) == 0 {
		return nil
	}
	m := out.Messages[0]
	if _, err := r.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
		r.t.Fatalf("DeleteMessage from %s: %v", queueURL, err)
	}
	return &m
}

// await takes messages from a queue, in order, until it has n; then it
// fails if the queue holds more.
func (r *sqsReader) await(queue string, n int) []string {
	r.t.Helper()
	u := r.queueURL(queue)
	if u == "" {
		r.t.Fatalf("queue %s does not exist", queue)
	}
	var bodies []string
	eventually(r.t, time.Minute, fmt.Sprintf("%d messages in %s", n, queue), func() bool {
		if m := r.takeOne(u); m != nil {
			bodies = append(bodies, aws.ToString(m.Body))
		}
		return len(bodies) >= n
	})
	if m := r.takeOne(u); m != nil {
		r.t.Fatalf("%s holds more than %d messages; extra: %s", queue, n, aws.ToString(m.Body))
	}
	return bodies
}

func sqsEnv(endpoint string) []string {
	return []string{
		"EVORELAY_SQS_REGION=us-east-1",
		"EVORELAY_SQS_ENDPOINT=" + endpoint,
		"EVORELAY_SQS_ACCESS_KEY_ID=x",
		"EVORELAY_SQS_SECRET_ACCESS_KEY=x",
	}
}

// An instance's subscribed events reach their FIFO queues, one queue per
// event, as the envelope byte for byte and in the order accepted; an
// event it does not subscribe to is never sent (its queue is never even
// created).
func TestSQSThroughHost(t *testing.T) {
	endpoint := startGoaws(t)
	for _, naming := range []string{"seed", "evolution"} {
		t.Run(naming, func(t *testing.T) {
			r := newSQSReader(t, endpoint)
			inst := uniqueName("e2e-sqs")
			upsertQ, groupQ, connQ := inst+"_messages_upsert.fifo", inst+"_group_participants_update.fifo", inst+"_connection_update.fifo"
			s := StartSidecar(t, []string{"sqs"}, append(sqsEnv(endpoint), "EVORELAY_NAMING="+naming)...)

			got := setSink(t, s, "sqs", inst, map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT", "GROUP_PARTICIPANTS_UPDATE"}})
			if got["enabled"] != true || fmt.Sprint(got["events"]) != "[MESSAGES_UPSERT GROUP_PARTICIPANTS_UPDATE]" {
				t.Fatalf("set returned %v", got)
			}
			if f := decode(t, s.MustDo(200, "GET", "/sqs/find/"+inst, nil)); fmt.Sprint(f) != fmt.Sprint(got) {
				t.Fatalf("find = %v; want what set returned %v", f, got)
			}
			// Enabling creates the queues, so a consumer can subscribe
			// before the first event.
			for _, q := range []string{upsertQ, groupQ} {
				if r.queueURL(q) == "" {
					t.Fatalf("queue %s does not exist once set answered", q)
				}
			}

			since := time.Now()
			evs := []map[string]any{
				event(inst, "messages.upsert", `{"key":{"id":"M1"},"message":{"conversation":"hi \u00e9 \"q\""}}`),
				event(inst, "CONNECTION_UPDATE", `{"state":"open"}`), // not subscribed
				event(inst, "group-participants.update", `{"id":"120363@g.us","participants":["5511@s.whatsapp.net"],"action":"add"}`),
				event(inst, "MESSAGES_UPSERT", `{"key":{"id":"M2"}}`),
			}
			mustIngest(t, s, evs[0], evs[1], evs[2], evs[3])
			// A later request's event: the plugin runs an instance's
			// batches one after the other, so once it is in the queue the
			// plugin is done with everything before it.
			evs = append(evs, event(inst, "MESSAGES_UPSERT", `{"key":{"id":"M3"}}`))
			mustIngest(t, s, evs[4])

			upserts := r.await(upsertQ, 3)
			for i, want := range []int{0, 3, 4} {
				checkEnvelope(t, []byte(upserts[i]), evs[want], eventName(naming, "MESSAGES_UPSERT"), since)
			}
			groups := r.await(groupQ, 1)
			checkEnvelope(t, []byte(groups[0]), evs[2], eventName(naming, "GROUP_PARTICIPANTS_UPDATE"), since)
			// The sink creates a missing queue on first use: had the
			// unsubscribed event been sent, its queue would exist.
			if u := r.queueURL(connQ); u != "" {
				m := r.takeOne(u)
				t.Fatalf("queue %s exists for an event %s does not subscribe to (holding %v)", connQ, inst, m != nil)
			}
			noDeadLetters(t, s, "sqs", inst)
		})
	}
}

// ---- Pusher ---------------------------------------------------------------

// pusherEvent is one event the receiver accepted.
type pusherEvent struct{ App, Channel, Name, Data string }

// pusherRecv is a receiver of Pusher's HTTP API (POST /apps/{id}/events
// and /apps/{id}/batch_events) for one app; a request that does not
// authenticate with its key and secret is answered 401.
type pusherRecv struct {
	URL                string
	appID, key, secret string

	mu       sync.Mutex
	events   []pusherEvent
	refusals []string // why each 401 was given
}

func newPusherRecv(t *testing.T, appID, key, secret string) *pusherRecv {
	r := &pusherRecv{appID: appID, key: key, secret: secret}
	srv := httptest.NewServer(r) // on 127.0.0.1
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Host is host:port, for EVORELAY_PUSHER_HOST.
func (r *pusherRecv) Host() string { return strings.TrimPrefix(r.URL, "http://") }

func (r *pusherRecv) Events() []pusherEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pusherEvent(nil), r.events...)
}

func (r *pusherRecv) Refusals() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.refusals...)
}

func (r *pusherRecv) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	app, endpoint, ok := strings.Cut(strings.TrimPrefix(req.URL.Path, "/apps/"), "/")
	if req.Method != http.MethodPost || !strings.HasPrefix(req.URL.Path, "/apps/") || (endpoint != "events" && endpoint != "batch_events") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if !ok || app != r.appID {
		http.Error(w, "unknown app", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := pusherAuth(req.URL.Path, req.URL.RawQuery, body, r.key, r.secret); err != nil {
		r.mu.Lock()
		r.refusals = append(r.refusals, err.Error())
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	type ev struct {
		Name     string   `json:"name"`
		Channel  string   `json:"channel"`
		Channels []string `json:"channels"`
		Data     *string  `json:"data"`
	}
	var evs []ev
	if endpoint == "events" {
		var e ev
		err = json.Unmarshal(body, &e)
		evs = []ev{e}
	} else {
		var b struct {
			Batch []ev `json:"batch"`
		}
		err = json.Unmarshal(body, &b)
		evs = b.Batch
		if err == nil && (len(evs) == 0 || len(evs) > 10) {
			err = fmt.Errorf("batch of %d events; 1 to 10 allowed", len(evs))
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []pusherEvent
	for _, e := range evs {
		chans := e.Channels
		if e.Channel != "" {
			chans = append(chans, e.Channel)
		}
		if e.Name == "" || e.Data == nil || len(chans) == 0 {
			http.Error(w, "an event needs name, data and a channel", http.StatusBadRequest)
			return
		}
		for _, c := range chans {
			got = append(got, pusherEvent{App: app, Channel: c, Name: e.Name, Data: *e.Data})
		}
	}
	r.mu.Lock()
	r.events = append(r.events, got...)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}")
}

// pusherAuth checks a request as Pusher's HTTP API reference says: the
// app's auth_key, auth_version 1.0, auth_timestamp within 600 s, body_md5
// the hex MD5 of the body, and auth_signature the hex HMAC-SHA256, keyed
// with the secret, of "POST\n<path>\n<every other parameter, lowercased
// keys, sorted, k=v joined with &>".
func pusherAuth(path, rawQuery string, body []byte, key, secret string) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fmt.Errorf("query: %v", err)
	}
	params := map[string]string{}
	for k, v := range q {
		if len(v) != 1 {
			return fmt.Errorf("%s given %d times", k, len(v))
		}
		params[strings.ToLower(k)] = v[0]
	}
	if params["auth_key"] != key {
		return fmt.Errorf("auth_key %q is not the app's", params["auth_key"])
	}
	if params["auth_version"] != "1.0" {
		return fmt.Errorf("auth_version %q; want 1.0", params["auth_version"])
	}
	ts, err := strconv.ParseInt(params["auth_timestamp"], 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 600*time.Second {
		return fmt.Errorf("auth_timestamp %q is not within 600 s of now", params["auth_timestamp"])
	}
	sum := md5.Sum(body)
	if params["body_md5"] != hex.EncodeToString(sum[:]) {
		return errors.New("body_md5 does not match the body")
	}
	var keys []string
	for k := range params {
		if k != "auth_signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + params[k]
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("POST\n" + path + "\n" + strings.Join(keys, "&")))
	if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(params["auth_signature"])) {
		return errors.New("invalid signature")
	}
	return nil
}

// An instance's subscribed events are triggered on the channel named
// after it, with the wire event name and the envelope as data, signed
// with its app's secret; an event it does not subscribe to is not
// triggered. Another instance whose stored secret is wrong is refused by
// the receiver, and its deliveries become dead letters that say why.
func TestPusherThroughHost(t *testing.T) {
	for _, naming := range []string{"seed", "evolution"} {
		t.Run(naming, func(t *testing.T) {
			recv := newPusherRecv(t, "123", "k", "s")
			inst, wrong := uniqueName("e2e-pusher"), uniqueName("e2e-pusher-wrong")
			s := StartSidecar(t, []string{"pusher"}, "EVORELAY_PUSHER_HOST="+recv.Host(), "EVORELAY_NAMING="+naming)

			app := func(secret string) map[string]any {
				return map[string]any{"pusher": map[string]any{"enabled": true, "events": []string{"messages.upsert"},
					"appId": "123", "key": "k", "secret": secret, "cluster": "mt1", "useTLS": false}}
			}
			got := setSink(t, s, "pusher", inst, app("s"))
			if got["enabled"] != true || fmt.Sprint(got["events"]) != "[MESSAGES_UPSERT]" || got["appId"] != "123" ||
				got["key"] != "k" || got["cluster"] != "mt1" || got["useTLS"] != false {
				t.Fatalf("set returned %v", got)
			}
			found := decode(t, s.MustDo(200, "GET", "/pusher/find/"+inst, nil))
			if sec, _ := found["secret"].(string); sec == "" || strings.Contains(sec, "s") {
				t.Fatalf("find shows secret %q; want it masked: %v", found["secret"], found)
			}
			if fmt.Sprint(found) != fmt.Sprint(got) {
				t.Fatalf("find = %v; want what set returned %v", found, got)
			}
			setSink(t, s, "pusher", wrong, app("not-the-secret"))

			since := time.Now()
			evs := []map[string]any{
				event(inst, "messages.upsert", `{"key":{"id":"M1"},"message":{"conversation":"hi \u00e9 \"q\""}}`),
				event(inst, "CONNECTION_UPDATE", `{"state":"open"}`), // not subscribed
				event(wrong, "MESSAGES_UPSERT", `{"key":{"id":"W1"}}`),
				event(inst, "MESSAGES_UPSERT", `{"key":{"id":"M2"}}`),
			}
			mustIngest(t, s, evs[0], evs[1], evs[2], evs[3])
			// A later request's event: the plugin runs an instance's
			// batches one after the other, so once it has arrived,
			// everything of inst before it has been dealt with.
			evs = append(evs, event(inst, "MESSAGES_UPSERT", `{"key":{"id":"M3"}}`))
			mustIngest(t, s, evs[4])

			eventually(t, 30*time.Second, "3 events at the receiver", func() bool { return len(recv.Events()) >= 3 })
			triggered := recv.Events()
			if len(triggered) != 3 {
				t.Fatalf("the receiver got %d events; want M1, M2, M3 only: %+v", len(triggered), triggered)
			}
			for i, want := range []int{0, 3, 4} {
				e := triggered[i]
				if e.App != "123" || e.Channel != inst || e.Name != "messages.upsert" {
					t.Errorf("event %d: app %q channel %q name %q; want 123 %q messages.upsert", i, e.App, e.Channel, e.Name, inst)
				}
				checkEnvelope(t, []byte(e.Data), evs[want], eventName(naming, "MESSAGES_UPSERT"), since)
			}
			noDeadLetters(t, s, "pusher", inst)

			var page deadPage
			eventually(t, 30*time.Second, "the wrong secret's dead letter", func() bool {
				_ = json.Unmarshal(s.MustDo(200, "GET", "/pusher/deadletters/"+wrong, nil), &page)
				return len(page.DeadLetters) >= 1
			})
			if len(page.DeadLetters) != 1 {
				t.Fatalf("%d dead letters for %s; want 1: %+v", len(page.DeadLetters), wrong, page.DeadLetters)
			}
			d := page.DeadLetters[0]
			if !strings.Contains(d.Reason, "401") || !strings.Contains(d.Reason, "secret") || d.Attempts != 1 {
				t.Fatalf("dead letter %+v; want one attempt and a reason naming the 401 and the credentials to check", d)
			}
			var env struct {
				Instance string          `json:"instance"`
				Data     json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(d.Envelope, &env); err != nil || env.Instance != wrong || string(env.Data) != `{"key":{"id":"W1"}}` {
				t.Fatalf("dead letter envelope %s (%v); want W1 of %s", d.Envelope, err, wrong)
			}
			if refused := recv.Refusals(); len(refused) != 1 || !strings.Contains(refused[0], "signature") {
				t.Fatalf("the receiver refused %q; want W1's request, for its signature", refused)
			}
		})
	}
}
