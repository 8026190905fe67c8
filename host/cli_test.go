package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCommand(t *testing.T, args ...string) (code int, done bool, stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	env := []string{"EVORELAY_PLUGIN_DIR=" + t.TempDir(), "EVORELAY_DATA_DIR=" + filepath.Join(t.TempDir(), "data")}
	code, done = command(args, env, &out, &errOut)
	return code, done, out.String(), errOut.String()
}

func TestHelpListsEverySetting(t *testing.T) {
	code, done, out, _ := runCommand(t, "-h")
	if !done || code != 0 {
		t.Fatalf("-h: done=%v code=%d", done, code)
	}
	for _, want := range []string{"EVORELAY_ADDR", ":8080", "EVORELAY_SHUTDOWN_GRACE", "shutdown_grace", "15s", "evorelay plugins"} {
		if !strings.Contains(out, want) {
			t.Errorf("-h output lacks %q:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	code, done, out, _ := runCommand(t, "-version")
	if !done || code != 0 || !strings.HasPrefix(out, "evorelay ") || !strings.Contains(out, "plugin protocols 1 and 2") {
		t.Fatalf("-version: done=%v code=%d out=%q", done, code, out)
	}
}

func TestServeIsNotACommand(t *testing.T) {
	if _, done, _, _ := runCommand(t, "-config", "x.yaml"); done {
		t.Fatal("-config alone was taken as a command; it starts the sidecar")
	}
}

func TestPluginsCommand(t *testing.T) {
	dir := t.TempDir()
	// A binary that dies before the handshake, and a file that is not a plugin.
	if err := os.WriteFile(filepath.Join(dir, "evorelay-sink-broken"), []byte("#!/bin/sh\necho oops >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	for _, args := range [][]string{{"plugins"}, {"-check"}} {
		var out, errOut strings.Builder
		code, done := command(args, []string{"EVORELAY_PLUGIN_DIR=" + dir, "EVORELAY_DATA_DIR=" + data}, &out, &errOut)
		if !done || code != 1 {
			t.Fatalf("%v: done=%v code=%d (want 1: a plugin would not load); stderr %s", args, done, code, errOut.String())
		}
		lines := strings.Split(out.String(), "\n")
		var broken, readme string
		for _, l := range lines {
			switch {
			case strings.HasPrefix(l, "evorelay-sink-broken "):
				broken = l
			case strings.HasPrefix(l, "README "):
				readme = l
			}
		}
		if !strings.Contains(broken, " broken ") || !strings.Contains(broken, " no ") {
			t.Errorf("%v: the broken plugin's line %q; want its sink name and that it does not load\n%s", args, broken, out.String())
		}
		if !strings.Contains(readme, "ignored") {
			t.Errorf("%v: README's line %q; want it ignored", args, readme)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the plugins command created the data directory (stat: %v)", err)
	}
}

func TestPluginsCommandBadSetting(t *testing.T) {
	var out, errOut strings.Builder
	code, _ := command([]string{"plugins"}, []string{"EVORELAY_NAMING=nope", "EVORELAY_PLUGIN_DIR=" + t.TempDir()}, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "EVORELAY_NAMING") {
		t.Fatalf("code=%d stderr=%q; want 2 and the variable named", code, errOut.String())
	}
}
