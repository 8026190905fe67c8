package config

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk/events"
)

const fakeExe = "/opt/evorelay/bin/evorelay"

// setExecutable makes the running binary appear to be path (or fail).
func setExecutable(t *testing.T, path string, err error) {
	t.Helper()
	old := executable
	executable = func() (string, error) { return path, err }
	t.Cleanup(func() { executable = old })
}

// base is an environment that needs no generated key and keeps the data
// directory in a temporary one; extra entries come first, so they win.
func base(t *testing.T, extra ...string) []string {
	t.Helper()
	setExecutable(t, fakeExe, nil)
	return append(extra,
		"EVORELAY_DATA_DIR="+t.TempDir(),
		"EVORELAY_API_KEY=test-key",
		"PATH=/usr/bin", // not ours: ignored
	)
}

func mustLoad(t *testing.T, args, environ []string) *Config {
	t.Helper()
	c, err := Load(args, environ)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustLoad(t, nil, base(t))
	want := map[string]any{
		"Addr":               ":8080",
		"Backend":            BackendEmbedded,
		"RedisURL":           "",
		"RedisPrefix":        "evorelay:",
		"RedisTakeoverAfter": 15 * time.Second,
		"ServerURL":          "",
		"Naming":             events.NamingSeed,
		"PluginDir":          filepath.Join(filepath.Dir(fakeExe), "plugins"),
		"MaxBodyBytes":       int64(64 << 20),
		"AbsentSinkKeep":     72 * time.Hour,
		"BodyMemory":         int64(256 << 20),
		"BodyTimeout":        60 * time.Second,
		"IdleTimeout":        120 * time.Second,
		"MaxConnections":     10000,
		"LogLevel":           hclog.Info,
		"LogFormat":          LogFormatText,
		"RetrySchedule":      []time.Duration{0, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour},
		"RetryJitter":        0.2,
		"RetryMaxAge":        24 * time.Hour,
		"SpoolMaxEvents":     int64(1_000_000),
		"SpoolMaxBytes":      int64(4 << 30),
		"SpoolNoSync":        false,
		"ShutdownGrace":      15 * time.Second,
		"BatchSize":          100,
		"MaxInFlight":        1000,
		"ConfigFile":         "",
	}
	v := reflect.ValueOf(c).Elem()
	for field, w := range want {
		if got := v.FieldByName(field).Interface(); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %#v, want %#v", field, got, w)
		}
	}
}

func TestDefaultDataDirIsCreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	setExecutable(t, fakeExe, nil)
	c := mustLoad(t, nil, []string{"EVORELAY_DATA_DIR=" + dir, "EVORELAY_API_KEY=k"})
	if c.DataDir != dir {
		t.Errorf("DataDir = %q, want %q", c.DataDir, dir)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("data dir not created: %v", err)
	}
}

func TestRelativeDataDirDefault(t *testing.T) {
	t.Chdir(t.TempDir())
	setExecutable(t, fakeExe, nil)
	c := mustLoad(t, nil, []string{"EVORELAY_API_KEY=k"})
	wd, _ := os.Getwd()
	if want := filepath.Join(wd, "data"); c.DataDir != want {
		t.Errorf("DataDir = %q, want %q", c.DataDir, want)
	}
}

