package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
)

// setting is one host variable: how to read it into a Config and how to
// show it back.
type setting struct {
	// key is the variable's name without EVORELAY_; lower-cased, it is the
	// YAML key.
	key string
	// def is the default, written as a user would write it; "" means the
	// field stays zero unless set (check may fill it).
	def string
	// list is true when the YAML file may give a list, read as the
	// comma-separated form.
	list bool
	// parse reads a non-empty value into c. Its error says what is wrong
	// and what is expected; the caller prefixes the variable's name.
	parse func(c *Config, v string) error
	// show writes the effective value for logs.
	show func(c *Config) string
}

// settings lists every host variable.
var settings = []setting{
	{
		key: "ADDR", def: ":8080",
		parse: func(c *Config, v string) (err error) { c.Addr, err = parseAddr(v); return },
		show:  func(c *Config) string { return c.Addr },
	},
	{
		key:   "API_KEY",
		parse: func(c *Config, v string) (err error) { c.APIKey, err = parseAPIKey(v); return },
		show:  func(c *Config) string { return maskSecret(c.APIKey) },
	},
	{
		key: "DATA_DIR", def: "./data",
		parse: func(c *Config, v string) error { c.DataDir = v; return nil },
		show:  func(c *Config) string { return c.DataDir },
	},
	{
		key: "BACKEND", def: BackendEmbedded,
		parse: func(c *Config, v string) (err error) {
			c.Backend, err = parseEnum(v, BackendEmbedded, BackendRedis)
			return
		},
		show: func(c *Config) string { return c.Backend },
	},
	{
		// Parsed in check: it is required only when the backend is redis.
		key:   "REDIS_URL",
		parse: func(c *Config, v string) error { c.RedisURL = v; return nil },
		show:  func(c *Config) string { return redactURL(c.RedisURL) },
	},
	{
		key: "REDIS_PREFIX", def: "evorelay:",
		parse: func(c *Config, v string) error { c.RedisPrefix = v; return nil },
		show:  func(c *Config) string { return c.RedisPrefix },
	},
	{
		key: "REDIS_TAKEOVER_AFTER", def: "15s",
		parse: func(c *Config, v string) (err error) {
			c.RedisTakeoverAfter, err = parseDuration(v, 100*time.Millisecond)
			return
		},
		show: func(c *Config) string { return c.RedisTakeoverAfter.String() },
	},
	{
		key:   "REDIS_TLS_CA",
		parse: func(c *Config, v string) error { c.RedisTLSCA = v; return nil },
		show:  func(c *Config) string { return c.RedisTLSCA },
	},
	{
		key:   "SERVER_URL",
		parse: func(c *Config, v string) (err error) { c.ServerURL, err = parseServerURL(v); return },
		show:  func(c *Config) string { return redactURL(c.ServerURL) },
	},
	{
		key: "NAMING", def: "seed",
		parse: func(c *Config, v string) error {
			n, ok := events.ParseNaming(strings.ToLower(v))
			if !ok {
				return fmt.Errorf("%q is not one of seed, evolution", v)
			}
			c.Naming = n
			return nil
		},
		show: func(c *Config) string { return c.Naming.String() },
	},
	{
		// The default, beside the binary, is filled in check.
		key:   "PLUGIN_DIR",
		parse: func(c *Config, v string) error { c.PluginDir = v; return nil },
		show:  func(c *Config) string { return c.PluginDir },
	},
	{
		key: "MAX_BODY_BYTES", def: "64MiB",
		parse: func(c *Config, v string) (err error) {
			c.MaxBodyBytes, err = parseSize(v, 1)
			return
		},
		show: func(c *Config) string { return strconv.FormatInt(c.MaxBodyBytes, 10) },
	},
	{
		key: "SPOOL_ABSENT_KEEP", def: "72h",
		parse: func(c *Config, v string) (err error) { c.AbsentSinkKeep, err = parseDuration(v, 0); return },
		show:  func(c *Config) string { return c.AbsentSinkKeep.String() },
	},
	{
		key: "BODY_MEMORY", def: "256MiB",
		parse: func(c *Config, v string) (err error) {
			c.BodyMemory, err = parseSize(v, 1)
			return
		},
		show: func(c *Config) string { return strconv.FormatInt(c.BodyMemory, 10) },
	},
	{
		key: "BODY_TIMEOUT", def: "60s",
		parse: func(c *Config, v string) (err error) { c.BodyTimeout, err = parseDuration(v, time.Second); return },
		show:  func(c *Config) string { return c.BodyTimeout.String() },
	},
	{
		key: "IDLE_TIMEOUT", def: "120s",
		parse: func(c *Config, v string) (err error) { c.IdleTimeout, err = parseDuration(v, time.Second); return },
		show:  func(c *Config) string { return c.IdleTimeout.String() },
	},
	{
		key: "MAX_CONNECTIONS", def: "10000",
		parse: func(c *Config, v string) error {
			n, err := parseCount(v, 1)
			c.MaxConnections = int(n)
			return err
		},
		show: func(c *Config) string { return strconv.Itoa(c.MaxConnections) },
	},
	{
		key: "LOG_LEVEL", def: "info",
		parse: func(c *Config, v string) error {
			s, err := parseEnum(v, "trace", "debug", "info", "warn", "error")
			c.LogLevel = hclog.LevelFromString(s)
			return err
		},
		show: func(c *Config) string { return c.LogLevel.String() },
	},
	{
		key: "LOG_FORMAT", def: LogFormatText,
		parse: func(c *Config, v string) (err error) {
			c.LogFormat, err = parseEnum(v, LogFormatText, LogFormatJSON)
			return
		},
		show: func(c *Config) string { return c.LogFormat },
	},
	{
		key: "RETRY_SCHEDULE", def: "0s,5s,30s,2m,10m,30m,1h,3h,6h,12h", list: true,
		parse: func(c *Config, v string) (err error) { c.RetrySchedule, err = parseSchedule(v); return },
		show: func(c *Config) string {
			s := make([]string, len(c.RetrySchedule))
			for i, d := range c.RetrySchedule {
				s[i] = d.String()
			}
			return strings.Join(s, ",")
		},
	},
	{
		key: "RETRY_JITTER", def: "0.2",
		parse: func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f >= 0 && f <= 1) {
				return fmt.Errorf("%q is not a fraction; expected a number from 0 to 1, e.g. 0.2", v)
			}
			c.RetryJitter = f
			return nil
		},
		show: func(c *Config) string { return strconv.FormatFloat(c.RetryJitter, 'g', -1, 64) },
	},
	{
		key: "RETRY_MAX_AGE", def: "24h",
		parse: func(c *Config, v string) (err error) { c.RetryMaxAge, err = parseDuration(v, 0); return },
		show:  func(c *Config) string { return c.RetryMaxAge.String() },
	},
	{
		key: "SPOOL_MAX_EVENTS", def: "1000000",
		parse: func(c *Config, v string) (err error) {
			c.SpoolMaxEvents, err = parseCount(v, 0)
			return
		},
		show: func(c *Config) string { return strconv.FormatInt(c.SpoolMaxEvents, 10) },
	},
	{
		key: "SPOOL_MAX_BYTES", def: "4GiB",
		parse: func(c *Config, v string) (err error) {
			c.SpoolMaxBytes, err = parseSize(v, 0)
			return
		},
		show: func(c *Config) string { return strconv.FormatInt(c.SpoolMaxBytes, 10) },
	},
	{
		key: "SPOOL_NOSYNC", def: "false",
		parse: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not a boolean; expected true or false", v)
			}
			c.SpoolNoSync = b
			return nil
		},
		show: func(c *Config) string { return strconv.FormatBool(c.SpoolNoSync) },
	},
	{
		key: "SHUTDOWN_GRACE", def: "15s",
		parse: func(c *Config, v string) (err error) { c.ShutdownGrace, err = parseDuration(v, 0); return },
		show:  func(c *Config) string { return c.ShutdownGrace.String() },
	},
	{
		key: "BATCH_SIZE", def: "100",
		parse: func(c *Config, v string) error {
			n, err := parseCount(v, 1)
			c.BatchSize = int(n)
			return err
		},
		show: func(c *Config) string { return strconv.Itoa(c.BatchSize) },
	},
	{
		key: "EGRESS_ALLOW", list: true,
		parse: func(c *Config, v string) (err error) { c.EgressAllow, err = egress.ParseCIDRs(v); return },
		show:  func(c *Config) string { return showPrefixes(c.EgressAllow) },
	},
	{
		key: "EGRESS_DENY", list: true,
		parse: func(c *Config, v string) (err error) { c.EgressDeny, err = egress.ParseCIDRs(v); return },
		show:  func(c *Config) string { return showPrefixes(c.EgressDeny) },
	},
	{
		key: "MAX_IN_FLIGHT", def: "1000",
		parse: func(c *Config, v string) error {
			n, err := parseCount(v, 1)
			c.MaxInFlight = int(n)
			return err
		},
		show: func(c *Config) string { return strconv.Itoa(c.MaxInFlight) },
	},
	{
		key: "CIRCUIT_FAILURES", def: "20",
		parse: func(c *Config, v string) error {
			n, err := parseCount(v, 0)
			c.CircuitFailures = int(n)
			return err
		},
		show: func(c *Config) string { return strconv.Itoa(c.CircuitFailures) },
	},
	{
		key: "CIRCUIT_COOL_DOWN", def: "30s",
		parse: func(c *Config, v string) (err error) {
			c.CircuitCoolDown, err = parseDuration(v, time.Millisecond)
			return
		},
		show: func(c *Config) string { return c.CircuitCoolDown.String() },
	},
	{
		key:   "TLS_CERT_FILE",
		parse: func(c *Config, v string) error { c.TLSCertFile = v; return nil },
		show:  func(c *Config) string { return c.TLSCertFile },
	},
	{
		key:   "TLS_KEY_FILE",
		parse: func(c *Config, v string) error { c.TLSKeyFile = v; return nil },
		show:  func(c *Config) string { return c.TLSKeyFile },
	},
	{
		key: "DEBUG_ADDR",
		parse: func(c *Config, v string) (err error) {
			if c.DebugAddr, err = parseAddr(v); err != nil {
				return err
			}
			if host, _, _ := net.SplitHostPort(v); !isLoopback(host) {
				return fmt.Errorf("%q is not a loopback address; profiles reveal payloads, so serve them on 127.0.0.1:<port> or [::1]:<port> only", v)
			}
			return nil
		},
		show: func(c *Config) string { return c.DebugAddr },
	},
}

