package store

import (
	"path/filepath"
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
