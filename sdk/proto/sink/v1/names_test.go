package sinkv1

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, name := range []string{"webhook", "kafka-2_eu", strings.Repeat("a", 32)} {
		if err := CheckName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for want, names := range map[string][]string{
		"want 1-32":         {"", "Webhook", "2fa", "web.hook", strings.Repeat("a", 33)},
		"route of the host": {"events", "plugins", "healthz", "readyz", "metrics", "ws", "ws-console", "keys"},
	} {
		for _, name := range names {
			if err := CheckName(name); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%q: %v, want an error with %q", name, err, want)
			}
		}
	}
}
