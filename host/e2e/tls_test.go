package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/evorelay/evorelay/host/internal/redistest"
	"github.com/evorelay/evorelay/sdk/sinktest/testtls"
)

// tlsCAVar names the CA file a test gives StartSidecar (a harness
// variable, not the sidecar's) to have the harness talk HTTPS.
const tlsCAVar = "EVORELAY_E2E_TLS_CA="

// tlsClient is a client trusting the CA that env names, or nil.
func tlsClient(env []string) *http.Client {
	for _, kv := range env {
		if file, ok := strings.CutPrefix(kv, tlsCAVar); ok {
			pem, err := os.ReadFile(file)
			if err != nil {
				panic(err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		}
	}
	return nil
}

// The sidecar serves HTTPS and WSS given a certificate and key: ingest,
// set and find, and /ws work over TLS with a private CA; a certificate
// replaced on disk is served without a restart.
func TestHTTPSAndCertificateReload(t *testing.T) {
	ca := testtls.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := ca.Issue(t)
	first.Write(t, certFile, keyFile)
	s := StartSidecar(t, []string{"webhook", "websocket"},
		"EVORELAY_TLS_CERT_FILE="+certFile, "EVORELAY_TLS_KEY_FILE="+keyFile, tlsCAVar+ca.File)
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("sidecar URL %s", s.URL)
	}
	// Plain HTTP on the same port is refused.
	if resp, err := http.Get("http://" + s.Addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("plain HTTP answered %d", resp.StatusCode)
		}
	}

	recv := newReceiver(t)
	set := setWebhook(t, s, "tls", map[string]any{"url": recv.URL, "enabled": true, "events": []string{"MESSAGES_UPSERT"}})
	if found := decode(t, s.MustDo(200, "GET", "/webhook/find/tls", nil)); found["url"] != set["url"] {
		t.Fatalf("find over HTTPS = %v", found)
	}
	s.MustDo(201, "POST", "/websocket/set/tls", map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}})

	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := dialer.Dial("wss://"+s.Addr+"/ws/tls", http.Header{"apikey": {testKey}})
	if err != nil {
		t.Fatalf("wss dial: %v (%v)", err, resp)
	}
	defer ws.Close()

	s.MustDo(202, "POST", "/events", event("tls", "messages.upsert", `{"n":1}`))
	eventually(t, 20*time.Second, "the webhook delivery", func() bool { return len(recv.Hits()) == 1 })
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, frame, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("wss read: %v", err)
	}
	var msg struct {
		Event, Instance string
		Data            json.RawMessage
	}
	if err := json.Unmarshal(frame, &msg); err != nil || msg.Instance != "tls" || string(msg.Data) != `{"n":1}` {
		t.Fatalf("wss frame %s (%v)", frame, err)
	}

	// Renewed in place: new connections get the new certificate.
	second := ca.Issue(t)
	second.Write(t, certFile, keyFile)
	eventually(t, 20*time.Second, "the renewed certificate served", func() bool {
		conn, err := tls.Dial("tcp", s.Addr, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			return false
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(second.Serial) == 0
	})
	s.MustDo(200, "GET", "/webhook/find/tls", nil)
}

// The redis backend reaches Redis over TLS with a rediss:// URL and
// EVORELAY_REDIS_TLS_CA naming a private CA: here a TLS-terminating proxy
// the test runs in front of a redis-server it started.
func TestRedisOverTLS(t *testing.T) {
	srv := redistest.Start(t)
	ca := testtls.NewCA(t)
	url := "rediss://" + testtls.Proxy(t, ca, srv.Addr()) + "/0"
	prefix := fmt.Sprintf("e2etls%d:", rand.Int64())
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_BACKEND=redis", "EVORELAY_REDIS_URL="+url,
		"EVORELAY_REDIS_TLS_CA="+ca.File, "EVORELAY_REDIS_PREFIX="+prefix)
	recv := newReceiver(t)
	setWebhook(t, s, "tls", map[string]any{"url": recv.URL, "enabled": true})
	s.MustDo(202, "POST", "/events", event("tls", "messages.upsert", `{"n":1}`))
	eventually(t, 20*time.Second, "the delivery through the Redis spool", func() bool { return len(recv.Hits()) == 1 })
	keys, err := srv.Client().Keys(context.Background(), prefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no %s* keys in Redis (%v): the sidecar did not use it", prefix, err)
	}
}
