package e2e

// Hardening: what an operator's mistake or a hostile client must not do
// to the sidecar (issue 15).

import (
	"encoding/json"
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
