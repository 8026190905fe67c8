package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/evorelay/evorelay/host/internal/redistest"
)

// Several sidecars on one Redis (EVORELAY_BACKEND=redis) are one
// deployment. Each test starts its own redis-server, so that it may kill
// and restart it.

// startReplicas starts n sidecars with the given plugins on srv, under a
// prefix of their own.
func startReplicas(t *testing.T, srv *redistest.Server, n int, plugins []string, env ...string) []*Sidecar {
	t.Helper()
	prefix := fmt.Sprintf("e2e%d:", rand.Int64())
	env = append([]string{
		"EVORELAY_BACKEND=redis", "EVORELAY_REDIS_URL=" + srv.URL(), "EVORELAY_REDIS_PREFIX=" + prefix,
		"EVORELAY_REDIS_TAKEOVER_AFTER=2s",
	}, env...)
	var out []*Sidecar
	for range n {
		out = append(out, StartSidecar(t, plugins, env...))
	}
	return out
}

// seqEvent is a MESSAGES_UPSERT with a unique seq in its data.
func seqEvent(instance string, seq int) map[string]any {
	return event(instance, "MESSAGES_UPSERT", fmt.Sprintf(`{"seq":%d}`, seq))
}

func TestReplicasShareSettings(t *testing.T) {
	srv := redistest.Start(t)
	hosts := startReplicas(t, srv, 2, []string{"webhook"})
	a, b := hosts[0], hosts[1]
	recv := newReceiver(t)

	set := setWebhook(t, a, "shared", map[string]any{"url": recv.URL, "enabled": true, "events": []string{"MESSAGES_UPSERT"}})
	eventually(t, 10*time.Second, "set on a, found on b", func() bool {
		code, body := b.Do("GET", "/webhook/find/shared", nil)
		return code == http.StatusOK && strings.TrimSpace(string(body)) != "null" && fmt.Sprint(decode(t, body)) == fmt.Sprint(set)
	})
	// Accepted by b, delivered by whichever host holds the instance.
	b.MustDo(http.StatusAccepted, "POST", "/events", []any{seqEvent("shared", 1)})
	eventually(t, 20*time.Second, "delivery of what b accepted", func() bool { return seqs(t, recv)[1] == 1 })

	// Disabled on b: a's deliveries stop too.
	setWebhook(t, b, "shared", map[string]any{"url": recv.URL, "enabled": false})
	eventually(t, 10*time.Second, "disabled on b, off on a", func() bool {
		return decode(t, a.MustDo(http.StatusOK, "GET", "/webhook/find/shared", nil))["enabled"] == false
	})
	a.MustDo(http.StatusAccepted, "POST", "/events", []any{seqEvent("shared", 2)})
	// Settings apply when a delivery is leased: wait until the holder of
	// the instance has passed over event 2 (the backlog count is shared in
	// Redis), or enabling again could race it there.
	eventually(t, 20*time.Second, "event 2 passed over while disabled", func() bool {
		_, m := b.DoKey("GET", "/metrics", nil, "")
		return strings.Contains(string(m), `evorelay_sink_backlog{sink="webhook"} 0`)
	})
	// Enabled again on a: what is accepted from then on flows (the event
	// accepted while disabled was not for the sink).
	setWebhook(t, a, "shared", map[string]any{"url": recv.URL, "enabled": true})
	eventually(t, 10*time.Second, "enabled on a, on for b", func() bool {
		return decode(t, b.MustDo(http.StatusOK, "GET", "/webhook/find/shared", nil))["enabled"] == true
	})
	b.MustDo(http.StatusAccepted, "POST", "/events", []any{seqEvent("shared", 3)})
	eventually(t, 20*time.Second, "delivery after enabling again", func() bool { return seqs(t, recv)[3] == 1 })
	if seqs(t, recv)[2] != 0 {
		t.Error("an event accepted while the webhook was disabled was delivered")
	}
}

