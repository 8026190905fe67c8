package sdk

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestParseDuration(t *testing.T) {
	for v, want := range map[string]time.Duration{"10s": 10 * time.Second, "1m30s": 90 * time.Second, "30": 30 * time.Second, "1.5": 1500 * time.Millisecond} {
		if got, err := ParseDuration(v); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "soon", "0", "0s", "-1s", "1e300"} {
		if _, err := ParseDuration(v); err == nil {
			t.Errorf("ParseDuration(%q) accepted", v)
		}
	}
}

func TestParseSize(t *testing.T) {
	for v, want := range map[string]int64{"1": 1, "64MiB": 64 << 20, "2 KiB": 2 << 10, "1GiB": 1 << 30} {
		if got, err := ParseSize(v, 1<<40); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "0", "-1", "1TiB", "2GiB", "lots"} {
		if _, err := ParseSize(v, 1<<30); err == nil {
			t.Errorf("ParseSize(%q, 1GiB) accepted", v)
		}
	}
}

func TestSettingsRead(t *testing.T) {
	type config struct {
		timeout time.Duration
		count   int
		size    int64
		on      bool
		name    string
	}
	read := func(m map[string]string) (config, []string, error) {
		c := config{timeout: time.Second, count: 1, on: true, name: "default"}
		unknown, err := Settings{
			"timeout": Duration(&c.timeout),
			"count":   Count(&c.count, 1, 10),
			"size":    Size(&c.size, 1<<20),
			"on":      Bool(&c.on),
			"name":    Text(&c.name),
		}.Read(m, "EVORELAY_X_")
		return c, unknown, err
	}
	c, unknown, err := read(map[string]string{"timeout": "2s", "count": " 7 ", "size": "1KiB", "on": "false", "name": " a b ", "zeta": "x", "alpha": ""})
	if err != nil || c != (config{2 * time.Second, 7, 1 << 10, false, "a b"}) || strings.Join(unknown, ",") != "EVORELAY_X_ALPHA,EVORELAY_X_ZETA" {
		t.Errorf("Read = %+v, %v, %v; want every setting read, trimmed, and the unknown keys as sorted variables", c, unknown, err)
	}
	if c, _, err := read(map[string]string{"timeout": "", "count": " ", "name": ""}); err != nil || c != (config{time.Second, 1, 0, true, "default"}) {
		t.Errorf("Read of empty values = %+v, %v; want the defaults kept", c, err)
	}
	for in, want := range map[string]string{
		"timeout": `EVORELAY_X_TIMEOUT: "soon" is not a duration`,
		"count":   `EVORELAY_X_COUNT: "soon": expected a whole number from 1 to 10`,
		"size":    `EVORELAY_X_SIZE: "soon": expected a number of bytes from 1 to 1048576`,
		"on":      `EVORELAY_X_ON: "soon" is not a boolean; expected true or false`,
	} {
		if _, _, err := read(map[string]string{in: "soon", "zeta": "x"}); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Read of %s=soon: %v, want %s", in, err, want)
		}
	}
}

func TestConfigReadSettings(t *testing.T) {
	var log strings.Builder
	var n int
	cfg := Config{Settings: map[string]string{"count": "3", "cuont": "4"}, Logger: hclog.New(&hclog.LoggerOptions{Output: &log})}
	if err := cfg.ReadSettings(Settings{"count": Count(&n, 1, 10)}, "EVORELAY_X_"); err != nil || n != 3 {
		t.Errorf("ReadSettings = %v, count %d; want 3", err, n)
	}
	if !strings.Contains(log.String(), "[WARN]  unknown setting ignored: setting=EVORELAY_X_CUONT") {
		t.Errorf("log %q, want a warning naming EVORELAY_X_CUONT", log.String())
	}
	cfg.Logger = nil
	if err := cfg.ReadSettings(Settings{}, "EVORELAY_X_"); err != nil {
		t.Errorf("ReadSettings without a logger: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 10: 4 * time.Second} {
		if got := Backoff(n, 4*time.Second); got < want/2 || got > want {
			t.Errorf("Backoff(%d, 4s) = %v, want from %v to %v", n, got, want/2, want)
		}
	}
}
