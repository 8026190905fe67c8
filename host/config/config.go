package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
)

// Storage backends (EVORELAY_BACKEND).
const (
	BackendEmbedded = "embedded"
	BackendRedis    = "redis"
)

// Log formats (EVORELAY_LOG_FORMAT).
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// envPrefix starts every variable the sidecar reads.
const envPrefix = "EVORELAY_"

// APIKeyFileName is the file in the data directory that holds a generated
// API key.
const APIKeyFileName = "apikey"

// Config is the sidecar's validated process settings.
type Config struct {
	// ConfigFile is the YAML file given with -config, or "" when none was.
	ConfigFile string

	// Addr is the listen address (EVORELAY_ADDR).
	Addr string
	// APIKey is the key every authenticated route requires
	// (EVORELAY_API_KEY, or the one kept in APIKeyFile).
	APIKey string
	// APIKeyGenerated is true when this start generated APIKey; it is
	// false when the key was configured or read from APIKeyFile.
	APIKeyGenerated bool
	// APIKeyFile is the file APIKey was read from or written to, or ""
	// when the key was configured.
	APIKeyFile string
	// DataDir is the data directory, absolute, and exists
	// (EVORELAY_DATA_DIR).
	DataDir string
	// Backend is BackendEmbedded or BackendRedis (EVORELAY_BACKEND).
	Backend string
	// RedisURL is the Redis URL (EVORELAY_REDIS_URL); it is set and
	// parses when Backend is BackendRedis.
	RedisURL string
	// RedisPrefix starts every key of the redis backend
	// (EVORELAY_REDIS_PREFIX), so that deployments can share one Redis.
	RedisPrefix string
	// RedisTakeoverAfter is how long the partitions of a host that stopped
	// renewing their leases wait before the other hosts take them over
	// (EVORELAY_REDIS_TAKEOVER_AFTER).
	RedisTakeoverAfter time.Duration
	// RedisTLSCA is the PEM file of the CA that signed a rediss:// server's
	// certificate, or "" for the system's CAs (EVORELAY_REDIS_TLS_CA).
	RedisTLSCA string
	// ServerURL is the server_url sinks receive when the engine sent none,
	// an absolute http(s) URL or "" (EVORELAY_SERVER_URL).
	ServerURL string
	// Naming is how event names are written to sinks (EVORELAY_NAMING).
	Naming events.Naming
	// PluginDir is where plugin binaries are found (EVORELAY_PLUGIN_DIR).
	PluginDir string
	// MaxBodyBytes is the size limit of a request body
	// (EVORELAY_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// AbsentSinkKeep is how long the spool keeps the backlog of a sink
	// whose plugin is no longer loaded; 0 keeps it until dropped through
	// the API (EVORELAY_SPOOL_ABSENT_KEEP).
	AbsentSinkKeep time.Duration
	// BodyMemory bounds the bytes of request bodies being read at once;
	// a request that would pass it is answered 503 before its body is
	// read. At least MaxBodyBytes (EVORELAY_BODY_MEMORY).
	BodyMemory int64
	// BodyTimeout is how long a request body may make no progress before
	// its connection is closed (EVORELAY_BODY_TIMEOUT).
	BodyTimeout time.Duration
	// IdleTimeout is how long an idle keep-alive connection is kept
	// (EVORELAY_IDLE_TIMEOUT).
	IdleTimeout time.Duration
	// MaxConnections caps the connections served at once; more wait to be
	// accepted (EVORELAY_MAX_CONNECTIONS).
	MaxConnections int
	// LogLevel is one of hclog.Trace, Debug, Info, Warn, Error
	// (EVORELAY_LOG_LEVEL).
	LogLevel hclog.Level
	// LogFormat is LogFormatText or LogFormatJSON (EVORELAY_LOG_FORMAT).
	LogFormat string
	// RetrySchedule is the delay before each attempt of a delivery: the
	// first entry before attempt 1, and so on; when it runs out the
	// delivery is dead-lettered. Never empty, no entry is negative
	// (EVORELAY_RETRY_SCHEDULE).
	RetrySchedule []time.Duration
	// RetryJitter is the fraction, 0 to 1, by which a retry delay is
	// randomly varied (EVORELAY_RETRY_JITTER).
	RetryJitter float64
	// RetryMaxAge is how long after its first attempt a delivery is still
	// retried; 0 means no age limit (EVORELAY_RETRY_MAX_AGE).
	RetryMaxAge time.Duration
	// SpoolMaxEvents is the most events the spool holds before ingest
	// answers 503; 0 means unbounded (EVORELAY_SPOOL_MAX_EVENTS).
	SpoolMaxEvents int64
	// SpoolMaxBytes is the most bytes of events the spool holds before
	// ingest answers 503; 0 means unbounded (EVORELAY_SPOOL_MAX_BYTES).
	SpoolMaxBytes int64
	// SpoolNoSync makes the spool skip fsync: for benchmarks only, it
	// loses acknowledged events on a crash (EVORELAY_SPOOL_NOSYNC).
	SpoolNoSync bool
	// ShutdownGrace is how long shutdown waits for in-flight work
	// (EVORELAY_SHUTDOWN_GRACE).
	ShutdownGrace time.Duration
	// BatchSize is the most deliveries sent to a plugin in one message
	// (EVORELAY_BATCH_SIZE).
	BatchSize int
	// MaxInFlight is the most deliveries a sink has unacknowledged; at
	// least BatchSize (EVORELAY_MAX_IN_FLIGHT).
	MaxInFlight int
	// CircuitFailures is how many consecutive failed attempts open an
	// instance's circuit to a sink; 0 turns circuit breaking off
	// (EVORELAY_CIRCUIT_FAILURES).
	CircuitFailures int
	// CircuitCoolDown is how long an open circuit waits before it probes
	// (EVORELAY_CIRCUIT_COOL_DOWN).
	CircuitCoolDown time.Duration
	// TLSCertFile and TLSKeyFile, both set or neither, make the sidecar
	// serve HTTPS and WSS (EVORELAY_TLS_CERT_FILE, EVORELAY_TLS_KEY_FILE).
	TLSCertFile, TLSKeyFile string
	// DebugAddr, if set, is a loopback address serving Go's profiles
	// (net/http/pprof) without authentication (EVORELAY_DEBUG_ADDR).
	DebugAddr string
	// EgressAllow and EgressDeny change the egress policy every plugin
	// gets: addresses allowed despite the default denials
	// (EVORELAY_EGRESS_ALLOW), and refused whatever else says
	// (EVORELAY_EGRESS_DENY). See Config.Egress.
	EgressAllow, EgressDeny []netip.Prefix

	// env holds the EVORELAY_* variables, non-empty ones only.
	env map[string]string
	// plugins holds the file's plugin sections: env-style plugin name
	// (RABBITMQ) → key → value.
	plugins map[string]map[string]string
}