// validCases set one variable to a good value and check the field.
var validCases = []struct {
	env   string
	value string
	check func(c *Config) bool
}{
	{"EVORELAY_ADDR", "127.0.0.1:9090", func(c *Config) bool { return c.Addr == "127.0.0.1:9090" }},
	{"EVORELAY_ADDR", "[::1]:0", func(c *Config) bool { return c.Addr == "[::1]:0" }},
	{"EVORELAY_API_KEY", "B6D711FCDE4D4FD5936544120E713976", func(c *Config) bool {
		return c.APIKey == "B6D711FCDE4D4FD5936544120E713976" && !c.APIKeyGenerated && c.APIKeyFile == ""
	}},
	{"EVORELAY_DATA_DIR", "", nil}, // covered by TestDefaultDataDirIsCreated
	{"EVORELAY_BACKEND", "redis", func(c *Config) bool { return c.Backend == BackendRedis }}, // with REDIS_URL, see below
	{"EVORELAY_BACKEND", "EMBEDDED", func(c *Config) bool { return c.Backend == BackendEmbedded }},
	{"EVORELAY_REDIS_URL", "redis://:secret@localhost:6379/2", func(c *Config) bool { return c.RedisURL == "redis://:secret@localhost:6379/2" }},
	{"EVORELAY_REDIS_URL", "redis://:secret@localhost:26379?master_name=main&addr=localhost:26380", func(c *Config) bool { return strings.Contains(c.RedisURL, "master_name=main") }},
	{"EVORELAY_REDIS_URL", "unix:///run/redis.sock?db=1", func(c *Config) bool { return c.RedisURL == "unix:///run/redis.sock?db=1" }},
	{"EVORELAY_REDIS_PREFIX", "staging:", func(c *Config) bool { return c.RedisPrefix == "staging:" }},
	{"EVORELAY_REDIS_TAKEOVER_AFTER", "5s", func(c *Config) bool { return c.RedisTakeoverAfter == 5*time.Second }},
	{"EVORELAY_REDIS_TLS_CA", "/tls/ca.pem", func(c *Config) bool { return c.RedisTLSCA == "/tls/ca.pem" }}, // with a rediss:// URL
	{"EVORELAY_SERVER_URL", "https://engine.example.com/base", func(c *Config) bool { return c.ServerURL == "https://engine.example.com/base" }},
	{"EVORELAY_SERVER_URL", "http://10.0.0.5:8080", func(c *Config) bool { return c.ServerURL == "http://10.0.0.5:8080" }},
	{"EVORELAY_NAMING", "evolution", func(c *Config) bool { return c.Naming == events.NamingEvolution }},
	{"EVORELAY_NAMING", "Seed", func(c *Config) bool { return c.Naming == events.NamingSeed }},
	{"EVORELAY_PLUGIN_DIR", "/srv/plugins", func(c *Config) bool { return c.PluginDir == "/srv/plugins" }},
	{"EVORELAY_MAX_BODY_BYTES", "1048576", func(c *Config) bool { return c.MaxBodyBytes == 1<<20 }},
	{"EVORELAY_MAX_BODY_BYTES", "10MB", func(c *Config) bool { return c.MaxBodyBytes == 10_000_000 }},
	{"EVORELAY_MAX_BODY_BYTES", "128 MiB", func(c *Config) bool { return c.MaxBodyBytes == 128<<20 }},
	{"EVORELAY_MAX_BODY_BYTES", "2g", func(c *Config) bool { return c.MaxBodyBytes == 2<<30 }},
	{"EVORELAY_LOG_LEVEL", "trace", func(c *Config) bool { return c.LogLevel == hclog.Trace }},
	{"EVORELAY_LOG_LEVEL", "debug", func(c *Config) bool { return c.LogLevel == hclog.Debug }},
	{"EVORELAY_LOG_LEVEL", "WARN", func(c *Config) bool { return c.LogLevel == hclog.Warn }},
	{"EVORELAY_LOG_LEVEL", "error", func(c *Config) bool { return c.LogLevel == hclog.Error }},
	{"EVORELAY_LOG_FORMAT", "json", func(c *Config) bool { return c.LogFormat == LogFormatJSON }},
	{"EVORELAY_DEBUG_ADDR", "127.0.0.1:6060", func(c *Config) bool { return c.DebugAddr == "127.0.0.1:6060" }},
	{"EVORELAY_DEBUG_ADDR", "localhost:6060", func(c *Config) bool { return c.DebugAddr == "localhost:6060" }},
	{"EVORELAY_RETRY_SCHEDULE", "1s, 1m ,1h", func(c *Config) bool {
		return reflect.DeepEqual(c.RetrySchedule, []time.Duration{time.Second, time.Minute, time.Hour})
	}},
	{"EVORELAY_RETRY_SCHEDULE", "0s", func(c *Config) bool { return reflect.DeepEqual(c.RetrySchedule, []time.Duration{0}) }},
	{"EVORELAY_RETRY_JITTER", "0", func(c *Config) bool { return c.RetryJitter == 0 }},
	{"EVORELAY_RETRY_JITTER", "1", func(c *Config) bool { return c.RetryJitter == 1 }},
	{"EVORELAY_RETRY_MAX_AGE", "72h", func(c *Config) bool { return c.RetryMaxAge == 72*time.Hour }},
	{"EVORELAY_RETRY_MAX_AGE", "0s", func(c *Config) bool { return c.RetryMaxAge == 0 }},
	{"EVORELAY_SPOOL_MAX_EVENTS", "0", func(c *Config) bool { return c.SpoolMaxEvents == 0 }},
	{"EVORELAY_SPOOL_MAX_EVENTS", "5000", func(c *Config) bool { return c.SpoolMaxEvents == 5000 }},
	{"EVORELAY_SPOOL_MAX_BYTES", "0", func(c *Config) bool { return c.SpoolMaxBytes == 0 }},
	{"EVORELAY_SPOOL_MAX_BYTES", "1TiB", func(c *Config) bool { return c.SpoolMaxBytes == 1<<40 }},
	{"EVORELAY_SPOOL_NOSYNC", "true", func(c *Config) bool { return c.SpoolNoSync }},
	{"EVORELAY_SPOOL_NOSYNC", "0", func(c *Config) bool { return !c.SpoolNoSync }},
	{"EVORELAY_SHUTDOWN_GRACE", "1m30s", func(c *Config) bool { return c.ShutdownGrace == 90*time.Second }},
	{"EVORELAY_SHUTDOWN_GRACE", "0s", func(c *Config) bool { return c.ShutdownGrace == 0 }},
	{"EVORELAY_SPOOL_ABSENT_KEEP", "0s", func(c *Config) bool { return c.AbsentSinkKeep == 0 }},
	{"EVORELAY_BODY_MEMORY", "1GiB", func(c *Config) bool { return c.BodyMemory == 1<<30 }},
	{"EVORELAY_BODY_MEMORY", "1MiB", func(c *Config) bool { return c.BodyMemory == c.MaxBodyBytes }},
	{"EVORELAY_BODY_TIMEOUT", "5m", func(c *Config) bool { return c.BodyTimeout == 5*time.Minute }},
	{"EVORELAY_IDLE_TIMEOUT", "30s", func(c *Config) bool { return c.IdleTimeout == 30*time.Second }},
	{"EVORELAY_MAX_CONNECTIONS", "500", func(c *Config) bool { return c.MaxConnections == 500 }},
	{"EVORELAY_BATCH_SIZE", "1", func(c *Config) bool { return c.BatchSize == 1 }},
	{"EVORELAY_BATCH_SIZE", "1000", func(c *Config) bool { return c.BatchSize == 1000 }},
	{"EVORELAY_MAX_IN_FLIGHT", "100", func(c *Config) bool { return c.MaxInFlight == 100 }},
	{"EVORELAY_MAX_IN_FLIGHT", "50000", func(c *Config) bool { return c.MaxInFlight == 50000 }},
	{"EVORELAY_CIRCUIT_FAILURES", "0", func(c *Config) bool { return c.CircuitFailures == 0 }},
	{"EVORELAY_CIRCUIT_COOL_DOWN", "2m", func(c *Config) bool { return c.CircuitCoolDown == 2*time.Minute }},
	{"EVORELAY_TLS_CERT_FILE", "/tls/tls.crt", func(c *Config) bool { return c.TLSCertFile == "/tls/tls.crt" }}, // with its key
	{"EVORELAY_TLS_KEY_FILE", "/tls/tls.key", func(c *Config) bool { return c.TLSKeyFile == "/tls/tls.key" }},   // with its cert
	{"EVORELAY_EGRESS_ALLOW", "127.0.0.0/8, ::1,169.254.169.254", func(c *Config) bool {
		return showPrefixes(c.EgressAllow) == "127.0.0.0/8,::1/128,169.254.169.254/32" &&
			c.Egress().Check(netip.MustParseAddr("127.0.0.1")) == nil
	}},
	{"EVORELAY_EGRESS_DENY", "10.0.0.0/8", func(c *Config) bool {
		return showPrefixes(c.EgressDeny) == "10.0.0.0/8" && c.Egress().Check(netip.MustParseAddr("10.1.2.3")) != nil
	}},
}

