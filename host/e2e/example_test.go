package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The out-of-tree example sink (examples/jsonl, its own module) is dropped
// into the plugin directory as a binary: its routes appear and events
// reach its files.
func TestExamplePluginDroppedIn(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "evorelay-sink-jsonl")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "../../examples/jsonl"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build examples/jsonl: %v\n%s", err, out)
	}
	out := t.TempDir()
	s := StartSidecar(t, []string{"webhook"}, "EVORELAY_JSONL_DIR="+out)
	s.Stop()
	if err := os.Symlink(bin, filepath.Join(s.PluginDir, "evorelay-sink-jsonl")); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	eventually(t, 30*time.Second, "the jsonl plugin running", func() bool {
		for _, p := range s.Plugins() {
			if p.Name == "jsonl" && p.State == "running" {
				return true
			}
		}
		return false
	})

	s.MustDo(201, "POST", "/jsonl/set/shop", map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}})
	if got := string(s.MustDo(200, "GET", "/jsonl/find/shop", nil)); got != `{"enabled":true,"events":["MESSAGES_UPSERT"]}`+"\n" {
		t.Errorf("find: %s", got)
	}
	s.MustDo(400, "POST", "/jsonl/set/shop", map[string]any{"enabled": true, "exchnage": "x"})
	s.MustDo(202, "POST", "/webhook/evolution/shop", []map[string]any{
		{"event": "messages.upsert", "data": map[string]any{"n": 1}},
		{"event": "CONNECTION_UPDATE", "data": map[string]any{"n": 2}},
		{"event": "MESSAGES_UPSERT", "data": map[string]any{"n": 3}},
	})
	file := filepath.Join(out, "shop.jsonl")
	var lines []map[string]any
	eventually(t, 30*time.Second, "two lines in "+file, func() bool {
		lines = readLines(t, file)
		return len(lines) >= 2
	})
	if len(lines) != 2 || lines[0]["event"] != "MESSAGES_UPSERT" || lines[1]["event"] != "MESSAGES_UPSERT" ||
		lines[0]["data"].(map[string]any)["n"] != 1.0 || lines[1]["data"].(map[string]any)["n"] != 3.0 ||
		lines[0]["sender"] != nil {
		t.Errorf("%s holds %v; want the two MESSAGES_UPSERT in order, sender null", file, lines)
	}
}

func readLines(t *testing.T, path string) []map[string]any {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}