// Egress is the policy the host hands every plugin.
func (c *Config) Egress() egress.Policy { return egress.New(c.EgressAllow, c.EgressDeny) }

// executable finds the running binary; a variable so tests can replace it.
var executable = os.Executable

// Load reads the settings. args are the command-line arguments without the
// program name (os.Args[1:]); environ is the environment as os.Environ
// returns it. Load creates the data directory if it is missing, and, when
// no API key is configured, reads or generates <data dir>/apikey.
//
// A bad setting makes Load return an error that names the variable; when
// several are bad, the error lists them all, one a line. Given -h or
// -help, Load returns an error matching flag.ErrHelp.
func Load(args []string, environ []string) (*Config, error) {
	return load(args, environ, true)
}

// Parse reads and checks the settings as Load does, but changes nothing
// on disk: the data directory is not created and no API key is generated
// (APIKey stays empty when none is configured). It is for commands that
// inspect the settings without starting the sidecar.
func Parse(args []string, environ []string) (*Config, error) {
	return load(args, environ, false)
}

func load(args []string, environ []string, prepare bool) (*Config, error) {
	fs := flag.NewFlagSet("evorelay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("config", "", "YAML `file` with settings; environment variables win over it")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("config: unexpected argument %q; the only flag is -config path.yaml", fs.Arg(0))
	}

	c := &Config{ConfigFile: *file, env: envMap(environ)}
	var fileValues map[string]fileValue
	if c.ConfigFile != "" {
		var err error
		fileValues, c.plugins, err = readFile(c.ConfigFile)
		if err != nil {
			return nil, err
		}
	}

	var errs []error
	for _, s := range settings {
		name := envPrefix + s.key
		v, where := s.def, ""
		if fv, ok := fileValues[strings.ToLower(s.key)]; ok {
			v, where = fv.value, fmt.Sprintf(" (%s in %s)", strings.ToLower(s.key), c.ConfigFile)
			if fv.list && !s.list {
				errs = append(errs, fmt.Errorf("%s%s: expected a single value, not a list", name, where))
				continue
			}
		}
		if ev, ok := c.env[name]; ok {
			v, where = ev, ""
		}
		if v == "" {
			continue // unset, and no default: the field stays zero
		}
		if err := s.parse(c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s%s: %w", name, where, err))
		}
	}
	if len(errs) == 0 {
		errs = c.check()
	}
	if len(errs) == 0 && prepare {
		if err := c.prepare(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// check validates what depends on more than one setting, and fills the
// defaults that are not constants.
func (c *Config) check() []error {
	var errs []error
	if c.Backend == BackendRedis {
		if c.RedisURL == "" {
			errs = append(errs, errors.New("EVORELAY_REDIS_URL: not set; it is required when EVORELAY_BACKEND is redis, e.g. redis://localhost:6379/0"))
		} else if err := checkRedisURL(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("EVORELAY_REDIS_URL: %w", err))
		} else if c.RedisTLSCA != "" && !strings.HasPrefix(c.RedisURL, "rediss://") {
			errs = append(errs, errors.New("EVORELAY_REDIS_TLS_CA: set, but EVORELAY_REDIS_URL is not a rediss:// URL; the CA verifies a Redis reached over TLS"))
		}
		if c.APIKey == "" {
			errs = append(errs, errors.New("EVORELAY_API_KEY: not set; it is required when EVORELAY_BACKEND is redis: every replica must accept the same key, and a generated one would live in one replica's data directory"))
		}
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		errs = append(errs, errors.New("EVORELAY_TLS_CERT_FILE: set without EVORELAY_TLS_KEY_FILE; set both (a PEM certificate chain and its key) to serve HTTPS, or neither"))
	case c.TLSKeyFile != "" && c.TLSCertFile == "":
		errs = append(errs, errors.New("EVORELAY_TLS_KEY_FILE: set without EVORELAY_TLS_CERT_FILE; set both (a PEM certificate chain and its key) to serve HTTPS, or neither"))
	}
	// Room for at least one body of the largest size.
	c.BodyMemory = max(c.BodyMemory, c.MaxBodyBytes)
	if c.MaxInFlight < c.BatchSize {
		errs = append(errs, fmt.Errorf("EVORELAY_MAX_IN_FLIGHT: %d is less than EVORELAY_BATCH_SIZE (%d); expected at least one batch", c.MaxInFlight, c.BatchSize))
	}
	if c.PluginDir == "" {
		exe, err := executable()
		if err != nil {
			errs = append(errs, fmt.Errorf("EVORELAY_PLUGIN_DIR: not set, and the default (plugins/ beside the evorelay binary) is unknown: %v; set it", err))
		} else {
			c.PluginDir = filepath.Join(filepath.Dir(exe), "plugins")
		}
	}
	return errs
}

// prepare creates the data directory and settles the API key.
func (c *Config) prepare() error {
	dir, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("EVORELAY_DATA_DIR: %w", err)
	}
	c.DataDir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("EVORELAY_DATA_DIR: cannot create the data directory: %w", err)
	}
	if c.APIKey != "" {
		return nil
	}
	c.APIKeyFile = filepath.Join(dir, APIKeyFileName)
	c.APIKey, c.APIKeyGenerated, err = loadOrCreateAPIKey(c.APIKeyFile)
	if err != nil {
		return fmt.Errorf("EVORELAY_API_KEY: not set, and %w", err)
	}
	return nil
}

// envMap keeps the non-empty EVORELAY_* entries of environ. As with
// os.Getenv, the first of duplicate entries wins.
func envMap(environ []string) map[string]string {
	m := make(map[string]string)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" || !strings.HasPrefix(k, envPrefix) {
			continue
		}
		if _, dup := m[k]; !dup {
			m[k] = v
		}
	}
	return m
}
