package sinkv1

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // "" for a good name
	}{
		{"webhook", ""},
		{"kafka-2_eu", ""},
		{strings.Repeat("a", 32), ""},
		{"", "want 1-32"},
		{"Webhook", "want 1-32"},
		{"2fa", "want 1-32"},
		{"web.hook", "want 1-32"},
		{strings.Repeat("a", 33), "want 1-32"},
		{"events", "route of the host"},
		{"plugins", "route of the host"},
		{"healthz", "route of the host"},
		{"readyz", "route of the host"},
		{"metrics", "route of the host"},
		{"ws", "route of the host"},
		{"ws-console", "route of the host"},
		{"keys", "route of the host"},
	} {
		err := CheckName(tc.name)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
