package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/evorelay/evorelay/host/pluginhost"
	"github.com/evorelay/evorelay/host/spool"
)

type fakePlugins []pluginhost.Status

func (f fakePlugins) Status() []pluginhost.Status { return f }

func TestStateMetrics(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for _, s := range []string{"webhook", "websocket"} {
		if err := sp.Register(s); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	id := ulid.MustNew(ulid.Timestamp(now.Add(-90*time.Second)), ulid.DefaultEntropy()).String()
	if err := sp.Append(context.Background(), []spool.Event{{ID: id, Instance: "acme", Event: "MESSAGES_UPSERT", Envelope: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	// websocket settles it; webhook has not.
	ds, err := sp.Lease(context.Background(), "websocket", 1)
	if err != nil || len(ds) != 1 {
		t.Fatal(ds, err)
	}
	if err := sp.Resolve("websocket", []spool.Result{{ID: ds[0].ID, Outcome: spool.Done}}); err != nil {
		t.Fatal(err)
	}

	m := newStateMetrics(sp, fakePlugins{
		{Name: "webhook", State: pluginhost.StateRunning, Ready: true},
		{Name: "websocket", State: pluginhost.StateFailed, Restarts: 5,
			Gauges:   map[string]float64{"connections": 3},
			Counters: map[string]float64{"delivered": 7, "dropped_total": 1}},
	})
	m.now = func() time.Time { return now }

	problems, err := testutil.CollectAndLint(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	want := `
# HELP evorelay_plugin_count_total A plugin's own running total (e.g. websocket delivered) since its process started, as of its last health check.
# TYPE evorelay_plugin_count_total counter
evorelay_plugin_count_total{name="delivered",sink="websocket"} 7
evorelay_plugin_count_total{name="dropped",sink="websocket"} 1
# HELP evorelay_plugin_measurement A plugin's own measurement (e.g. websocket connections), as of its last health check.
# TYPE evorelay_plugin_measurement gauge
evorelay_plugin_measurement{name="connections",sink="websocket"} 3
# HELP evorelay_plugin_ready 1 when the plugin's process runs and its health check says it is ready.
# TYPE evorelay_plugin_ready gauge
evorelay_plugin_ready{sink="webhook"} 1
evorelay_plugin_ready{sink="websocket"} 0
# HELP evorelay_sink_oldest_undelivered_seconds Age of the oldest event a sink has not settled (log and retries); 0 when it has none.
# TYPE evorelay_sink_oldest_undelivered_seconds gauge
evorelay_sink_oldest_undelivered_seconds{sink="webhook"} 90
evorelay_sink_oldest_undelivered_seconds{sink="websocket"} 0
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want),
		"evorelay_plugin_count_total", "evorelay_plugin_measurement", "evorelay_plugin_ready", "evorelay_sink_oldest_undelivered_seconds"); err != nil {
		t.Error(err)
	}
	// One series per state, whatever the state: 1 for failed, 0 for the rest.
	if n := testutil.CollectAndCount(m, "evorelay_plugin_state"); n != 2*len(pluginStates) {
		t.Errorf("%d evorelay_plugin_state series, want %d", n, 2*len(pluginStates))
	}
}

// TestReadmeListsEverySeries: every series name the host defines is in
// the README's list.
func TestReadmeListsEverySeries(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`"(evorelay_[a-z_]+)"`)
	n := 0
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllSubmatch(src, -1) {
			n++
			if !strings.Contains(string(readme), "`"+string(m[1])) {
				t.Errorf("%s: series %s is not in README.md's list", path, m[1])
			}
		}
		return nil
	})
	if err != nil || n < 15 {
		t.Fatalf("found %d series names (%v); the scan is broken", n, err)
	}
}
