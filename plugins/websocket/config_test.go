package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk"
)

func TestParseProcessConfig(t *testing.T) {
	def := defaultProcessConfig()
	if def.pingInterval != 30*time.Second || def.pongTimeout != 10*time.Second || def.sendBuffer != 256 ||
		def.resumeWindow != 1000 || !def.compression || def.anyOrigin || len(def.origins) != 0 {
		t.Fatalf("defaults = %+v", def)
	}
	tests := []struct {
		name  string
		in    map[string]string
		check func(processConfig) bool
	}{
		{"empty", nil, func(c processConfig) bool { return c.maxConns == 10000 && c.maxConnsPerRoom == 1000 }},
		{"durations", map[string]string{"ping_interval": "250ms", "pong_timeout": "2", "write_timeout": " 1m "},
			func(c processConfig) bool {
				return c.pingInterval == 250*time.Millisecond && c.pongTimeout == 2*time.Second && c.writeTimeout == time.Minute
			}},
		{"counts", map[string]string{"send_buffer": "8", "max_connections": "3", "max_connections_per_instance": "2",
			"resume_window": "0", "resume_window_global": "50"},
			func(c processConfig) bool {
				return c.sendBuffer == 8 && c.maxConns == 3 && c.maxConnsPerRoom == 2 && c.resumeWindow == 0 && c.resumeWindowAll == 50
			}},
		{"bytes", map[string]string{"resume_window_bytes": "4MiB"}, func(c processConfig) bool { return c.resumeWindowBytes == 4<<20 }},
		{"compression off", map[string]string{"compression": "false"}, func(c processConfig) bool { return !c.compression }},
		{"origins", map[string]string{"allowed_origins": "https://App.example.com, http://localhost:3000/ ,"},
			func(c processConfig) bool {
				return !c.anyOrigin && len(c.origins) == 2 && c.origins["https://app.example.com"] && c.origins["http://localhost:3000"]
			}},
		{"any origin", map[string]string{"allowed_origins": "*"}, func(c processConfig) bool { return c.anyOrigin }},
		{"Socket.IO CORS origins, apart from /ws's", map[string]string{"cors_origins": "https://Dash.example.com"},
			func(c processConfig) bool {
				return c.corsOrigins["https://dash.example.com"] && !c.corsAny && len(c.origins) == 0 && !c.anyOrigin
			}},
		{"Socket.IO CORS, any origin", map[string]string{"cors_origins": "*"}, func(c processConfig) bool { return c.corsAny && !c.anyOrigin }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseProcessConfig(sdk.Config{Settings: tt.in})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("parsed %+v", c)
			}
		})
	}
}

// TestParseProcessConfigErrors: a bad value (below, above or outside what
// a setting takes) is refused with an error that names the variable and
// quotes the value.
func TestParseProcessConfigErrors(t *testing.T) {
	for key, values := range map[string][]string{
		"ping_interval":                {"soon"},
		"pong_timeout":                 {"0s", "-1s"},
		"write_timeout":                {"-1"},
		"send_buffer":                  {"0", "1048577"},
		"max_connections":              {"lots"},
		"max_connections_per_instance": {"-3", "1048577"},
		"resume_window":                {"-1"},
		"resume_window_global":         {"-1", "4194305"},
		"resume_window_bytes":          {"1TB"},
		"compression":                  {"maybe", "2"},
		"allowed_origins":              {"app.example.com", "https://app.example.com/path", "ftp://files.example.com"},
		"cors_origins":                 {"dash.example.com"},
	} {
		for _, v := range values {
			t.Run(key+"="+v, func(t *testing.T) {
				_, err := parseProcessConfig(sdk.Config{Settings: map[string]string{key: v}})
				if want := envPrefix + strings.ToUpper(key) + ": "; err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), v) {
					t.Errorf("err = %v; want one naming %s and the value", err, want)
				}
			})
		}
	}
}

func TestUnknownSettingsReported(t *testing.T) {
	var log strings.Builder
	in := map[string]string{"pingz": "1", "send_buffer": "9", "apple": "x"}
	if _, err := parseProcessConfig(sdk.Config{Settings: in, Logger: hclog.New(&hclog.LoggerOptions{Output: &log})}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"EVORELAY_WEBSOCKET_APPLE", "EVORELAY_WEBSOCKET_PINGZ"} {
		if !strings.Contains(log.String(), "unknown setting ignored: setting="+v) {
			t.Errorf("log %q, want a warning about %s", log.String(), v)
		}
	}
}
