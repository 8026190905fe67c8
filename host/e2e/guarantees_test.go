package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// shortRetries is a schedule for tests: seven quick tries.
const shortRetries = "EVORELAY_RETRY_SCHEDULE=0s,100ms,100ms,100ms,100ms,100ms,100ms"

func TestRetriesFollowTheSchedule(t *testing.T) {
	recv := newReceiver(t)
	recv.SetDecide(func(_ hit, seen int) int {
		if seen <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	// The circuit breaker off: this is about the schedule alone (with it,
	// 20 first attempts failing in a row would hold the rest).
	s := StartSidecar(t, []string{"webhook"}, shortRetries, "EVORELAY_RETRY_JITTER=0", "EVORELAY_CIRCUIT_FAILURES=0")
	setWebhook(t, s, "flaky", map[string]any{"url": recv.URL, "enabled": true})
	postMany(t, s, "flaky", 50)
	eventually(t, 20*time.Second, "every event on its third attempt", func() bool {
		ids := recv.IDs()
		if len(ids) != 50 {
			return false
		}
		for _, n := range ids {
			if n < 3 {
				return false
			}
		}
		return true
	})
	for id, n := range recv.IDs() {
		if n != 3 {
			t.Errorf("%s was tried %d times; want 3 (two 500s, then 200)", id, n)
		}
	}
	if got := len(seqs(t, recv)); got != 50 {
		t.Fatalf("%d distinct events; want 50", got)
	}
}

func TestUnreachableReceiverHostKill9(t *testing.T) {
	const n = 200
	recv := newReceiver(t)
	recv.down.Store(true) // unreachable: every connection closed unanswered
	// The circuit breaker off: this is about what a kill -9 keeps. (With it,
	// deliveries held by an open circuit wait out its cool-down after the
	// restart too, which is longer than this test waits.)
	s := StartSidecar(t, []string{"webhook"}, shortRetries, "EVORELAY_CIRCUIT_FAILURES=0")
	setWebhook(t, s, "gone", map[string]any{"url": recv.URL + "/hook", "enabled": true})
	postMany(t, s, "gone", n)
	s.Kill9()
	recv.down.Store(false) // back
	s.Restart()
	eventually(t, 30*time.Second, fmt.Sprintf("all %d events", n), func() bool { return len(seqs(t, recv)) == n })
	reportDuplicates(t, seqs(t, recv))
}

func TestPluginKill9TwiceInARow(t *testing.T) {
	const n = 500
	recv := newReceiver(t)
	recv.SetDecide(func(hit, int) int { time.Sleep(2 * time.Millisecond); return 200 })
	s := StartSidecar(t, []string{"webhook"})
	setWebhook(t, s, "pk2", map[string]any{"url": recv.URL, "enabled": true})
	postMany(t, s, "pk2", n)
	for round := 1; round <= 2; round++ {
		var pid int
		eventually(t, 20*time.Second, "a running plugin", func() bool { pid = s.PluginPID("webhook"); return pid != 0 })
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the plugin replaced", func() bool {
			p := s.PluginPID("webhook")
			return p != 0 && p != pid
		})
	}
	eventually(t, 60*time.Second, fmt.Sprintf("all %d events", n), func() bool { return len(seqs(t, recv)) == n })
	reportDuplicates(t, seqs(t, recv))
	if ps := s.Plugins(); ps[0].Restarts < 2 {
		t.Fatalf("/plugins shows %d restarts; want 2", ps[0].Restarts)
	}
}

// An instance's own retry schedule replaces the process's for it alone.
func TestPerInstanceRetrySchedule(t *testing.T) {
	recv := newReceiver(t)
	recv.SetStatus(http.StatusInternalServerError)
	s := StartSidecar(t, []string{"webhook"}) // the default schedule: 5 s before the second try
	setWebhook(t, s, "impatient", map[string]any{"url": recv.URL, "enabled": true,
		"retry": map[string]any{"schedule": []string{"0s", "50ms", "50ms"}}})
	setWebhook(t, s, "patient", map[string]any{"url": recv.URL, "enabled": true})
	postMany(t, s, "impatient", 1)
	postMany(t, s, "patient", 1)
	var page deadPage
	eventually(t, 10*time.Second, "impatient's dead letter after its 3 tries", func() bool {
		_ = json.Unmarshal(s.MustDo(200, "GET", "/webhook/deadletters/impatient", nil), &page)
		return len(page.DeadLetters) == 1
	})
	if page.DeadLetters[0].Attempts != 3 || !strings.Contains(page.DeadLetters[0].Reason, "gave up after 3 attempts") {
		t.Fatalf("dead letter %+v; want 3 attempts and why", page.DeadLetters[0])
	}
	_ = json.Unmarshal(s.MustDo(200, "GET", "/webhook/deadletters/patient", nil), &page)
	if len(page.DeadLetters) != 0 {
		t.Fatalf("the instance on the default schedule was dead-lettered: %+v", page.DeadLetters)
	}
}

