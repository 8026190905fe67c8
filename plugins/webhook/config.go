package main

import (
	"strings"
	"time"

	"github.com/evorelay/evorelay/sdk"
)

// processConfig is the plugin's process settings (EVORELAY_WEBHOOK_*).
type processConfig struct {
	timeout         time.Duration
	mediaMaxBytes   int64
	mediaTimeout    time.Duration
	maxConnsPerHost int
}

func defaultProcessConfig() processConfig {
	return processConfig{
		timeout:         10 * time.Second,
		mediaMaxBytes:   64 << 20,
		mediaTimeout:    30 * time.Second,
		maxConnsPerHost: 64,
	}
}

// envName is the variable a process settings key came from.
func envName(key string) string { return "EVORELAY_WEBHOOK_" + strings.ToUpper(key) }

// retired are settings an older version read, and what replaced them.
var retired = map[string]string{
	"allow_link_local": "the egress policy replaces it: list the addresses to allow in EVORELAY_EGRESS_ALLOW, e.g. 169.254.0.0/16",
}

// parseProcessConfig reads Config.Settings. It returns the keys it does not
// know, sorted, for the caller to warn about.
func parseProcessConfig(m map[string]string) (processConfig, []string, error) {
	c := defaultProcessConfig()
	unknown, err := sdk.Settings{
		"timeout":            sdk.Duration(&c.timeout),
		"media_timeout":      sdk.Duration(&c.mediaTimeout),
		"media_max_bytes":    sdk.Size(&c.mediaMaxBytes, 1<<40),
		"max_conns_per_host": sdk.Count(&c.maxConnsPerHost, 1, 4096),
	}.Read(m, envName(""))
	if err != nil {
		return processConfig{}, nil, err
	}
	return c, unknown, nil
}
