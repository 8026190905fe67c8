package sinkv1

import plugin "github.com/hashicorp/go-plugin"

// ProtocolVersion is the version of sink.proto this package speaks. It is
// go-plugin's protocol version too, so a host and a plugin that disagree
// fail the handshake with a clear message instead of at the first call.
const ProtocolVersion = 1

// PluginName is the key both sides use in go-plugin's plugin set.
const PluginName = "sink"

// Handshake keeps a plugin binary from being run by hand as if it were a
// command: without the cookie it prints a hint and exits.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "EVORELAY_PLUGIN",
	MagicCookieValue: "sink-v1-5b1f0c2e",
}

// MaxMessageBytes is the gRPC message size limit both sides set. The host
// splits batches well below it; one event alone may be tens of MB (media).
const MaxMessageBytes = 256 << 20