func TestValidValues(t *testing.T) {
	for _, tc := range validCases {
		if tc.check == nil {
			continue
		}
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			env := base(t, tc.env+"="+tc.value)
			if tc.env == "EVORELAY_BACKEND" {
				env = append(env, "EVORELAY_REDIS_URL=redis://localhost:6379/0")
			}
			switch tc.env {
			case "EVORELAY_TLS_CERT_FILE":
				env = append(env, "EVORELAY_TLS_KEY_FILE=/tls/tls.key")
			case "EVORELAY_TLS_KEY_FILE":
				env = append(env, "EVORELAY_TLS_CERT_FILE=/tls/tls.crt")
			}
			c := mustLoad(t, nil, env)
			if !tc.check(c) {
				t.Errorf("%s=%q not read as expected: %+v", tc.env, tc.value, c)
			}
		})
	}
}

// invalidCases set one variable to a bad value; the error must name the
// variable and contain want.
var invalidCases = []struct {
	env   string
	value string
	want  string
}{
	{"EVORELAY_ADDR", "8080", `"8080" is not a listen address; expected host:port or :port`},
	{"EVORELAY_ADDR", ":http-alt", "is not a listen address"},
	{"EVORELAY_ADDR", ":99999", "is not a listen address"},
	{"EVORELAY_API_KEY", "abc\n", "contains a space or control character at byte 3"},
	{"EVORELAY_API_KEY", "two words", "contains a space"},
	{"EVORELAY_BACKEND", "postgres", `"postgres" is not one of embedded, redis`},
	{"EVORELAY_REDIS_URL", "http://localhost:6379", "expected redis://"}, // with BACKEND=redis
	{"EVORELAY_REDIS_TAKEOVER_AFTER", "10ms", `"10ms" is not a duration of 100ms or more`},
	{"EVORELAY_REDIS_TLS_CA", "/tls/ca.pem", "is not a rediss:// URL"}, // with BACKEND=redis and a redis:// URL
	{"EVORELAY_SERVER_URL", "engine.example.com", `"engine.example.com" is not an absolute http(s) URL`},
	{"EVORELAY_SERVER_URL", "ftp://engine.example.com", "is not an absolute http(s) URL"},
	{"EVORELAY_SERVER_URL", "https://", "is not an absolute http(s) URL"},
	{"EVORELAY_NAMING", "foo", `"foo" is not one of seed, evolution`},
	{"EVORELAY_MAX_BODY_BYTES", "0", `"0" is not a size of 1 bytes or more`},
	{"EVORELAY_MAX_BODY_BYTES", "64 furlongs", "is not a size"},
	{"EVORELAY_MAX_BODY_BYTES", "MiB", "is not a size"},
	{"EVORELAY_MAX_BODY_BYTES", "-5", "is not a size"},
	{"EVORELAY_MAX_BODY_BYTES", "99999999999TiB", "is not a size"},
	{"EVORELAY_LOG_LEVEL", "verbose", `"verbose" is not one of trace, debug, info, warn, error`},
	{"EVORELAY_LOG_LEVEL", "off", "is not one of trace"},
	{"EVORELAY_LOG_FORMAT", "xml", `"xml" is not one of text, json`},
	{"EVORELAY_DEBUG_ADDR", ":6060", `":6060" is not a loopback address`},
	{"EVORELAY_DEBUG_ADDR", "0.0.0.0:6060", "is not a loopback address"},
	{"EVORELAY_RETRY_SCHEDULE", "0s,5x", `"5x" in "0s,5x" is not a duration`},
	{"EVORELAY_RETRY_SCHEDULE", "1s,-1s", `"-1s" in "1s,-1s" is not a duration of 0s or more`},
	{"EVORELAY_RETRY_SCHEDULE", "1s,,2s", `"" in "1s,,2s" is not a duration`},
	{"EVORELAY_RETRY_JITTER", "1.5", `"1.5" is not a fraction; expected a number from 0 to 1`},
	{"EVORELAY_RETRY_JITTER", "-0.1", "is not a fraction"},
	{"EVORELAY_RETRY_JITTER", "NaN", "is not a fraction"},
	{"EVORELAY_RETRY_MAX_AGE", "1 day", `"1 day" is not a duration`},
	{"EVORELAY_RETRY_MAX_AGE", "-1h", "is not a duration of 0s or more"},
	{"EVORELAY_SPOOL_MAX_EVENTS", "-1", `"-1" is not a whole number of 0 or more`},
	{"EVORELAY_SPOOL_MAX_EVENTS", "1e6", "is not a whole number"},
	{"EVORELAY_SPOOL_MAX_BYTES", "4 gigs", "is not a size"},
	{"EVORELAY_SPOOL_NOSYNC", "yes", `"yes" is not a boolean; expected true or false`},
	{"EVORELAY_SHUTDOWN_GRACE", "15", `"15" is not a duration`},
	{"EVORELAY_SPOOL_ABSENT_KEEP", "a week", "is not a duration"},
	{"EVORELAY_BODY_MEMORY", "lots", "lots"},
	{"EVORELAY_BODY_TIMEOUT", "0s", "is not a duration of 1s or more"},
	{"EVORELAY_IDLE_TIMEOUT", "forever", "is not a duration"},
	{"EVORELAY_MAX_CONNECTIONS", "0", "is not a whole number of 1 or more"},
	{"EVORELAY_BATCH_SIZE", "0", `"0" is not a whole number of 1 or more`},
	{"EVORELAY_BATCH_SIZE", "ten", "is not a whole number"},
	{"EVORELAY_MAX_IN_FLIGHT", "0", "is not a whole number of 1 or more"},
	{"EVORELAY_CIRCUIT_FAILURES", "-1", "is not a whole number of 0 or more"},
	{"EVORELAY_CIRCUIT_COOL_DOWN", "0s", "is not a duration of 1ms or more"},
	{"EVORELAY_TLS_CERT_FILE", "/tls/tls.crt", "set without EVORELAY_TLS_KEY_FILE"},
	{"EVORELAY_TLS_KEY_FILE", "/tls/tls.key", "set without EVORELAY_TLS_CERT_FILE"},
	{"EVORELAY_MAX_IN_FLIGHT", "50", "50 is less than EVORELAY_BATCH_SIZE (100)"},
	{"EVORELAY_EGRESS_ALLOW", "127.0.0.0/8,localhost", `"localhost" is not a CIDR; expected e.g. 10.0.0.0/8`},
	{"EVORELAY_EGRESS_DENY", "10.0.0.0/33", `"10.0.0.0/33" is not a CIDR`},
}

