package config

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// usage says, for every host variable (by key), what it is for, and what
// its default is when the setting's own default is not a plain value.
// TestUsageCoversEverySetting keeps it complete.
var usage = map[string]struct{ def, help string }{
	"ADDR":                 {help: "listen address of the API, the probes and /metrics"},
	"API_KEY":              {def: "generated", help: "key of every route but the probes and /metrics; a generated one is kept in <data dir>/apikey"},
	"DATA_DIR":             {help: "spool, settings, generated key, plugin sockets (created if missing)"},
	"BACKEND":              {help: "where the spool and the settings live: embedded | redis"},
	"REDIS_URL":            {def: "none", help: "redis://[user:password@]host:6379/db, rediss://, unix://, or Sentinels with ?master_name=; required when the backend is redis"},
	"REDIS_PREFIX":         {help: "start of every key of the redis backend, so deployments can share one Redis"},
	"REDIS_TLS_CA":         {def: "none", help: "redis backend: PEM file of the CA that signed a rediss:// server's certificate (default: the system's CAs)"},
	"REDIS_TAKEOVER_AFTER": {help: "redis backend: how long a stopped host's partitions wait before others take them over"},
	"SERVER_URL":           {def: "none", help: "server_url sinks receive for events that carry none"},
	"NAMING":               {help: "event names sent to sinks: seed (MESSAGES_UPSERT) | evolution (messages.upsert)"},
	"PLUGIN_DIR":           {def: "plugins/ beside the binary", help: "where evorelay-sink-<name> binaries are found"},
	"MAX_BODY_BYTES":       {help: "size limit of a request body (media arrive base64-encoded)"},
	"SPOOL_ABSENT_KEEP":    {help: "how long the backlog of a sink whose plugin is gone is kept (it holds back the spool); 0: until DELETE /plugins/<name>"},
	"BODY_MEMORY":          {help: "bytes of request bodies read at once; past it a request is answered 503 before its body is read"},
	"BODY_TIMEOUT":         {help: "a request body that makes no progress this long has its connection closed"},
	"IDLE_TIMEOUT":         {help: "idle keep-alive connections are closed after this long"},
	"MAX_CONNECTIONS":      {help: "most connections served at once; more wait to be accepted"},
	"LOG_LEVEL":            {help: "trace | debug | info | warn | error"},
	"LOG_FORMAT":           {help: "text | json"},
	"RETRY_SCHEDULE":       {help: "delay before each attempt of a delivery; when it runs out, a dead letter"},
	"RETRY_JITTER":         {help: "fraction, 0 to 1, by which each retry delay varies"},
	"RETRY_MAX_AGE":        {help: "give up on a delivery this long after its first attempt (0: never by age)"},
	"SPOOL_MAX_EVENTS":     {help: "events held (log and retries) before ingest answers 503 (0: unbounded)"},
	"SPOOL_MAX_BYTES":      {help: "bytes of events held before ingest answers 503 (0: unbounded)"},
	"SPOOL_NOSYNC":         {help: "skip fsync: BENCHMARKS ONLY, a crash loses accepted events"},
	"SHUTDOWN_GRACE":       {help: "time in-flight deliveries get on SIGTERM"},
	"BATCH_SIZE":           {help: "most deliveries sent to a plugin in one message"},
	"MAX_IN_FLIGHT":        {help: "most deliveries a sink holds leased and unacknowledged (at least the batch size)"},
	"CIRCUIT_FAILURES":     {help: "consecutive failed attempts that open an instance's circuit to a sink; 0: never"},
	"CIRCUIT_COOL_DOWN":    {help: "how long an open circuit holds deliveries, untried, before one probe"},
	"TLS_CERT_FILE":        {def: "none", help: "PEM certificate chain: with the key, serve HTTPS and WSS; reloaded when renewed"},
	"TLS_KEY_FILE":         {def: "none", help: "PEM private key of the certificate"},
	"EGRESS_ALLOW":         {def: "none", help: "CIDRs plugins may connect to despite the default denials (loopback, link-local, metadata), e.g. 127.0.0.1/32"},
	"DEBUG_ADDR":           {def: "none", help: "loopback address serving Go profiles at /debug/pprof/ (no key: keep it on 127.0.0.1)"},
	"EGRESS_DENY":          {def: "none", help: "CIDRs plugins may never connect to, whatever else allows them"},
}

// Usage writes what `evorelay -h` prints: the commands, then every
// setting with its variable, its YAML key, its default and what it is for.
func Usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  evorelay [-config file.yaml]          start the sidecar
  evorelay plugins [-config file.yaml]  list the plugin directory and whether each plugin would load
                                        (also: evorelay -check); exits 1 when one would not
  evorelay -version                     print the version and the plugin protocol version
  evorelay -h                           print this help

Settings are environment variables; the -config file holds the same keys in
lower case without EVORELAY_ (EVORELAY_RETRY_MAX_AGE is retry_max_age). The
environment wins over the file, the file over the defaults. Durations: 90s,
15m, 24h. Sizes: bytes, or 64MiB, 4GiB, 1GB.

`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tYAML KEY\tDEFAULT\tWHAT")
	for _, s := range settings {
		u := usage[s.key]
		def := s.def
		if def == "" {
			def = u.def
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\n", envPrefix, s.key, strings.ToLower(s.key), def, u.help)
	}
	tw.Flush()
	fmt.Fprint(w, `
Plugin <name> receives every EVORELAY_<NAME>_* variable (and the file's
plugins.<name> section), e.g. EVORELAY_RABBITMQ_URI, EVORELAY_NATS_URL,
EVORELAY_SQS_REGION; each plugin's doc.go lists its own.
`)
}

// LogFields returns the effective host settings as key-value pairs for a
// start-up log line, in the order -h lists them: secrets masked, settings
// without a value left out, and the redis backend's left out when the
// backend is not redis.
func (c *Config) LogFields() []any {
	r := c.Redacted()
	var out []any
	if c.ConfigFile != "" {
		out = append(out, "config", c.ConfigFile)
	}
	for _, s := range settings {
		if strings.HasPrefix(s.key, "REDIS_") && c.Backend != BackendRedis {
			continue
		}
		if v := r[envPrefix+s.key]; v != "" {
			out = append(out, envPrefix+s.key, v)
		}
	}
	return out
}