type deadPage struct {
	DeadLetters []struct {
		ID       string          `json:"id"`
		Reason   string          `json:"reason"`
		Attempts int             `json:"attempts"`
		Envelope json.RawMessage `json:"envelope"`
	} `json:"deadletters"`
	Next string `json:"next"`
}

func TestDeadLetterReplay(t *testing.T) {
	recv := newReceiver(t)
	recv.SetStatus(http.StatusBadRequest)
	s := StartSidecar(t, []string{"webhook"})
	setWebhook(t, s, "dl", map[string]any{"url": recv.URL, "enabled": true})
	postMany(t, s, "dl", 3)
	var page deadPage
	eventually(t, 10*time.Second, "3 dead letters", func() bool {
		_ = json.Unmarshal(s.MustDo(200, "GET", "/webhook/deadletters/dl", nil), &page)
		return len(page.DeadLetters) == 3
	})
	if _, m := s.DoKey("GET", "/metrics", nil, ""); !strings.Contains(string(m), `evorelay_sink_dead_letters{sink="webhook"} 3`) {
		t.Fatalf("/metrics does not count the 3 dead letters")
	}
	first := recv.IDs()
	for _, d := range page.DeadLetters {
		if !strings.Contains(d.Reason, "400") || d.Attempts != 1 || first[d.ID] != 1 || len(d.Envelope) == 0 {
			t.Fatalf("dead letter %+v: want the 400 as reason, one attempt, its envelope, and the id the receiver saw", d)
		}
	}
	// Pages: newest first, one a page, then the rest.
	var p1 deadPage
	_ = json.Unmarshal(s.MustDo(200, "GET", "/webhook/deadletters/dl?limit=1", nil), &p1)
	if len(p1.DeadLetters) != 1 || p1.Next == "" || p1.DeadLetters[0].ID != page.DeadLetters[0].ID {
		t.Fatalf("first page %+v", p1)
	}

	recv.SetStatus(http.StatusOK) // the receiver is fixed
	replayed := decode(t, s.MustDo(200, "POST", "/webhook/deadletters/dl/replay", map[string]any{"ids": []string{page.DeadLetters[0].ID}}))
	if replayed["replayed"] != 1.0 {
		t.Fatalf("replay answered %v", replayed)
	}
	eventually(t, 10*time.Second, "the replayed delivery", func() bool { return recv.IDs()[page.DeadLetters[0].ID] == 2 })
	s.MustDo(200, "POST", "/webhook/deadletters/dl/replay", nil) // the other two
	eventually(t, 10*time.Second, "all replayed", func() bool {
		for _, d := range page.DeadLetters {
			if recv.IDs()[d.ID] != 2 {
				return false
			}
		}
		return true
	})
	eventually(t, 10*time.Second, "nothing left to deliver", func() bool {
		_, m := s.DoKey("GET", "/metrics", nil, "")
		return strings.Contains(string(m), `evorelay_sink_backlog{sink="webhook"} 0`)
	})
	for _, d := range page.DeadLetters {
		if n := recv.IDs()[d.ID]; n != 2 {
			t.Errorf("%s arrived %d times; want the failed try and one replay, same webhook-id", d.ID, n)
		}
	}
	_ = json.Unmarshal(s.MustDo(200, "GET", "/webhook/deadletters/dl", nil), &page)
	if len(page.DeadLetters) != 0 {
		t.Fatalf("%d dead letters left after the replay", len(page.DeadLetters))
	}
	if _, m := s.DoKey("GET", "/metrics", nil, ""); !strings.Contains(string(m), `evorelay_sink_dead_letters{sink="webhook"} 0`) {
		t.Fatalf("/metrics does not show the dead letters: %s", m)
	}
}

