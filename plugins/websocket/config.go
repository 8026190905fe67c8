package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/evorelay/evorelay/sdk"
)

// envPrefix starts the variables of the plugin's process settings.
const envPrefix = "EVORELAY_WEBSOCKET_"

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

// parseProcessConfig reads Config.Settings and warns about those it does
// not know.
func parseProcessConfig(cfg sdk.Config) (processConfig, error) {
	c := defaultProcessConfig()
	err := cfg.ReadSettings(sdk.Settings{
		"ping_interval":                sdk.Duration(&c.pingInterval),
		"pong_timeout":                 sdk.Duration(&c.pongTimeout),
		"write_timeout":                sdk.Duration(&c.writeTimeout),
		"send_buffer":                  sdk.Count(&c.sendBuffer, 1, 1<<20),
		"max_connections":              sdk.Count(&c.maxConns, 1, 1<<20),
		"max_connections_per_instance": sdk.Count(&c.maxConnsPerRoom, 1, 1<<20),
		"resume_window":                sdk.Count(&c.resumeWindow, 0, 1<<20),
		"resume_window_global":         sdk.Count(&c.resumeWindowAll, 0, 1<<22),
		"resume_window_bytes":          sdk.Size(&c.resumeWindowBytes, 64<<30),
		"compression":                  sdk.Bool(&c.compression),
		"allowed_origins":              origins(&c.anyOrigin, c.origins),
		"cors_origins":                 origins(&c.corsAny, c.corsOrigins),
	}, envPrefix)
	if err != nil {
		return processConfig{}, err
	}
	return c, nil
}

// origins is the Setting for a comma-separated list of origins
// (https://app.example.com, http://localhost:3000): each into set, and
// whether it holds "*" into anyOrigin.
func origins(anyOrigin *bool, set map[string]bool) sdk.Setting {
	return func(v string) error {
		for _, o := range strings.Split(v, ",") {
			o = strings.TrimSpace(o)
			if o == "" {
				continue
			}
			if o == "*" {
				*anyOrigin = true
				continue
			}
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
				(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
				return fmt.Errorf("%q is not an origin; expected scheme://host[:port], e.g. https://app.example.com, or *", o)
			}
			set[strings.ToLower(u.Scheme+"://"+u.Host)] = true
		}
		return nil
	}
}
