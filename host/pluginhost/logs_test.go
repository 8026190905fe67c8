package pluginhost

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestPluginLines logs what go-plugin logs for a plugin's stderr line and
// checks what the operator reads.
func TestPluginLines(t *testing.T) {
	var out strings.Builder
	host := hclog.New(&hclog.LoggerOptions{Name: "evorelay", Output: &out})
	l := hclog.Logger(pluginLogger{host.Named("plugin").With("sink", "nats")})
	// go-plugin's logStderr: named after the binary, the plugin's pairs,
	// then its timestamp.
	l.Named("evorelay-sink-nats").Warn("NATS is not configured", "sink", "nats", "@module", "nats", "server", "x", "timestamp", "2026-01-01T00:00:00.000Z")
	line := out.String()
	if strings.Count(line, "sink=") != 1 || strings.Contains(line, "@module") || strings.Contains(line, "timestamp=") {
		t.Errorf("line %q: want one sink=, no @module, no second timestamp", line)
	}
	if !strings.Contains(line, "evorelay.plugin: NATS is not configured:") || !strings.Contains(line, "server=x") {
		t.Errorf("line %q: want the host's name, the message and the plugin's own pairs", line)
	}
}

func TestCleanExitIsDebug(t *testing.T) {
	var out strings.Builder
	host := hclog.New(&hclog.LoggerOptions{Name: "evorelay", Output: &out, Level: hclog.Info})
	l := hclog.Logger(pluginLogger{host.Named("plugin").With("sink", "nats")})
	l.Info("plugin process exited", "plugin", "/bin/x", "id", 1)
	if out.Len() != 0 {
		t.Errorf("a clean exit logged at info: %q", out.String())
	}
	l.Error("plugin process exited", "plugin", "/bin/x", "id", 1, "error", "signal: killed")
	if !strings.Contains(out.String(), "[ERROR] evorelay.plugin: plugin process exited") {
		t.Errorf("an exit with an error: %q; want it at error", out.String())
	}
}
