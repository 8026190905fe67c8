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
	tests := []struct {
		name string
		ok   bool
	}{
		{"acme", true},
		{"acme-01_br", true},
		{"shop.br", true},
		{"", false},
		{"my shop", false},
		{"tab\there", false},
		{"a*", false},
		{"a>", false},
		{".acme", false},
		{"acme.", false},
		{"a..b", false},
	}
	for _, tt := range tests {
		if got := subjectProblem(tt.name); (got == "") != tt.ok {
			t.Errorf("subjectProblem(%q) = %q, want ok=%v", tt.name, got, tt.ok)
		}
	}
}
