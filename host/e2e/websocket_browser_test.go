package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium; .ci/run installs it (apt-get install
// -y chromium).
const chromiumPath = "/usr/bin/chromium"

// consoleEntry is one item of the console page's event list.
type consoleEntry struct {
	Class    string `json:"class"`
	Event    string `json:"event"`
	Instance string `json:"instance"`
	ID       string `json:"id"`
	Text     string `json:"text"`
}

// readConsole is the console's event list, newest first, as the page
// shows it.
const readConsole = `Array.from(document.querySelectorAll('#events li')).map(li => ({
	class: li.className, event: li.dataset.event || '', instance: li.dataset.instance || '',
	id: li.dataset.id || '', text: li.textContent}))`

// TestWebsocketConsoleInBrowser opens GET /ws-console in headless
// Chromium, types the API key and an instance, connects, and watches an
// event posted to the sidecar appear on the page; then kills the
// websocket plugin and watches the page reconnect by itself (with since,
// answered by a gap message, the new process's window being empty) and
// show the next event.
//
// The host must proxy GET /ws-console (no API key) and GET /ws/{instance}
// (API key in the apikey query parameter) to the websocket plugin's socket.
//
// It runs twice: with the page watching through /ws, and through
// Socket.IO (resuming with the auth payload's offset).
func TestWebsocketConsoleInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		path, lerr := exec.LookPath("chromium")
		if lerr != nil {
			t.Fatalf("Chromium is missing (%v): install it with apt-get install -y chromium", err)
		}
		t.Logf("using %s", path)
	}
	for _, transport := range []string{"ws", "socketio"} {
		t.Run(transport, func(t *testing.T) { watchConsole(t, transport) })
	}
}

func watchConsole(t *testing.T, transport string) {
	s := StartSidecar(t, []string{"websocket"})
	s.MustDo(201, "POST", "/websocket/set/shop", map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}})

	// The page is served without a key: it is static and asks for one.
	resp, err := http.Get(s.URL + "/ws-console")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ws-console without a key = %d %s %.200s; want 200 and the page (the host must proxy /ws-console to the websocket plugin, without auth)",
			resp.StatusCode, resp.Header.Get("Content-Type"), page)
	}

	browser := startChromium(t)
	// Every step is bounded, so a page that never answers fails the test
	// instead of hanging it.
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(browser, time.Minute) }
	entries := func() []consoleEntry {
		t.Helper()
		ctx, cancel := step()
		defer cancel()
		out, err := chromedp.Run(ctx, chromedp.Evaluate[[]consoleEntry](readConsole))
		if err != nil {
			t.Fatalf("read the event list: %v", err)
		}
		return out
	}
	status := func() string {
		t.Helper()
		ctx, cancel := step()
		defer cancel()
		st, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status")))
		if err != nil {
			t.Fatalf("read the status: %v", err)
		}
		return st
	}

	ctx, cancel := step()
	err = chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/ws-console"),
		chromedp.WaitVisible(chromedp.CSS("#apikey")),
		chromedp.SendKeys(chromedp.CSS("#apikey"), testKey),
		chromedp.SendKeys(chromedp.CSS("#instance"), "shop"),
		chromedp.SetValue(chromedp.CSS("#transport"), transport),
		chromedp.Click(chromedp.CSS("#connect")),
	)
	cancel()
	if err != nil {
		t.Fatalf("open the console and connect: %v", err)
	}
	eventually(t, 30*time.Second, "the console says it is connected", func() bool {
		return strings.HasPrefix(status(), "Connected")
	})

	post := func(text string) {
		t.Helper()
		data, _ := json.Marshal(map[string]any{
			"key":     map[string]any{"remoteJid": "5511977776666@s.whatsapp.net", "fromMe": false, "id": "msg-" + text},
			"message": map[string]any{"conversation": text},
		})
		s.MustDo(202, "POST", "/events", map[string]any{
			"event": "messages.upsert", "instance": "shop", "data": json.RawMessage(data),
		})
	}
	find := func(text string) *consoleEntry {
		for _, e := range entries() {
			if e.Class == "event" && strings.Contains(e.Text, text) {
				return &e
			}
		}
		return nil
	}

	post("hello from the e2e test")
	var first *consoleEntry
	eventually(t, 30*time.Second, "the event on the page", func() bool {
		first = find("hello from the e2e test")
		return first != nil
	})
	if first.Event != "MESSAGES_UPSERT" || first.Instance != "shop" || first.ID == "" {
		t.Errorf("the page shows %+v; want event MESSAGES_UPSERT of instance shop with its delivery id", *first)
	}

	// Kill the plugin: the host starts a new one, and the page reconnects
	// on its own, resuming with since=<the id it last got>.
	pid := s.PluginPID("websocket")
	if pid == 0 {
		t.Fatal("no running websocket plugin in GET /plugins")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "a new websocket plugin", func() bool {
		p := s.PluginPID("websocket")
		return p != 0 && p != pid
	})
	eventually(t, 60*time.Second, "the console reconnected", func() bool {
		for _, e := range entries() {
			if e.Class == "gap" && strings.Contains(e.Text, first.ID) {
				return strings.HasPrefix(status(), "Connected")
			}
		}
		return false
	})
	post("after the restart")
	eventually(t, 30*time.Second, "the next event on the page", func() bool { return find("after the restart") != nil })
	gaps := 0
	for _, e := range entries() {
		if e.Class == "gap" {
			gaps++
		}
	}
	if gaps != 1 {
		t.Errorf("the page shows %d gap notices, want 1: %+v", gaps, entries())
	}
}

// startChromium starts a headless Chromium with a fresh profile and
// returns a browser context, cancelled (and the browser ended) at cleanup.
func startChromium(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		opts[0] = chromedp.ExecPath("chromium")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; no timeout on it, or the timeout
	// would end the browser too (Chromium's own start is bounded by
	// chromedp's 20s wait for its DevTools address).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}
