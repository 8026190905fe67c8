package e2e

// Hardening: what an operator's mistake or a hostile client must not do
// to the sidecar (issue 15).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A plugin file that writes to stdout before its handshake does not stop
// the host: it is failed with its reason in /plugins, /readyz and the log,
// its routes answer 503 with that reason, and webhook beside it delivers.
func TestBadPluginKeepsTheHostUp(t *testing.T) {
	recv := newReceiver(t)
	s := StartUnreadySidecar(t, []string{"webhook"}, func(dir string) {
		body := "#!/bin/sh\necho starting up\nexec " + filepath.Join(binDir, "plugins", "evorelay-sink-webhook") + "\n"
		if err := os.WriteFile(filepath.Join(dir, "evorelay-sink-chatty"), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	const reason = "starting up"

	var plugins []struct {
		Name      string `json:"name"`
		State     string `json:"state"`
		LastError string `json:"last_error"`
	}
	if err := json.Unmarshal(s.MustDo(200, "GET", "/plugins", nil), &plugins); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, p := range plugins {
		states[p.Name] = p.State
		if p.Name == "chatty" && !strings.Contains(p.LastError, reason) {
			t.Errorf("/plugins: chatty's last_error %q does not say why", p.LastError)
		}
	}
	if states["chatty"] != "failed" || states["webhook"] != "running" {
		t.Fatalf("/plugins states %v; want chatty failed, webhook running", states)
	}

	code, body := s.Do("GET", "/readyz", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), reason) {
		t.Errorf("/readyz: %d %s; want 503 with chatty's reason in the details", code, body)
	}
	code, body = s.Do("POST", "/chatty/set/acme", map[string]any{"enabled": true})
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), reason) {
		t.Errorf("POST /chatty/set: %d %s; want 503 with the reason", code, body)
	}
	if logs := s.Logs(); !strings.Contains(logs, "plugin failed to start") || !strings.Contains(logs, reason) {
		t.Errorf("the log does not say chatty failed and why:\n%s", logs)
	}

	setWebhook(t, s, "acme", map[string]any{"url": recv.URL, "enabled": true})
	ids := mustIngest(t, s, event("acme", "MESSAGES_UPSERT", `{"key":{"id":"M1"}}`))
	eventually(t, 30*time.Second, "webhook to deliver beside the failed plugin", func() bool { return recv.IDs()[ids[0]] > 0 })
}

// rawRequest opens a connection to s and writes a request's head: a POST
// to /events of a body of length bytes, none of which is sent yet.
func rawRequest(t *testing.T, s *Sidecar, length int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	fmt.Fprintf(c, "POST /events HTTP/1.1\r\nHost: %s\r\napikey: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", s.Addr, testKey, length)
	return c
}

