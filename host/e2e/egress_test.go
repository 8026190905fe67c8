package e2e

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestEgressRefusedAtSet: with the default egress policy, webhook URLs to
// loopback, unspecified and cloud metadata addresses are refused at set
// with a 400 in the error envelope that names the setting to change; a
// private network is accepted.
func TestEgressRefusedAtSet(t *testing.T) {
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_EGRESS_ALLOW=")
	recv := newReceiver(t)
	for url, says := range map[string]string{
		recv.URL + "/hook": "add 127.0.0.1/32 to EVORELAY_EGRESS_ALLOW",
		"http://localhost:" + port(t, recv.URL) + "/x": "add 127.0.0.1/32 to EVORELAY_EGRESS_ALLOW",
		"http://0.0.0.0:8080/hook":                     "EVORELAY_EGRESS_ALLOW",
		"http://[::]:8080/hook":                        "EVORELAY_EGRESS_ALLOW",
		"http://[::1]:8080/hook":                       "add ::1/128 to EVORELAY_EGRESS_ALLOW",
		"http://100.100.100.200/latest/meta-data":      "cloud metadata",
		"http://168.63.129.16/machine":                 "cloud metadata",
		"http://[64:ff9b::a9fe:a9fe]/latest/meta-data": "NAT64 form of 169.254.169.254",
	} {
		code, body := s.Do("POST", "/webhook/set/egress1", map[string]any{"url": url, "enabled": true})
		env := decode(t, body)
		if code != 400 || env["status"] != float64(400) || !strings.Contains(string(body), says) {
			t.Errorf("set %s = %d %s; want 400 in the envelope saying %q", url, code, body, says)
		}
	}
	setWebhook(t, s, "egress1", map[string]any{"url": "http://10.0.0.5:5678/webhook", "enabled": true})
}

// TestMediaSSRFThroughHost: the webhook's media fetch cannot read an
// internal service back into a delivery, whether the mediaUrl names it or
// an allowed server redirects to it. The receiver (127.0.0.1) is allowed;
// the internal service (127.0.0.2) is loopback the policy refuses.
func TestMediaSSRFThroughHost(t *testing.T) {
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_EGRESS_ALLOW=127.0.0.1/32")
	recv := newReceiver(t)
	var inside atomic.Int32
	internal := serveOn(t, "127.0.0.2:0", func(w http.ResponseWriter, _ *http.Request) {
		inside.Add(1)
		_, _ = io.WriteString(w, "internal secret")
	})
	redirector := serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/latest/meta-data", http.StatusFound)
	})
	setWebhook(t, s, "ssrf", map[string]any{"url": recv.URL + "/hook", "enabled": true, "webhook_base64": true})
	for _, media := range []string{internal.URL + "/secret.jpg", redirector.URL + "/photo.jpg"} {
		mustIngest(t, s, event("ssrf", "MESSAGES_UPSERT",
			`{"key":{"id":"M1"},"message":{"imageMessage":{},"mediaUrl":"`+media+`"},"messageType":"imageMessage"}`))
	}
	eventually(t, 30*time.Second, "both events delivered", func() bool { return len(recv.Hits()) >= 2 })
	leaked := base64.StdEncoding.EncodeToString([]byte("internal secret"))
	for _, h := range recv.Hits() {
		if strings.Contains(string(h.Body), leaked) || strings.Contains(string(h.Body), `"base64"`) {
			t.Errorf("the webhook got the internal response: %s", h.Body)
		}
	}
	if n := inside.Load(); n != 0 {
		t.Errorf("the internal service got %d requests, want none", n)
	}
}

// TestBadEgressCIDRStopsStartUp: a CIDR that does not parse stops the host
// with a message naming the variable.
func TestBadEgressCIDRStopsStartUp(t *testing.T) {
	for _, v := range []string{"EVORELAY_EGRESS_ALLOW", "EVORELAY_EGRESS_DENY"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "evorelay"))
		cmd.Env = append(os.Environ(), "EVORELAY_DATA_DIR="+t.TempDir(), "EVORELAY_API_KEY=k",
			"EVORELAY_ADDR="+freeAddr(t), "EVORELAY_PLUGIN_DIR="+t.TempDir(), v+"=10.0.0.0/8,localhost")
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), v+`: "localhost" is not a CIDR`) {
			t.Errorf("%s=10.0.0.0/8,localhost: %v\n%s\nwant start-up to fail naming %s", v, err, out, v)
		}
	}
}

// serveOn is an HTTP server on addr ("host:0").
func serveOn(t *testing.T, addr string, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// port is the port of a URL's host.
func port(t *testing.T, rawURL string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(rawURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