func TestInvalidValues(t *testing.T) {
	for _, tc := range invalidCases {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			env := base(t, tc.env+"="+tc.value)
			if tc.env == "EVORELAY_REDIS_URL" {
				env = append(env, "EVORELAY_BACKEND=redis")
			}
			if tc.env == "EVORELAY_REDIS_TLS_CA" {
				env = append(env, "EVORELAY_BACKEND=redis", "EVORELAY_REDIS_URL=redis://localhost:6379/0")
			}
			_, err := Load(nil, env)
			if err == nil {
				t.Fatalf("Load accepted %s=%q", tc.env, tc.value)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tc.env+": ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q\nwant it to start with %q and contain %q", msg, tc.env+": ", tc.want)
			}
		})
	}
}

// TestEverySettingIsTested keeps the tables above complete.
func TestEverySettingIsTested(t *testing.T) {
	valid, invalid := map[string]bool{}, map[string]bool{}
	for _, tc := range validCases {
		valid[tc.env] = true
	}
	for _, tc := range invalidCases {
		invalid[tc.env] = true
	}
	noInvalid := map[string]bool{ // any value is accepted
		"EVORELAY_DATA_DIR": true, "EVORELAY_PLUGIN_DIR": true, "EVORELAY_REDIS_PREFIX": true,
	}
	for _, s := range settings {
		name := envPrefix + s.key
		if !valid[name] {
			t.Errorf("%s has no valid case", name)
		}
		if !invalid[name] && !noInvalid[name] {
			t.Errorf("%s has no invalid case", name)
		}
	}
}

