package main

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// processConfig is the plugin's process settings (EVORELAY_WEBSOCKET_*).
type processConfig struct {
	pingInterval      time.Duration
	pongTimeout       time.Duration
	writeTimeout      time.Duration
	sendBuffer        int
	maxConns          int
	maxConnsPerRoom   int
	resumeWindow      int
	resumeWindowAll   int
	resumeWindowBytes int
	compression       bool
	// anyOrigin is allowed_origins "*"; origins are the others, each
	// lowercased scheme://host[:port].
	anyOrigin bool
	origins   map[string]bool
}

func defaultProcessConfig() processConfig {
	return processConfig{
		pingInterval:      30 * time.Second,
		pongTimeout:       10 * time.Second,
		writeTimeout:      10 * time.Second,
		sendBuffer:        256,
		maxConns:          10000,
		maxConnsPerRoom:   1000,
		resumeWindow:      1000,
		resumeWindowAll:   10000,
		resumeWindowBytes: 32 << 20,
		compression:       true,
		origins:           map[string]bool{},
	}
}

// envName is the variable a process settings key came from.
func envName(key string) string { return "EVORELAY_WEBSOCKET_" + strings.ToUpper(key) }

// parseProcessConfig reads Config.Settings. It returns the keys it does not
// know, as variable names, sorted, for the caller to warn about.
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
		case "ping_interval":
			c.pingInterval, err = parseDuration(v)
		case "pong_timeout":
			c.pongTimeout, err = parseDuration(v)
		case "write_timeout":
			c.writeTimeout, err = parseDuration(v)
		case "send_buffer":
			c.sendBuffer, err = parseCount(v, 1, 1<<20)
		case "max_connections":
			c.maxConns, err = parseCount(v, 1, 1<<20)
		case "max_connections_per_instance":
			c.maxConnsPerRoom, err = parseCount(v, 1, 1<<20)
		case "resume_window":
			c.resumeWindow, err = parseCount(v, 0, 1<<20)
		case "resume_window_global":
			c.resumeWindowAll, err = parseCount(v, 0, 1<<22)
		case "resume_window_bytes":
			c.resumeWindowBytes, err = parseSize(v)
		case "compression":
			c.compression, err = strconv.ParseBool(v)
			if err != nil {
				err = fmt.Errorf("%q is not a boolean; expected true or false", v)
			}
		case "allowed_origins":
			err = c.parseOrigins(v)
		default:
			unknown = append(unknown, envName(k))
		}
		if err != nil {
			return processConfig{}, nil, fmt.Errorf("%s: %w", envName(k), err)
		}
	}
	return c, unknown, nil
}

// parseOrigins reads a comma-separated list of origins
// (https://app.example.com, http://localhost:3000) or "*".
func (c *processConfig) parseOrigins(v string) error {
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			c.anyOrigin = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("%q is not an origin; expected scheme://host[:port], e.g. https://app.example.com, or *", o)
		}
		c.origins[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	return nil
}

// parseDuration reads a positive Go duration (10s, 1m30s) or a number of
// seconds.
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		s, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil || s > (1<<62)/float64(time.Second) {
			return 0, fmt.Errorf("%q is not a duration; expected e.g. 30s, 1m or a number of seconds", v)
		}
		d = time.Duration(s * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be more than zero", v)
	}
	return d, nil
}

// parseCount reads a whole number from lo to hi.
func parseCount(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q: expected a whole number from %d to %d", v, lo, hi)
	}
	return n, nil
}

// parseSize reads a positive byte count, optionally with a KiB, MiB or GiB
// suffix.
func parseSize(v string) (int, error) {
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
	if err != nil || n < 1 || n > (64<<30)/mult {
		return 0, fmt.Errorf("%q: expected a number of bytes from 1 to 64GiB, e.g. 33554432 or 32MiB", v)
	}
	return int(n * mult), nil
}