// load posts events spread over hosts and instances, each with a unique
// seq, until stop is closed; it returns the seqs answered 202 and how
// many requests were refused (503).
type load struct {
	mu       sync.Mutex
	accepted map[int]bool
	refused  int
	retryHdr bool
	next     atomic.Int64
}

func (l *load) run(t *testing.T, hosts func() []*Sidecar, instances int, stop <-chan struct{}, wg *sync.WaitGroup) {
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				hs := hosts()
				h := hs[(w+n)%len(hs)]
				var batch []any
				var batchSeqs []int
				for range 10 {
					seq := int(l.next.Add(1))
					batchSeqs = append(batchSeqs, seq)
					batch = append(batch, seqEvent(fmt.Sprintf("inst%d", seq%instances), seq))
				}
				code, hdr := postEvents(h, batch)
				l.mu.Lock()
				switch code {
				case http.StatusAccepted:
					for _, s := range batchSeqs {
						l.accepted[s] = true
					}
				case http.StatusServiceUnavailable:
					l.refused++
					l.retryHdr = l.retryHdr || hdr.Get("Retry-After") != ""
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
}

// postEvents posts a batch; a host that is down answers 0.
func postEvents(s *Sidecar, batch []any) (int, http.Header) {
	body, _ := json.Marshal(batch)
	req, _ := http.NewRequest("POST", s.URL+"/events", strings.NewReader(string(body)))
	req.Header.Set("apikey", testKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func (l *load) acceptedSeqs() map[int]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int]bool, len(l.accepted))
	for s := range l.accepted {
		out[s] = true
	}
	return out
}

// missing lists the accepted seqs the receiver has not got.
func missing(t *testing.T, accepted map[int]bool, got map[int]int) []int {
	var out []int
	for s := range accepted {
		if got[s] == 0 {
			out = append(out, s)
		}
	}
	return out
}