// isLoopback reports whether host (of host:port) is a loopback address
// or localhost.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// hostKeys is the set of the host's variables, EVORELAY_ included.
var hostKeys = func() map[string]bool {
	m := make(map[string]bool, len(settings))
	for _, s := range settings {
		m[envPrefix+s.key] = true
	}
	return m
}()

// Redacted returns the effective host settings for a start-up log, keyed
// by variable name, with the API key masked and passwords taken out of
// URLs. Plugin settings are not included: only a plugin knows which of its
// settings are secret.
func (c *Config) Redacted() map[string]string {
	m := make(map[string]string, len(settings))
	for _, s := range settings {
		m[envPrefix+s.key] = s.show(c)
	}
	return m
}

func showPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// parseEnum returns v lower-cased if it is one of allowed.
func parseEnum(v string, allowed ...string) (string, error) {
	l := strings.ToLower(v)
	for _, a := range allowed {
		if l == a {
			return a, nil
		}
	}
	return "", fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

func parseAddr(v string) (string, error) {
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return "", fmt.Errorf("%q is not a listen address; expected host:port or :port, e.g. :8080", v)
	}
	return v, nil
}

func parseAPIKey(v string) (string, error) {
	if i := strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return "", fmt.Errorf("contains a space or control character at byte %d; expected a single token (check for a trailing newline)", i)
	}
	return v, nil
}

