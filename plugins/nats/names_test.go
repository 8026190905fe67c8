package main

import "testing"

func TestSubjectFor(t *testing.T) {
	tests := []struct {
		prefix, instance, wire string
		want                   string
	}{
		{"", "acme", "messages.upsert", "acme.messages.upsert"},
		{"", "acme", "group-participants.update", "acme.group-participants.update"},
		{"", "acme", "call", "acme.call"},
		{"evolution", "acme", "messages.upsert", "evolution.acme.messages.upsert"},
		{"org.events", "acme", "qrcode.updated", "org.events.acme.qrcode.updated"},
	}
	for _, tt := range tests {
		if got := subjectFor(tt.prefix, tt.instance, tt.wire); got != tt.want {
			t.Errorf("subjectFor(%q, %q, %q) = %q, want %q", tt.prefix, tt.instance, tt.wire, got, tt.want)
		}
	}
}

func TestSubjectProblem(t *testing.T) {
	for _, name := range []string{"acme", "acme-01_br", "shop.br"} {
		if why := subjectProblem(name); why != "" {
			t.Errorf("subjectProblem(%q) = %q, want none", name, why)
		}
	}
	for _, name := range []string{"", "my shop", "tab\there", "a*", "a>", ".acme", "acme.", "a..b"} {
		if subjectProblem(name) == "" {
			t.Errorf("subjectProblem(%q) found none, want one", name)
		}
	}
}