// closedWithin reads c until the sidecar closes it; false if it is still
// open after limit.
func closedWithin(c net.Conn, limit time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// The server's limits: a stalled body and an idle keep-alive connection
// are closed, a slow body that keeps moving gets through whatever its
// size, connections are capped, and bodies past the memory budget are
// answered 503 before they are read.
func TestServerLimits(t *testing.T) {
	t.Run("stalled body is cut off", func(t *testing.T) {
		s := StartSidecar(t, []string{"webhook"}, "EVORELAY_BODY_TIMEOUT=1s")
		c := rawRequest(t, s, 1000)
		_, _ = c.Write([]byte(`[{"event":"messages.upsert",`))
		if !closedWithin(c, 30*time.Second) {
			t.Fatal("a request whose body stalled is still open 30s later; want it closed after EVORELAY_BODY_TIMEOUT (1s)")
		}
	})

	t.Run("slow moving 60 MiB body gets through", func(t *testing.T) {
		s := StartSidecar(t, []string{"webhook"}, "EVORELAY_BODY_TIMEOUT=3s")
		head := `{"event":"messages.upsert","instance":"slow","data":{"message":{"base64":"`
		tail := `"}}}`
		size := 60 << 20
		c := rawRequest(t, s, size)
		pad := size - len(head) - len(tail)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		// Twelve pieces, 600ms apart: over 7s in all, more than twice the
		// timeout, but never 3s without progress (room for a busy machine).
		piece := strings.Repeat("A", pad/12)
		for i := 0; i < 12; i++ {
			time.Sleep(600 * time.Millisecond)
			if _, err := io.WriteString(c, piece); err != nil {
				t.Fatalf("piece %d: %v", i, err)
			}
		}
		if _, err := io.WriteString(c, strings.Repeat("A", pad-12*len(piece))+tail); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("a 60 MiB body sent slowly: %d %s; want 202", resp.StatusCode, body)
		}
	})

	t.Run("idle keep-alive connection is closed", func(t *testing.T) {
		s := StartSidecar(t, []string{"webhook"}, "EVORELAY_IDLE_TIMEOUT=1s")
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", s.Addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz: %v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if !closedWithin(c, 30*time.Second) {
			t.Fatal("an idle keep-alive connection is still open 30s later; want it closed after EVORELAY_IDLE_TIMEOUT (1s)")
		}
	})

	t.Run("connections are capped", func(t *testing.T) {
		s := StartSidecar(t, []string{"webhook"}, "EVORELAY_MAX_CONNECTIONS=4")
		// The start-up probe's keep-alive connection is closed; each
		// request below opens its own.
		http.DefaultClient.CloseIdleConnections()
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		var idle []net.Conn
		for i := 0; i < 4; i++ {
			c, err := net.Dial("tcp", s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			idle = append(idle, c)
		}
		answered := make(chan int, 1)
		go func() {
			resp, err := client.Get(s.URL + "/healthz")
			if err != nil {
				answered <- 0
				return
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
		select {
		case code := <-answered:
			t.Fatalf("a fifth connection was served (%d) while four were open; want it to wait", code)
		case <-time.After(time.Second):
		}
		_ = idle[0].Close()
		select {
		case code := <-answered:
			if code != http.StatusOK {
				t.Fatalf("/healthz once a connection closed: %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the waiting connection was not served after one closed")
		}
	})

	t.Run("bodies past the memory budget are answered 503 unread", func(t *testing.T) {
		s := StartSidecar(t, []string{"webhook"}, "EVORELAY_MAX_BODY_BYTES=1MiB", "EVORELAY_BODY_MEMORY=2MiB")
		// Three 1 MiB bodies start, none is sent: two fit the budget and
		// wait for their bodies, the third is answered at once.
		type answer struct {
			resp *http.Response
			body []byte
		}
		answers := make(chan answer, 3)
		for i := 0; i < 3; i++ {
			c := rawRequest(t, s, 1<<20)
			_, _ = c.Write([]byte(`[`))
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					answers <- answer{}
					return
				}
				body, _ := io.ReadAll(resp.Body)
				answers <- answer{resp, body}
			}()
		}
		a := <-answers
		if a.resp == nil {
			t.Fatal("no answer to any of three 1 MiB bodies begun at once with a 2 MiB budget; want a 503 for the third before its body is sent")
		}
		if a.resp.StatusCode != http.StatusServiceUnavailable || a.resp.Header.Get("Retry-After") == "" || !strings.Contains(string(a.body), "EVORELAY_BODY_MEMORY") {
			t.Fatalf("over the body budget: %d %s (Retry-After %q); want 503 with Retry-After naming EVORELAY_BODY_MEMORY", a.resp.StatusCode, a.body, a.resp.Header.Get("Retry-After"))
		}
	})
}

// openFDs counts the file descriptors process pid holds.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// Websocket clients that stop reading: once the plugin drops them, the
// host's proxy lets go of both of their connections too, although its
// writes to them were blocked.
func TestNonReadingWebsocketClientsFreeTheHost(t *testing.T) {
	s := StartSidecar(t, []string{"websocket"},
		"EVORELAY_WEBSOCKET_SEND_BUFFER=4", "EVORELAY_WEBSOCKET_WRITE_TIMEOUT=1s")
	setSink(t, s, "websocket", "mute", map[string]any{"enabled": true})
	pid := s.cmd.Process.Pid
	base := openFDs(t, pid)

	const clients = 20
	for i := 0; i < clients; i++ {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET /ws/mute HTTP/1.1\r\nHost: %s\r\napikey: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", s.Addr, testKey)
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("client %d upgrade: %v %v", i, resp, err)
		}
		// From here on the client reads nothing.
	}
	eventually(t, 30*time.Second, "the host to hold the clients' connections", func() bool { return openFDs(t, pid) >= base+2*clients })

	// Enough to fill every socket buffer between the plugin and the
	// clients: the host's writes to them block.
	big := strings.Repeat("x", 512<<10)
	for i := 0; i < 30; i++ {
		mustIngest(t, s, event("mute", "MESSAGES_UPSERT", fmt.Sprintf(`{"seq":%d,"pad":%q}`, i, big)))
	}
	eventually(t, 90*time.Second, "the host to free the dropped clients' connections", func() bool {
		return openFDs(t, pid) < base+clients/2
	})
}