func parseServerURL(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an absolute http(s) URL; expected e.g. https://engine.example.com", v)
	}
	return v, nil
}

func checkRedisURL(v string) error {
	if _, _, err := ParseRedisURL(v); err != nil {
		return fmt.Errorf("%q: %v; expected redis://[user:password@]host:6379/db, rediss://…, unix:///path, or a Sentinel's redis://host:26379?master_name=mymaster", redactURL(v), err)
	}
	return nil
}

// ParseRedisURL reads EVORELAY_REDIS_URL: a redis://, rediss:// or
// unix:// URL of one server (into one), or, with a master_name
// parameter, the Sentinels of a failover setup (into sentinel; more
// Sentinels in addr parameters).
func ParseRedisURL(v string) (one *redis.Options, sentinel *redis.FailoverOptions, err error) {
	u, err := url.Parse(v)
	if err != nil {
		return nil, nil, err
	}
	if u.Query().Has("master_name") {
		sentinel, err = redis.ParseFailoverURL(v)
		return nil, sentinel, err
	}
	one, err = redis.ParseURL(v)
	return one, nil, err
}

// parseDuration reads a Go duration of at least min.
func parseDuration(v string, min time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < min {
		return 0, fmt.Errorf("%q is not a duration of %v or more; expected e.g. 90s, 15m, 24h", v, min)
	}
	return d, nil
}

// parseSchedule reads a comma-separated list of durations.
func parseSchedule(v string) ([]time.Duration, error) {
	parts := strings.Split(v, ",")
	out := make([]time.Duration, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		d, err := time.ParseDuration(p)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q in %q is not a duration of 0s or more; expected a comma-separated list, e.g. 0s,5s,30s,2m", p, v)
		}
		out = append(out, d)
	}
	return out, nil
}

// parseCount reads a whole number of at least min.
func parseCount(v string, min int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 0)
	if err != nil || n < min {
		return 0, fmt.Errorf("%q is not a whole number of %d or more", v, min)
	}
	return n, nil
}

// units maps the size units parseSize accepts, lower-cased, to bytes.
var units = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

var errSize = errors.New("bad size")

// parseSize reads a byte size of at least min: digits, then an optional
// unit (64MiB, 4GB, 1048576).
func parseSize(v string, min int64) (int64, error) {
	n, err := func() (int64, error) {
		i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
		if i < 0 {
			i = len(v)
		}
		if i == 0 {
			return 0, errSize
		}
		n, err := strconv.ParseInt(v[:i], 10, 64)
		if err != nil {
			return 0, err
		}
		mult, ok := units[strings.ToLower(strings.TrimSpace(v[i:]))]
		if !ok || n > math.MaxInt64/mult {
			return 0, errSize
		}
		return n * mult, nil
	}()
	if err != nil || n < min {
		return 0, fmt.Errorf("%q is not a size of %d bytes or more; expected bytes, optionally with a unit, e.g. 67108864, 64MiB, 4GiB", v, min)
	}
	return n, nil
}

// maskSecret hides a secret, keeping only whether it is set.
func maskSecret(s string) string {
	if s == "" {
		return ""
	}
	return "********"
}

// redactURL masks the password of a URL, if it has one.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if s == "" {
			return ""
		}
		return "(unparsable, hidden)"
	}
	return u.Redacted()
}
