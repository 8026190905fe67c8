package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func openEmbedded(t *testing.T, dir string) *Embedded {
	t.Helper()
	e, err := OpenEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEmbeddedSetReopenPersists(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, openEmbedded(t, dir))
	mustSet(t, s, "webhook", "inst1", `{"url":"https://x","enabled":true,"events":["MESSAGES_UPSERT"]}`)
	mustSet(t, s, "webhook", "inst2", `{"enabled":false}`)
	mustSet(t, s, "rabbitmq", "inst1", `{"enabled":true}`)
	mustSet(t, s, "nats", "gone", `{"enabled":true}`)
	if err := s.Disable(context.Background(), "webhook", "inst1", "rejected by plugin"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(context.Background(), "nats", "gone"); err != nil {
		t.Fatal(err)
	}
	want := map[[2]string]Settings{}
	for _, k := range [][2]string{{"webhook", "inst1"}, {"webhook", "inst2"}, {"rabbitmq", "inst1"}} {
		st, _ := s.Get(k[0], k[1])
		want[k] = st
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, EmbeddedFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("settings file: %v %v", fi, err)
	}

	s2 := mustOpen(t, openEmbedded(t, dir))
	defer s2.Close()
	for k, w := range want {
		got, ok := s2.Get(k[0], k[1])
		if !ok || !reflect.DeepEqual(got, w) {
			t.Errorf("%v after reopen = %+v, want %+v", k, got, w)
		}
	}
	if got, _ := s2.Get("webhook", "inst1"); got.Enabled || !strings.Contains(string(got.Raw), `"disabled_reason":"rejected by plugin"`) {
		t.Errorf("Disable not persisted: %s", got.Raw)
	}
	if _, ok := s2.Get("nats", "gone"); ok {
		t.Error("Delete not persisted")
	}
	if got := s2.Instances("webhook"); !reflect.DeepEqual(got, []string{"inst1", "inst2"}) {
		t.Errorf("Instances = %v", got)
	}
}

func TestEmbeddedCancelledContext(t *testing.T) {
	e := openEmbedded(t, t.TempDir())
	s := mustOpen(t, e)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Set(ctx, "webhook", "i", json.RawMessage(`{"enabled":true}`)); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	if _, ok := s.Get("webhook", "i"); ok {
		t.Error("memory shows settings that were not stored")
	}
}

func TestEmbeddedIsLocked(t *testing.T) {
	dir := t.TempDir()
	e := openEmbedded(t, dir)
	defer e.Close()
	_, err := OpenEmbedded(dir)
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("second open: err = %v", err)
	}
}

func TestEmbeddedOpenError(t *testing.T) {
	_, err := OpenEmbedded(filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.HasPrefix(err.Error(), "store: open ") {
		t.Errorf("err = %v", err)
	}
}
