package main

import (
	"strings"
	"time"

	"github.com/evorelay/evorelay/sdk"
)

// envPrefix starts the variables of the plugin's process settings.
const envPrefix = "EVORELAY_WEBHOOK_"

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

// parseProcessConfig reads Config.Settings and warns about those it does
// not know or no longer reads.
func parseProcessConfig(cfg sdk.Config) (processConfig, error) {
	c := defaultProcessConfig()
	err := cfg.ReadSettings(sdk.Settings{
		"timeout":            sdk.Duration(&c.timeout),
		"media_timeout":      sdk.Duration(&c.mediaTimeout),
		"media_max_bytes":    sdk.Size(&c.mediaMaxBytes, 1<<40),
		"max_conns_per_host": sdk.Count(&c.maxConnsPerHost, 1, 4096),
		"allow_link_local": retired(cfg, "allow_link_local",
			"the egress policy replaces it: list the addresses to allow in EVORELAY_EGRESS_ALLOW, e.g. 169.254.0.0/16"),
	}, envPrefix)
	if err != nil {
		return processConfig{}, err
	}
	return c, nil
}

// retired is the Setting for one an older version read: it warns that the
// setting is no longer read, and why.
func retired(cfg sdk.Config, key, why string) sdk.Setting {
	return func(string) error {
		cfg.Log().Warn("setting no longer read", "setting", envPrefix+strings.ToUpper(key), "why", why)
		return nil
	}
}
