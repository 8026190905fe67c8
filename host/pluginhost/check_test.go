package pluginhost

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := pluginDir(t, "evorelay-sink-webhook", "evorelay-sink-hook", "other-tool")
	must(t, os.WriteFile(filepath.Join(dir, "evorelay-sink-notes"), []byte("not executable"), 0o644))
	opts := options(dir)
	opts.SocketDir = t.TempDir()
	got, err := Check(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		loads  bool
		detail string
	}{
		"evorelay-sink-webhook": {true, ""},
		"evorelay-sink-hook":    {false, "name the file evorelay-sink-webhook"},
		"evorelay-sink-notes":   {false, "not executable"},
		"other-tool":            {false, "not named evorelay-sink-<name>"},
	}
	if len(got) != len(want) {
		t.Fatalf("Check = %+v; want one entry for each of %d files", got, len(want))
	}
	for _, e := range got {
		w := want[e.File]
		if e.Loads != w.loads || !strings.Contains(e.Detail, w.detail) {
			t.Errorf("%s: loads=%v detail=%q; want loads=%v and a detail saying %q", e.File, e.Loads, e.Detail, w.loads, w.detail)
		}
	}
	if e := got[len(got)-2]; e.File != "evorelay-sink-webhook" || e.Name != "webhook" || e.Version == "" || !e.Ready {
		t.Errorf("the webhook plugin: %+v; want its name, version and ready", e)
	}
	if _, err := Check(context.Background(), options(filepath.Join(dir, "missing"))); err == nil || !strings.Contains(err.Error(), "EVORELAY_PLUGIN_DIR") {
		t.Errorf("a missing directory: %v; want an error naming EVORELAY_PLUGIN_DIR", err)
	}
}
