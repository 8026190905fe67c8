package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestSocketIOClients runs host/e2e/socketio's tests: the real npm
// socket.io-client 4.x, driven by Node, connects to the sidecar's one port
// as Evolution API's websocket clients do, through the host's proxy to the
// websocket plugin. They need Node and `npm ci` in host/e2e/socketio
// (make test does it); without them this test fails, it does not skip.
func TestSocketIOClients(t *testing.T) {
	dir, err := filepath.Abs("socketio")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io-client")); err != nil {
		t.Fatalf("socket.io-client is not installed (%v): run `make test`, or `npm ci` in host/e2e/socketio", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("Node is missing (%v): install Node 20 or later", err)
	}
	s := StartSidecar(t, []string{"websocket"}, "EVORELAY_NAMING=evolution")
	a, b := uniqueName("sio-a"), uniqueName("sio-b")
	for _, inst := range []string{a, b} {
		s.MustDo(201, "POST", "/websocket/set/"+inst, map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}})
	}
	cmd := exec.Command(node, "--test", "--test-reporter=spec", "socketio.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EVORELAY_URL="+s.URL, "EVORELAY_KEY="+testKey, "EVORELAY_A="+a, "EVORELAY_B="+b)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test socketio.test.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the socket.io-client tests failed: %v", err)
	}
}
