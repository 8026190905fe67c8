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
