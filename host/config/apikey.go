package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// apiKeyBytes is how many random bytes a generated key has.
const apiKeyBytes = 32

// loadOrCreateAPIKey returns the key kept in path, or generates one and
// keeps it there. generated tells which happened. Its errors complete the
// sentence "EVORELAY_API_KEY: not set, and …".
func loadOrCreateAPIKey(path string) (key string, generated bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		key = strings.TrimSpace(string(b))
		if key == "" {
			return "", false, fmt.Errorf("%s is empty; delete it to have a key generated, or set EVORELAY_API_KEY", path)
		}
		if _, err := parseAPIKey(key); err != nil {
			return "", false, fmt.Errorf("%s: the stored key %w", path, err)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("reading the stored key failed: %w", err)
	}

	raw := make([]byte, apiKeyBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("generating a key failed: %w", err)
	}
	key = hex.EncodeToString(raw)
	if err := writeFileAtomic(path, []byte(key+"\n")); err != nil {
		return "", false, fmt.Errorf("storing a generated key failed: %w", err)
	}
	return key, true, nil
}

// writeFileAtomic writes data to path with mode 0600, so that path holds
// either nothing or all of data, even after a crash.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
