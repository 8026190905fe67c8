// Package config reads the sidecar's process settings: environment
// variables, an optional YAML file given with -config, and the built-in
// defaults, in that order of precedence. It validates every value once at
// start-up, so that a bad setting stops the process with a message naming
// the variable and saying what is expected, e.g.
//
//	EVORELAY_NAMING: "foo" is not one of seed, evolution
//
// It is for the host's own settings and for handing each plugin its
// EVORELAY_<NAME>_* variables. It is not for per-instance sink settings
// (package store) and it does not act on the settings: it only creates the
// data directory and, when no API key is configured, generates one there.
//
// # Settings
//
// Each setting is an environment variable; the YAML file holds the same
// keys in lower case without the EVORELAY_ prefix (EVORELAY_RETRY_MAX_AGE
// is retry_max_age). An environment variable that is set but empty counts
// as unset. Unknown EVORELAY_* variables are not errors: they may belong to
// a plugin.
//
//	Variable                    YAML key          Default
//	EVORELAY_ADDR               addr              :8080
//	EVORELAY_API_KEY            api_key           generated, kept in <data dir>/apikey
//	EVORELAY_DATA_DIR           data_dir          ./data (created if missing)
//	EVORELAY_BACKEND            backend           embedded (embedded | redis)
//	EVORELAY_REDIS_URL          redis_url         none; required when backend is redis
//	EVORELAY_REDIS_PREFIX       redis_prefix      evorelay:
//	EVORELAY_REDIS_TAKEOVER_AFTER redis_takeover_after 15s
//	EVORELAY_SERVER_URL         server_url        none; an absolute http(s) URL when set
//	EVORELAY_NAMING             naming            seed (seed | evolution)
//	EVORELAY_PLUGIN_DIR         plugin_dir        plugins/ beside the evorelay binary
//	EVORELAY_MAX_BODY_BYTES     max_body_bytes    64MiB
//	EVORELAY_SPOOL_ABSENT_KEEP  spool_absent_keep 72h (0 = until dropped through the API)
//	EVORELAY_BODY_MEMORY        body_memory       256MiB (at least max_body_bytes)
//	EVORELAY_BODY_TIMEOUT       body_timeout      60s
//	EVORELAY_IDLE_TIMEOUT       idle_timeout      120s
//	EVORELAY_MAX_CONNECTIONS    max_connections   10000
//	EVORELAY_LOG_LEVEL          log_level         info (trace | debug | info | warn | error)
//	EVORELAY_LOG_FORMAT         log_format        text (text | json)
//	EVORELAY_RETRY_SCHEDULE     retry_schedule    0s,5s,30s,2m,10m,30m,1h,3h,6h,12h
//	EVORELAY_RETRY_JITTER       retry_jitter      0.2 (0 to 1)
//	EVORELAY_RETRY_MAX_AGE      retry_max_age     24h (0 = no age limit)
//	EVORELAY_SPOOL_MAX_EVENTS   spool_max_events  1000000 (0 = unbounded)
//	EVORELAY_SPOOL_MAX_BYTES    spool_max_bytes   4GiB (0 = unbounded)
//	EVORELAY_SPOOL_NOSYNC       spool_nosync      false — BENCHMARKS ONLY, see below
//	EVORELAY_SHUTDOWN_GRACE     shutdown_grace    15s
//	EVORELAY_BATCH_SIZE         batch_size        100
//	EVORELAY_MAX_IN_FLIGHT      max_in_flight     1000 per sink (at least the batch size)
//
// Durations use Go's syntax (90s, 2m, 1h30m). Sizes are a number of bytes,
// optionally with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB,
// GiB, TiB, K, M, G, T (powers of 1024). Enumerated values are not case
// sensitive. Booleans are those strconv.ParseBool reads (true, false, 1, 0).
// In YAML, retry_schedule may also be a list: [0s, 5s, 30s].
//
// EVORELAY_SPOOL_NOSYNC=true makes the spool skip fsync. An event is then
// acknowledged to the engine before it is on disk, and a power loss or
// kernel crash loses it. It exists to measure the cost of durability in
// benchmarks; never set it in production.
//
// # API key
//
// When EVORELAY_API_KEY is not set, the first start generates 32 random
// bytes, writes them hex-encoded to <data dir>/apikey (mode 0600), and sets
// Config.APIKeyGenerated so that the caller can show the key once; later
// starts read the same file.
//
// # Plugin settings
//
// Plugin <name> gets every EVORELAY_<NAME>_* variable (NAME is the name
// upper-cased with '-' written '_'), the prefix cut and the rest lower-cased
// (EVORELAY_RABBITMQ_URI is "uri"), over the keys of its section in the
// file's plugins map. The host's own variables are never handed to a
// plugin, even one whose name is a prefix of them (a plugin called "api"
// does not receive EVORELAY_API_KEY).
//
// # Example file
//
//	addr: ":8080"
//	data_dir: /var/lib/evorelay
//	naming: evolution
//	retry_schedule: [0s, 10s, 1m, 10m, 1h]
//	plugins:
//	  rabbitmq:
//	    uri: amqp://guest:guest@localhost:5672/
//	  sqs:
//	    region: eu-west-1
//
// An unknown top-level key in the file is an error (it is most likely a
// typo); keys inside a plugin's section are the plugin's business.
package config
