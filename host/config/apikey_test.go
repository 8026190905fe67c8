package config

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAPIKeyGeneratedThenReused(t *testing.T) {
	dir := t.TempDir()
	setExecutable(t, fakeExe, nil)
	env := []string{"EVORELAY_DATA_DIR=" + dir}

	first := mustLoad(t, nil, env)
	if !first.APIKeyGenerated {
		t.Error("first start: APIKeyGenerated = false")
	}
	if raw, err := hex.DecodeString(first.APIKey); err != nil || len(raw) != 32 {
		t.Errorf("generated key %q is not 32 hex-encoded bytes", first.APIKey)
	}
	path := filepath.Join(dir, APIKeyFileName)
	if first.APIKeyFile != path {
		t.Errorf("APIKeyFile = %q, want %q", first.APIKeyFile, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("key file mode %o, want 600", mode)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only the key file (no temporary left)", len(entries))
	}

	second := mustLoad(t, nil, env)
	if second.APIKey != first.APIKey {
		t.Errorf("second start key %q, want the stored %q", second.APIKey, first.APIKey)
	}
	if second.APIKeyGenerated {
		t.Error("second start: APIKeyGenerated = true, the key must be shown only once")
	}
	if second.APIKeyFile != path {
		t.Errorf("second start APIKeyFile = %q", second.APIKeyFile)
	}

	// A configured key wins over the stored one and leaves it alone.
	third := mustLoad(t, nil, append(env, "EVORELAY_API_KEY=configured"))
	if third.APIKey != "configured" || third.APIKeyGenerated || third.APIKeyFile != "" {
		t.Errorf("configured key: %q generated %v file %q", third.APIKey, third.APIKeyGenerated, third.APIKeyFile)
	}
}

func TestTwoDataDirsGetDifferentKeys(t *testing.T) {
	setExecutable(t, fakeExe, nil)
	a := mustLoad(t, nil, []string{"EVORELAY_DATA_DIR=" + t.TempDir()})
	b := mustLoad(t, nil, []string{"EVORELAY_DATA_DIR=" + t.TempDir()})
	if a.APIKey == b.APIKey {
		t.Error("two generated keys are equal")
	}
}

func TestStoredAPIKeyIsTrimmed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, APIKeyFileName), []byte("  hand-written\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setExecutable(t, fakeExe, nil)
	c := mustLoad(t, nil, []string{"EVORELAY_DATA_DIR=" + dir})
	if c.APIKey != "hand-written" || c.APIKeyGenerated {
		t.Errorf("key %q generated %v", c.APIKey, c.APIKeyGenerated)
	}
}

func TestBadStoredAPIKey(t *testing.T) {
	for name, body := range map[string]string{
		"empty":       "\n",
		"inner space": "two words\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, APIKeyFileName), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			setExecutable(t, fakeExe, nil)
			_, err := Load(nil, []string{"EVORELAY_DATA_DIR=" + dir})
			if err == nil || !strings.HasPrefix(err.Error(), "EVORELAY_API_KEY: not set, and "+filepath.Join(dir, APIKeyFileName)) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestUnreadableStoredAPIKey(t *testing.T) {
	dir := t.TempDir()
	// A directory where the key file should be cannot be read as one.
	if err := os.Mkdir(filepath.Join(dir, APIKeyFileName), 0o700); err != nil {
		t.Fatal(err)
	}
	setExecutable(t, fakeExe, nil)
	_, err := Load(nil, []string{"EVORELAY_DATA_DIR=" + dir})
	if err == nil || !strings.HasPrefix(err.Error(), "EVORELAY_API_KEY: not set, and reading the stored key failed") {
		t.Fatalf("err = %v", err)
	}
}