// TestDefaultsParse checks that every default is accepted by its own
// parser, so a typo in the table cannot ship.
func TestDefaultsParse(t *testing.T) {
	for _, s := range settings {
		if s.def == "" {
			continue
		}
		if err := s.parse(&Config{}, s.def); err != nil {
			t.Errorf("EVORELAY_%s default %q: %v", s.key, s.def, err)
		}
	}
}

func TestRedisBackendNeedsURL(t *testing.T) {
	_, err := Load(nil, base(t, "EVORELAY_BACKEND=redis"))
	if err == nil || !strings.HasPrefix(err.Error(), "EVORELAY_REDIS_URL: not set; it is required when EVORELAY_BACKEND is redis") {
		t.Fatalf("err = %v", err)
	}
	// The URL is not checked when it is not used.
	c := mustLoad(t, nil, base(t, "EVORELAY_REDIS_URL=not a url"))
	if c.Backend != BackendEmbedded {
		t.Errorf("Backend = %q", c.Backend)
	}
}

// With the redis backend, replicas must share one key: a generated one
// would be one replica's.
func TestRedisBackendNeedsAPIKey(t *testing.T) {
	env := []string{"EVORELAY_DATA_DIR=" + t.TempDir(), "EVORELAY_BACKEND=redis", "EVORELAY_REDIS_URL=redis://localhost:6379/0"}
	setExecutable(t, fakeExe, nil)
	_, err := Load(nil, env)
	if err == nil || !strings.HasPrefix(err.Error(), "EVORELAY_API_KEY: not set; it is required when EVORELAY_BACKEND is redis") {
		t.Fatalf("err = %v", err)
	}
}