// A sink whose plugin was removed keeps its backlog, which holds back the
// spool: it is shown absent, the 503 of a full spool and /readyz name it,
// and once an operator drops it ingest is accepted again.
func TestRemovedPluginHoldsTheSpoolUntilDropped(t *testing.T) {
	recv := newReceiver(t)
	s := StartSidecar(t, []string{"webhook", "websocket"}, "EVORELAY_SPOOL_MAX_EVENTS=500")
	s.Stop()
	if err := os.Remove(filepath.Join(s.PluginDir, "evorelay-sink-websocket")); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	setWebhook(t, s, "gone", map[string]any{"url": recv.URL, "enabled": true})

	batch := make([]any, 100)
	for i := range batch {
		batch[i] = event("gone", "MESSAGES_UPSERT", fmt.Sprintf(`{"seq":%d}`, i))
	}
	var code int
	var body []byte
	accepted := 0
	for i := 0; i < 20; i++ {
		if code, body = s.Do("POST", "/events", batch); code != http.StatusAccepted {
			break
		}
		accepted += len(batch)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "websocket") || !strings.Contains(string(body), "absent") {
		t.Fatalf("after %d accepted: %d %s; want 503 naming the absent websocket sink", accepted, code, body)
	}
	eventually(t, time.Minute, "webhook to deliver what was accepted", func() bool { return len(recv.IDs()) >= accepted })

	code, body = s.Do("GET", "/readyz", nil)
	var ready struct {
		Details struct {
			Plugins []struct{ Name, State string }
			Spool   struct {
				Full   bool     `json:"full"`
				HeldBy []string `json:"held_by"`
			}
		}
	}
	_ = json.Unmarshal(body, &ready)
	if code != http.StatusServiceUnavailable || !ready.Details.Spool.Full || !strings.Contains(strings.Join(ready.Details.Spool.HeldBy, " "), "websocket") {
		t.Fatalf("/readyz while ingest answers 503: %d %s; want 503, full, held_by naming websocket", code, body)
	}
	var plugins []struct{ Name, State string }
	_ = json.Unmarshal(s.MustDo(200, "GET", "/plugins", nil), &plugins)
	if fmt.Sprint(plugins) != "[{webhook running} {websocket absent}]" {
		t.Fatalf("/plugins: %v; want webhook running and websocket absent", plugins)
	}

	s.MustDo(404, "DELETE", "/plugins/webhook", nil)
	s.MustDo(200, "DELETE", "/plugins/websocket", nil)
	if code, body := s.Do("POST", "/events", batch); code != http.StatusAccepted {
		t.Fatalf("ingest after the absent sink was dropped: %d %s; want 202", code, body)
	}
	eventually(t, time.Minute, "/readyz ready once delivered", func() bool { code, _ := s.Do("GET", "/readyz", nil); return code == http.StatusOK })
	plugins = nil
	_ = json.Unmarshal(s.MustDo(200, "GET", "/plugins", nil), &plugins)
	if fmt.Sprint(plugins) != "[{webhook running}]" {
		t.Fatalf("/plugins after the drop: %v", plugins)
	}
}
