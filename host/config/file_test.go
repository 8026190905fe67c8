package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk/events"
)

func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "evorelay.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const sampleYAML = `
addr: ":7000"
naming: evolution
log_level: debug
max_body_bytes: 1MiB
spool_nosync: true
batch_size: 10
retry_schedule: [1s, 10s, 1m]
server_url: https://engine.example.com
plugins:
  rabbitmq:
    uri: amqp://guest:guest@localhost:5672/
    exchange_type: topic
  sqs:
    region: eu-west-1
    queues: [a, b]
  my-sink:
    Token: abc
  empty:
`

func TestFileValues(t *testing.T) {
	path := writeYAML(t, sampleYAML)
	c := mustLoad(t, []string{"-config", path}, base(t))
	if c.ConfigFile != path {
		t.Errorf("ConfigFile = %q", c.ConfigFile)
	}
	for name, ok := range map[string]bool{
		"addr":           c.Addr == ":7000",
		"naming":         c.Naming == events.NamingEvolution,
		"log_level":      c.LogLevel == hclog.Debug,
		"max_body_bytes": c.MaxBodyBytes == 1<<20,
		"spool_nosync":   c.SpoolNoSync,
		"batch_size":     c.BatchSize == 10,
		"retry_schedule": reflect.DeepEqual(c.RetrySchedule, []time.Duration{time.Second, 10 * time.Second, time.Minute}),
		"server_url":     c.ServerURL == "https://engine.example.com",
		"untouched":      c.ShutdownGrace == 15*time.Second,
	} {
		if !ok {
			t.Errorf("%s not read from the file: %+v", name, c)
		}
	}
}

func TestEnvWinsOverFile(t *testing.T) {
	path := writeYAML(t, sampleYAML)
	c := mustLoad(t, []string{"-config", path}, base(t,
		"EVORELAY_ADDR=:9000",
		"EVORELAY_RETRY_SCHEDULE=5s",
		"EVORELAY_NAMING=seed",
	))
	if c.Addr != ":9000" || c.Naming != events.NamingSeed || !reflect.DeepEqual(c.RetrySchedule, []time.Duration{5 * time.Second}) {
		t.Errorf("env did not win: addr %q naming %v schedule %v", c.Addr, c.Naming, c.RetrySchedule)
	}
	if c.LogLevel != hclog.Debug {
		t.Errorf("file value lost: log level %v", c.LogLevel)
	}
}

func TestEnvFixesABadFileValue(t *testing.T) {
	path := writeYAML(t, "naming: foo\n")
	mustLoad(t, []string{"-config", path}, base(t, "EVORELAY_NAMING=evolution"))
}

func TestFileErrors(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"bad value names variable and file", "naming: foo\n",
			[]string{`EVORELAY_NAMING (naming in `, `evorelay.yaml): "foo" is not one of seed, evolution`}},
		{"list for a single value", "addr: [\":1\", \":2\"]\n",
			[]string{"EVORELAY_ADDR (addr in ", "expected a single value, not a list"}},
		{"empty list", "retry_schedule: []\n",
			[]string{"evorelay.yaml:1: retry_schedule: empty list"}},
		{"mapping for a value", "addr:\n  host: x\n",
			[]string{"evorelay.yaml:2: addr: expected a value or a list of values, not a mapping"}},
		{"unknown key", "adr: \":1\"\n",
			[]string{`evorelay.yaml:1: unknown key "adr"; expected one of addr, api_key,`}},
		{"upper-case key", "ADDR: \":1\"\n",
			[]string{`unknown key "ADDR"`}},
		{"env name as key", "EVORELAY_ADDR: \":1\"\n",
			[]string{`unknown key "EVORELAY_ADDR"`}},
		{"duplicate key", "addr: \":1\"\naddr: \":2\"\n",
			[]string{"evorelay.yaml:2: addr is given twice"}},
		{"not a mapping", "- a\n- b\n",
			[]string{"evorelay.yaml:1: expected a mapping of settings"}},
		{"bad yaml", "addr: [\n",
			[]string{"config: ", "evorelay.yaml: yaml:"}},
		{"plugins not a mapping", "plugins: [rabbitmq]\n",
			[]string{"plugins: expected a mapping of plugin name"}},
		{"plugin section not a mapping", "plugins:\n  rabbitmq: amqp://x\n",
			[]string{"plugins.rabbitmq: expected a mapping of setting to value"}},
		{"plugin value a mapping", "plugins:\n  webhook:\n    headers:\n      a: b\n",
			[]string{"plugins.webhook.headers: expected a value or a list of values, not a mapping"}},
		{"plugin given twice", "plugins:\n  my-sink: {}\n  MY_SINK: {}\n",
			[]string{"plugins.MY_SINK is given twice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeYAML(t, tc.body)
			_, err := Load([]string{"-config", path}, base(t))
			if err == nil {
				t.Fatalf("accepted %q", tc.body)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestEmptyAndNullFile(t *testing.T) {
	for _, body := range []string{"", "# nothing\n", "~\n", "addr:\nplugins:\n"} {
		c := mustLoad(t, []string{"-config", writeYAML(t, body)}, base(t))
		if c.Addr != ":8080" {
			t.Errorf("%q: Addr = %q, want the default", body, c.Addr)
		}
	}
}

func TestFileAnchors(t *testing.T) {
	body := "x: &grace 20s\n"
	// x is unknown: anchors are only usable inside known keys.
	if _, err := Load([]string{"-config", writeYAML(t, body)}, base(t)); err == nil {
		t.Fatal("unknown key accepted")
	}
	body = "shutdown_grace: &g 20s\nretry_max_age: *g\n"
	c := mustLoad(t, []string{"-config", writeYAML(t, body)}, base(t))
	if c.RetryMaxAge != 20*time.Second {
		t.Errorf("alias not followed: %v", c.RetryMaxAge)
	}
}

func TestAPIKeyFromFile(t *testing.T) {
	dir := t.TempDir()
	path := writeYAML(t, "api_key: from-file\ndata_dir: "+dir+"\n")
	setExecutable(t, fakeExe, nil)
	c := mustLoad(t, []string{"-config", path}, nil)
	if c.APIKey != "from-file" || c.APIKeyGenerated || c.DataDir != dir {
		t.Errorf("key %q generated %v dir %q", c.APIKey, c.APIKeyGenerated, c.DataDir)
	}
	if _, err := os.Stat(filepath.Join(dir, APIKeyFileName)); !os.IsNotExist(err) {
		t.Errorf("a key file was written although a key was configured: %v", err)
	}
}