// Without failures, one instance's events reach the receiver in the order
// they were accepted, while other instances interleave.
func TestOrderPerInstance(t *testing.T) {
	const n = 300
	recv := newReceiver(t)
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_BATCH_SIZE=20")
	for _, inst := range []string{"ord-a", "ord-b"} {
		setWebhook(t, s, inst, map[string]any{"url": recv.URL + "/" + inst, "enabled": true})
	}
	for i := 0; i < n; i += 30 {
		var batch []any
		for j := i; j < i+30; j++ {
			batch = append(batch, event("ord-a", "MESSAGES_UPSERT", fmt.Sprintf(`{"seq":%d}`, j)),
				event("ord-b", "MESSAGES_UPSERT", fmt.Sprintf(`{"seq":%d}`, j)))
		}
		s.MustDo(202, "POST", "/events", batch)
	}
	eventually(t, 30*time.Second, "every event", func() bool { return len(recv.Hits()) >= 2*n })
	for _, inst := range []string{"ord-a", "ord-b"} {
		var got []int
		for _, h := range recv.Hits() {
			if h.Path == "/"+inst {
				got = append(got, seqOf(t, h))
			}
		}
		for i, seq := range got {
			if seq != i {
				t.Fatalf("%s: delivery %d carried seq %d; want ingest order (got %v...)", inst, i, seq, got[:min(len(got), i+3)])
			}
		}
	}
}

// By default an instance's chats are lanes of their own: while the
// receiver hangs on one chat's message, the instance's other chat and its
// events without a chat still arrive, each lane in the order accepted; a
// message's update (its chat is data.remoteJid) follows the message.
func TestOrderPerChat(t *testing.T) {
	const n = 60
	hang := make(chan struct{})
	recv := newReceiver(t)
	recv.SetDecide(func(h hit, _ int) int {
		if strings.Contains(string(h.Body), "slow@s.whatsapp.net") {
			<-hang
		}
		return 200
	})
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_BATCH_SIZE=20", "EVORELAY_WEBHOOK_TIMEOUT=10m")
	release := sync.OnceFunc(func() { close(hang) })
	t.Cleanup(release) // before the sidecar stops, should the test fail
	setWebhook(t, s, "chats", map[string]any{"url": recv.URL, "enabled": true})
	var batch []any
	for j := range n {
		batch = append(batch,
			event("chats", "MESSAGES_UPSERT", fmt.Sprintf(`{"key":{"remoteJid":"slow@s.whatsapp.net","id":"s%d"},"seq":%d}`, j, j)),
			event("chats", "MESSAGES_UPSERT", fmt.Sprintf(`{"key":{"remoteJid":"fast@s.whatsapp.net","id":"f%d"},"seq":%d}`, j, j)),
			event("chats", "MESSAGES_UPDATE", fmt.Sprintf(`{"remoteJid":"fast@s.whatsapp.net","keyId":"f%d","status":"READ","seq":%d}`, j, j)),
			event("chats", "CONNECTION_UPDATE", fmt.Sprintf(`{"state":"open","seq":%d}`, j)))
	}
	s.MustDo(202, "POST", "/events", batch)
	lanes := func() map[string][]string {
		out := map[string][]string{}
		for _, h := range recv.Hits() {
			var b struct {
				Event string `json:"event"`
			}
			if err := json.Unmarshal(h.Body, &b); err != nil {
				t.Fatal(err)
			}
			lane := "none"
			switch body := string(h.Body); {
			case strings.Contains(body, "slow@"):
				lane = "slow"
			case strings.Contains(body, "fast@"):
				lane = "fast"
			}
			out[lane] = append(out[lane], fmt.Sprintf("%s %d", b.Event, seqOf(t, h)))
		}
		return out
	}
	eventually(t, 30*time.Second, "the other chat and the events without one while the receiver hangs on chat slow", func() bool {
		l := lanes()
		return len(l["fast"]) == 2*n && len(l["none"]) == n
	})
	release()
	eventually(t, 30*time.Second, "every event", func() bool { return len(lanes()["slow"]) == n })
	var want = map[string][]string{}
	for j := range n {
		want["slow"] = append(want["slow"], fmt.Sprintf("MESSAGES_UPSERT %d", j))
		want["fast"] = append(want["fast"], fmt.Sprintf("MESSAGES_UPSERT %d", j), fmt.Sprintf("MESSAGES_UPDATE %d", j))
		want["none"] = append(want["none"], fmt.Sprintf("CONNECTION_UPDATE %d", j))
	}
	got := lanes()
	for lane, events := range want {
		if fmt.Sprint(got[lane]) != fmt.Sprint(events) {
			t.Errorf("lane %s arrived as\n%v\nwant\n%v", lane, got[lane], events)
		}
	}
}