func TestRedisURLErrorHidesPassword(t *testing.T) {
	_, err := Load(nil, base(t, "EVORELAY_BACKEND=redis", "EVORELAY_REDIS_URL=redis://:hunter2@localhost:6379/notanumber"))
	if err == nil {
		t.Fatal("bad database number accepted")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestSeveralErrorsAreAllReported(t *testing.T) {
	_, err := Load(nil, base(t, "EVORELAY_NAMING=foo", "EVORELAY_BATCH_SIZE=x"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"EVORELAY_NAMING: ", "EVORELAY_BATCH_SIZE: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestEmptyVariableIsUnset(t *testing.T) {
	c := mustLoad(t, nil, base(t, "EVORELAY_ADDR=", "EVORELAY_NAMING="))
	if c.Addr != ":8080" || c.Naming != events.NamingSeed {
		t.Errorf("Addr %q, Naming %v: empty variables not read as unset", c.Addr, c.Naming)
	}
}

func TestUnknownHostVariablesAreNotErrors(t *testing.T) {
	mustLoad(t, nil, base(t, "EVORELAY_FUTURE_THING=1", "EVORELAY_KAFKA_BROKERS=a:9092", "EVORELAY_=x"))
}

func TestFirstDuplicateWins(t *testing.T) {
	c := mustLoad(t, nil, base(t, "EVORELAY_ADDR=:1", "EVORELAY_ADDR=:2"))
	if c.Addr != ":1" {
		t.Errorf("Addr = %q, want :1 (as os.Getenv)", c.Addr)
	}
}

func TestPluginDirDefaultNeedsExecutable(t *testing.T) {
	env := base(t)
	setExecutable(t, "", errors.New("no /proc"))
	_, err := Load(nil, env)
	if err == nil || !strings.HasPrefix(err.Error(), "EVORELAY_PLUGIN_DIR: not set") {
		t.Fatalf("err = %v", err)
	}
	// Setting it makes the executable irrelevant.
	c := mustLoad(t, nil, append(env, "EVORELAY_PLUGIN_DIR=/p"))
	if c.PluginDir != "/p" {
		t.Errorf("PluginDir = %q", c.PluginDir)
	}
}

func TestDataDirThatCannotBeCreated(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	setExecutable(t, fakeExe, nil)
	_, err := Load(nil, []string{"EVORELAY_DATA_DIR=" + filepath.Join(file, "data"), "EVORELAY_API_KEY=k"})
	if err == nil || !strings.HasPrefix(err.Error(), "EVORELAY_DATA_DIR: cannot create the data directory") {
		t.Fatalf("err = %v", err)
	}
}

func TestFlags(t *testing.T) {
	env := base(t)
	if _, err := Load([]string{"-h"}, env); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
	if _, err := Load([]string{"-nope"}, env); err == nil || !strings.Contains(err.Error(), "-nope") {
		t.Errorf("unknown flag: err = %v", err)
	}
	if _, err := Load([]string{"extra"}, env); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("positional argument: err = %v", err)
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if _, err := Load([]string{"-config", missing}, env); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestRedacted(t *testing.T) {
	c := mustLoad(t, nil, base(t,
		"EVORELAY_API_KEY=super-secret-key",
		"EVORELAY_BACKEND=redis",
		"EVORELAY_REDIS_URL=redis://user:hunter2@localhost:6379/0",
		"EVORELAY_SERVER_URL=https://a:b-secret@engine.example.com",
	))
	r := c.Redacted()
	if len(r) != len(settings) {
		t.Errorf("Redacted has %d keys, want %d", len(r), len(settings))
	}
	for k, v := range r {
		for _, secret := range []string{"super-secret-key", "hunter2", "b-secret"} {
			if strings.Contains(v, secret) {
				t.Errorf("%s = %q shows a secret", k, v)
			}
		}
	}
	if r["EVORELAY_API_KEY"] == "" {
		t.Error("EVORELAY_API_KEY: a set key shows as unset")
	}
	for k, want := range map[string]string{
		"EVORELAY_ADDR":           ":8080",
		"EVORELAY_BACKEND":        "redis",
		"EVORELAY_REDIS_URL":      "redis://user:xxxxx@localhost:6379/0",
		"EVORELAY_NAMING":         "seed",
		"EVORELAY_RETRY_SCHEDULE": "0s,5s,30s,2m0s,10m0s,30m0s,1h0m0s,3h0m0s,6h0m0s,12h0m0s",
		"EVORELAY_MAX_BODY_BYTES": "67108864",
		"EVORELAY_LOG_LEVEL":      "info",
		"EVORELAY_SPOOL_NOSYNC":   "false",
	} {
		if r[k] != want {
			t.Errorf("%s = %q, want %q", k, r[k], want)
		}
	}
}

func TestUsageCoversEverySetting(t *testing.T) {
	var b strings.Builder
	Usage(&b)
	out := b.String()
	for _, s := range settings {
		u, ok := usage[s.key]
		if !ok || u.help == "" {
			t.Errorf("EVORELAY_%s: no help text in usage", s.key)
		}
		if s.def == "" && u.def == "" {
			t.Errorf("EVORELAY_%s: no default to show in usage", s.key)
		}
		def := s.def
		if def == "" {
			def = u.def
		}
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "EVORELAY_"+s.key+" ") {
				line = l
			}
		}
		if !strings.Contains(line, strings.ToLower(s.key)) || !strings.Contains(line, def) {
			t.Errorf("usage line for EVORELAY_%s = %q, want its YAML key and default %q", s.key, line, def)
		}
	}
	for k := range usage {
		if !hostKeys[envPrefix+k] {
			t.Errorf("usage describes EVORELAY_%s, which is not a setting", k)
		}
	}
}

func TestLogFields(t *testing.T) {
	c := mustLoad(t, nil, base(t, "EVORELAY_API_KEY=super-secret-key"))
	f := c.LogFields()
	if len(f)%2 != 0 {
		t.Fatalf("odd number of fields: %v", f)
	}
	got := map[string]any{}
	for i := 0; i < len(f); i += 2 {
		got[f[i].(string)] = f[i+1]
	}
	if got["EVORELAY_API_KEY"] != "********" || got["EVORELAY_ADDR"] != ":8080" {
		t.Errorf("fields %v: want the key masked and the address", got)
	}
	if _, ok := got["EVORELAY_SERVER_URL"]; ok {
		t.Error("an unset setting without default is logged")
	}
	if _, ok := got["EVORELAY_REDIS_PREFIX"]; ok {
		t.Error("a redis setting is logged with the embedded backend")
	}
}

func TestParseTouchesNothing(t *testing.T) {
	setExecutable(t, fakeExe, nil)
	dir := filepath.Join(t.TempDir(), "data")
	c, err := Parse(nil, []string{"EVORELAY_DATA_DIR=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Parse created the data directory (stat: %v)", err)
	}
	if c.APIKey != "" {
		t.Error("Parse generated an API key")
	}
}
