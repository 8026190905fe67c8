package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// processConfig is the plugin's process settings (EVORELAY_WEBHOOK_*).
type processConfig struct {
	timeout         time.Duration
	allowLinkLocal  bool
	mediaMaxBytes   int64
	mediaTimeout    time.Duration
	maxConnsPerHost int
}

func defaultProcessConfig() processConfig {
	return processConfig{
		timeout:         10 * time.Second,
		mediaMaxBytes:   64 << 20,
		mediaTimeout:    30 * time.Second,
		maxConnsPerHost: 32,
	}
}

// envName is the variable a process settings key came from.
func envName(key string) string { return "EVORELAY_WEBHOOK_" + strings.ToUpper(key) }

// parseProcessConfig reads Config.Settings. It returns the keys it does not
// know, sorted, for the caller to warn about.
func parseProcessConfig(m map[string]string) (processConfig, []string, error) {
	c := defaultProcessConfig()
	var unknown []string
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := strings.TrimSpace(m[k])
		var err error
		switch k {
		case "timeout":
			c.timeout, err = parseDuration(v)
		case "media_timeout":
			c.mediaTimeout, err = parseDuration(v)
		case "allow_link_local":
			c.allowLinkLocal, err = strconv.ParseBool(v)
			if err != nil {
				err = fmt.Errorf("%q is not a boolean; expected true or false", v)
			}
		case "media_max_bytes":
			c.mediaMaxBytes, err = parseSize(v)
		case "max_conns_per_host":
			var n int
			n, err = strconv.Atoi(v)
			if err != nil || n < 1 || n > 4096 {
				err = fmt.Errorf("%q: expected a whole number from 1 to 4096", v)
			}
			c.maxConnsPerHost = n
		default:
			unknown = append(unknown, envName(k))
		}
		if err != nil {
			return processConfig{}, nil, fmt.Errorf("%s: %w", envName(k), err)
		}
	}
	return c, unknown, nil
}

// parseDuration reads a positive Go duration (10s, 1m30s) or a number of
// seconds.
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		s, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil || s > (1<<62)/float64(time.Second) {
			return 0, fmt.Errorf("%q is not a duration; expected e.g. 10s, 1m30s or a number of seconds", v)
		}
		d = time.Duration(s * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be more than zero", v)
	}
	return d, nil
}

// parseSize reads a positive byte count, optionally with a KiB, MiB or GiB
// suffix.
func parseSize(v string) (int64, error) {
	num, mult := v, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 1 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q: expected a number of bytes from 1 to 1TiB, e.g. 67108864 or 64MiB", v)
	}
	return n * mult, nil
}