func TestGoneDisablesTheInstance(t *testing.T) {
	recv := newReceiver(t)
	recv.SetStatus(http.StatusGone)
	s := StartSidecar(t, []string{"webhook"})
	setWebhook(t, s, "gone410", map[string]any{"url": recv.URL, "enabled": true})
	postMany(t, s, "gone410", 1)
	eventually(t, 10*time.Second, "the instance disabled", func() bool {
		f := decode(t, s.MustDo(200, "GET", "/webhook/find/gone410", nil))
		return f["enabled"] == false && strings.Contains(fmt.Sprint(f["disabled_reason"]), "410")
	})
	if !strings.Contains(s.Logs(), "disabled") {
		t.Error("the log does not say the sink was disabled")
	}
}

func TestHangingInstanceDoesNotHoldOthers(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	hanging := newReceiver(t)
	hanging.SetDecide(func(hit, int) int { <-hang; return 200 })
	fine := newReceiver(t)
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_MAX_IN_FLIGHT=200", "EVORELAY_BATCH_SIZE=50", "EVORELAY_WEBHOOK_TIMEOUT=10m")
	setWebhook(t, s, "slowpoke", map[string]any{"url": hanging.URL, "enabled": true})
	setWebhook(t, s, "healthy", map[string]any{"url": fine.URL, "enabled": true})
	postMany(t, s, "slowpoke", 400) // twice the window
	postMany(t, s, "healthy", 100)
	eventually(t, 30*time.Second, "the healthy instance's 100 events while the other hangs", func() bool {
		return len(seqs(t, fine)) == 100
	})
}

func TestSpoolBoundAnswers503(t *testing.T) {
	recv := newReceiver(t)
	recv.SetDecide(func(hit, int) int { time.Sleep(20 * time.Millisecond); return 200 })
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_SPOOL_MAX_EVENTS=100", "EVORELAY_MAX_IN_FLIGHT=100")
	setWebhook(t, s, "flood", map[string]any{"url": recv.URL, "enabled": true})
	accepted := 0
	var code int
	var body []byte
	var header http.Header
	for i := 0; i < 50 && code != http.StatusServiceUnavailable; i++ {
		req, _ := http.NewRequest("POST", s.URL+"/events", strings.NewReader(fmt.Sprintf(`[%s]`, strings.TrimSuffix(strings.Repeat(`{"event":"messages.upsert","instance":"flood","data":{}},`, 10), ","))))
		req.Header.Set("apikey", testKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		code, header = resp.StatusCode, resp.Header
		body = make([]byte, 4096)
		n, _ := resp.Body.Read(body)
		body = body[:n]
		resp.Body.Close()
		if code == http.StatusAccepted {
			accepted += 10
		}
	}
	if code != http.StatusServiceUnavailable || header.Get("Retry-After") == "" || !strings.Contains(string(body), `"status":503`) {
		t.Fatalf("after %d accepted: %d %s (Retry-After %q); want 503 with Retry-After and the error envelope", accepted, code, body, header.Get("Retry-After"))
	}
	eventually(t, 30*time.Second, "ingest accepted again once drained", func() bool {
		code, _ := s.Do("POST", "/events", event("flood", "MESSAGES_UPSERT", `{"seq":-1}`))
		return code == http.StatusAccepted
	})
	eventually(t, 30*time.Second, "every accepted event delivered", func() bool { return len(recv.IDs()) >= accepted+1 })
}

func TestSigtermFinishesInFlight(t *testing.T) {
	const n = 100
	recv := newReceiver(t)
	recv.SetDecide(func(hit, int) int { time.Sleep(20 * time.Millisecond); return 200 })
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_SHUTDOWN_GRACE=3s")
	setWebhook(t, s, "term", map[string]any{"url": recv.URL, "enabled": true})
	postMany(t, s, "term", n)
	eventually(t, 10*time.Second, "deliveries under way", func() bool { return len(recv.Hits()) > 5 })
	start := time.Now()
	if code := s.Terminate(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; want 0", code)
	}
	t.Logf("exited %s after SIGTERM with %d of %d delivered", time.Since(start).Round(time.Millisecond), len(seqs(t, recv)), n)
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("still listening after exit")
	}
	s.Restart()
	eventually(t, 30*time.Second, fmt.Sprintf("all %d after the restart", n), func() bool { return len(seqs(t, recv)) == n })
	reportDuplicates(t, seqs(t, recv))
}
