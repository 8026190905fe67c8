package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/evorelay/evorelay/sdk"
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
	// corsAny is cors_origins "*"; corsOrigins are the others: the
	// origins whose pages may use Socket.IO.
	corsAny     bool
	corsOrigins map[string]bool
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
		corsOrigins:       map[string]bool{},
	}
}

// envName is the variable a process settings key came from.
func envName(key string) string { return "EVORELAY_WEBSOCKET_" + strings.ToUpper(key) }

// parseProcessConfig reads Config.Settings. It returns the keys it does not
// know, as variable names, sorted, for the caller to warn about.
func parseProcessConfig(m map[string]string) (processConfig, []string, error) {
	c := defaultProcessConfig()
	unknown, err := sdk.ReadSettings(m, envName(""), func(k, v string) (bool, error) {
		var err error
		switch k {
		case "ping_interval":
			c.pingInterval, err = sdk.ParseDuration(v)
		case "pong_timeout":
			c.pongTimeout, err = sdk.ParseDuration(v)
		case "write_timeout":
			c.writeTimeout, err = sdk.ParseDuration(v)
		case "send_buffer":
			c.sendBuffer, err = sdk.ParseCount(v, 1, 1<<20)
		case "max_connections":
			c.maxConns, err = sdk.ParseCount(v, 1, 1<<20)
		case "max_connections_per_instance":
			c.maxConnsPerRoom, err = sdk.ParseCount(v, 1, 1<<20)
		case "resume_window":
			c.resumeWindow, err = sdk.ParseCount(v, 0, 1<<20)
		case "resume_window_global":
			c.resumeWindowAll, err = sdk.ParseCount(v, 0, 1<<22)
		case "resume_window_bytes":
			c.resumeWindowBytes, err = parseIntSize(v)
		case "compression":
			c.compression, err = strconv.ParseBool(v)
			if err != nil {
				err = fmt.Errorf("%q is not a boolean; expected true or false", v)
			}
		case "allowed_origins":
			c.anyOrigin, err = parseOrigins(v, c.origins)
		case "cors_origins":
			c.corsAny, err = parseOrigins(v, c.corsOrigins)
		default:
			return false, nil
		}
		return true, err
	})
	if err != nil {
		return processConfig{}, nil, err
	}
	return c, unknown, nil
}

// parseOrigins reads a comma-separated list of origins
// (https://app.example.com, http://localhost:3000) into set, and reports
// whether it holds "*".
func parseOrigins(v string, set map[string]bool) (anyOrigin bool, err error) {
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			anyOrigin = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return false, fmt.Errorf("%q is not an origin; expected scheme://host[:port], e.g. https://app.example.com, or *", o)
		}
		set[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	return anyOrigin, nil
}

// parseIntSize is sdk.ParseSize for a size held in an int (64GiB at most).
func parseIntSize(v string) (int, error) {
	n, err := sdk.ParseSize(v, 64<<30)
	return int(n), err
}