// Three hosts take events for 8 instances; one is killed with SIGKILL
// while it has deliveries leased (the receiver is slow). The survivors
// deliver everything any host answered 202 for.
func TestReplicasKill9UnderLoad(t *testing.T) {
	srv := redistest.Start(t)
	hosts := startReplicas(t, srv, 3, []string{"webhook"})
	recv := newReceiver(t)
	recv.SetDecide(func(hit, int) int { time.Sleep(2 * time.Millisecond); return http.StatusOK })
	for i := range 8 {
		setWebhook(t, hosts[i%3], fmt.Sprintf("inst%d", i), map[string]any{"url": recv.URL, "enabled": true})
	}
	var live atomic.Value
	live.Store(hosts)
	l := &load{accepted: map[int]bool{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	l.run(t, func() []*Sidecar { return live.Load().([]*Sidecar) }, 8, stop, &wg)
	eventually(t, 30*time.Second, "deliveries under way", func() bool { return len(recv.Hits()) > 200 })

	live.Store(hosts[1:])
	before := l.acceptedSeqs()
	killed := time.Now()
	hosts[0].Kill9()
	eventually(t, 60*time.Second, "everything accepted before the kill delivered", func() bool {
		return len(missing(t, before, seqs(t, recv))) == 0
	})
	t.Logf("failover: everything accepted before the kill -9 delivered %v after it (takeover after 2s)", time.Since(killed).Round(10*time.Millisecond))
	time.Sleep(500 * time.Millisecond) // more load on the survivors
	close(stop)
	wg.Wait()
	all := l.acceptedSeqs()
	eventually(t, 60*time.Second, fmt.Sprintf("all %d accepted events delivered", len(all)), func() bool {
		return len(missing(t, all, seqs(t, recv))) == 0
	})
	t.Logf("%d events accepted over 3 hosts, 0 lost", len(all))
	reportDuplicates(t, seqs(t, recv))
}

// Redis is killed under load and restarted: meanwhile ingest answers 503
// with Retry-After and /readyz says why; afterwards everything answered
// 202 is delivered.
func TestReplicasRedisRestartUnderLoad(t *testing.T) {
	srv := redistest.Start(t)
	hosts := startReplicas(t, srv, 2, []string{"webhook"})
	recv := newReceiver(t)
	for i := range 4 {
		setWebhook(t, hosts[0], fmt.Sprintf("inst%d", i), map[string]any{"url": recv.URL, "enabled": true})
	}
	l := &load{accepted: map[int]bool{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	l.run(t, func() []*Sidecar { return hosts }, 4, stop, &wg)
	eventually(t, 30*time.Second, "deliveries under way", func() bool { return len(recv.Hits()) > 100 })

	srv.Kill()
	eventually(t, 20*time.Second, "ingest refused with 503", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.refused > 0
	})
	code, body := hosts[1].Do("GET", "/readyz", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "redis") {
		t.Errorf("/readyz with Redis down = %d %s; want 503 naming redis", code, body)
	}
	srv.Restart()
	eventually(t, 30*time.Second, "ready again", func() bool { c, _ := hosts[1].Do("GET", "/readyz", nil); return c == http.StatusOK })
	time.Sleep(300 * time.Millisecond) // load after the restart
	close(stop)
	wg.Wait()
	if !l.retryHdr {
		t.Error("a 503 without Retry-After")
	}
	all := l.acceptedSeqs()
	defer func() {
		if m := missing(t, all, seqs(t, recv)); len(m) > 0 {
			t.Logf("missing %d: %v", len(m), m[:min(len(m), 20)])
		}
	}()
	eventually(t, 60*time.Second, fmt.Sprintf("all %d accepted events delivered", len(all)), func() bool {
		return len(missing(t, all, seqs(t, recv))) == 0
	})
	t.Logf("%d events accepted, %d requests refused while Redis was down, 0 lost", len(all), l.refused)
	reportDuplicates(t, seqs(t, recv))
}

// A websocket client on one host receives the events another host
// accepted, and resumes with since on a third.
func TestReplicasWebsocket(t *testing.T) {
	srv := redistest.Start(t)
	hosts := startReplicas(t, srv, 3, []string{"websocket"})
	hosts[0].MustDo(http.StatusCreated, "POST", "/websocket/set/live", map[string]any{"enabled": true})
	eventually(t, 10*time.Second, "settings on every host", func() bool {
		for _, h := range hosts {
			if c, b := h.Do("GET", "/websocket/find/live", nil); c != http.StatusOK || strings.TrimSpace(string(b)) == "null" {
				return false
			}
		}
		return true
	})
	url := "ws" + strings.TrimPrefix(hosts[1].URL, "http") + "/ws/live?apikey=" + testKey
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 5 {
		hosts[0].MustDo(http.StatusAccepted, "POST", "/events", []any{seqEvent("live", i)})
	}
	type wsMsg struct {
		Event string          `json:"event"`
		ID    string          `json:"id"`
		Data  json.RawMessage `json:"data"`
	}
	read := func(c *websocket.Conn) wsMsg {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		var m wsMsg
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("websocket read: %v", err)
		}
		return m
	}
	var got []wsMsg
	for range 5 {
		got = append(got, read(conn))
	}
	for i, m := range got {
		if string(m.Data) != fmt.Sprintf(`{"seq":%d}`, i) {
			t.Fatalf("message %d on host 1: %+v (accepted by host 0)", i, m)
		}
	}
	// since the second message, on host 2: the three after it.
	url2 := "ws" + strings.TrimPrefix(hosts[2].URL, "http") + "/ws/live?apikey=" + testKey + "&since=" + got[1].ID
	conn2, _, err := websocket.DefaultDialer.Dial(url2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	for i := 2; i < 5; i++ {
		if m := read(conn2); m.ID != got[i].ID {
			t.Fatalf("resumed on host 2: got %+v, want id %s", m, got[i].ID)
		}
	}
}
