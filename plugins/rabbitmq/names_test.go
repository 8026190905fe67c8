package main

import "testing"

func TestRouteFor(t *testing.T) {
	g := global{on: true, exchange: "evolution_exchange"}
	tests := []struct {
		name     string
		instance string
		wire     string
		global   global
		want     route
	}{
		{"per instance", "acme", "messages.upsert", global{}, route{"acme", "messages.upsert", "acme.messages.upsert"}},
		{"hyphenated event", "acme", "group-participants.update", global{}, route{"acme", "group-participants.update", "acme.group-participants.update"}},
		{"instance with dots and spaces", "my shop.br", "call", global{}, route{"my shop.br", "call", "my shop.br.call"}},
		{"global", "acme", "messages.upsert", g, route{"evolution_exchange", "messages.upsert", "messages.upsert"}},
		{"global with prefix", "acme", "qrcode.updated", global{on: true, exchange: "x", prefix: "evo"}, route{"x", "qrcode.updated", "evo.qrcode.updated"}},
		{"global off ignores its names", "acme", "call", global{exchange: "x", prefix: "p"}, route{"acme", "call", "acme.call"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := routeFor(tt.instance, tt.wire, tt.global); got != tt.want {
				t.Errorf("routeFor(%q, %q) = %+v, want %+v", tt.instance, tt.wire, got, tt.want)
			}
		})
	}
}
