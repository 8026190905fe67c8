package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// TestConformance runs the SDK's suite against the sink, with a real
// directory as the destination.
func TestConformance(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	settings := json.RawMessage(`{"enabled":true,"events":[]}`)
	sinktest.Run(t, sinktest.Config{
		New:  func() sdk.Sink { return &sink{} },
		Open: map[string]string{"dir": dir},
		Good: []json.RawMessage{settings, json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT"],"file":"all.jsonl"}`)},
		Bad: map[string]json.RawMessage{
			"file":    json.RawMessage(`{"enabled":true,"events":[],"file":"../etc/passwd"}`),
			"enabled": json.RawMessage(`{"enabled":"yes","events":[]}`),
		},
		Deliver: &sinktest.DeliverCase{Settings: settings, Received: func(t testing.TB, _ []string) []string {
			return idsIn(t, filepath.Join(dir, sinktest.DefaultInstance+".jsonl"))
		}},
		Retry: &sinktest.Failure{Settings: settings, Open: map[string]string{"dir": filepath.Join(dir, "missing")}},
		// Reject is nil: a file never refuses an event for good.
		Outage: &sinktest.Outage{
			Settings: settings,
			Down:     func(t testing.TB) { must(t, os.Rename(dir, dir+".away")) },
			Up:       func(t testing.TB) { must(t, os.Rename(dir+".away", dir)) },
		},
	})
}

// idsIn reads the delivery ids of a JSON-lines file: every sinktest event
// carries its id at data.key.id.
func idsIn(t testing.TB, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Data struct {
				Key struct{ ID string } `json:"key"`
			} `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: a line that is not JSON: %v", path, err)
		}
		ids = append(ids, line.Data.Key.ID)
	}
	return ids
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
