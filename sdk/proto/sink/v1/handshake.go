package sinkv1

import plugin "github.com/hashicorp/go-plugin"

// ProtocolVersion is the version of sink.proto this package speaks. It is
// go-plugin's protocol version too: the host offers every version it runs
// and the plugin picks the newest it speaks, so a host and a plugin that
// share none fail the handshake at once, not at the first call.
//
// Compatibility policy: a change a plugin could notice (a field moved, a
// meaning changed) bumps ProtocolVersion, and the host keeps running
// plugins of the previous version, adapting the wire for them, for at least
// one more minor release of the SDK. A field added without changing what
// old peers see does not bump it.
//
//   - 1: settings on every delivery (Delivery.settings), with the host's
//     own members in them; DescribeResponse.settings_schema.
//   - 2: settings once per batch (DeliverRequest.settings), only the
//     plugin's own members; no settings schema. Added since, without a
//     bump: DeliverResponse.sent (a host that ignores it, or a plugin that
//     never sends it, keeps two batches of an instance at the plugin);
//     DeliverRequest.lane (a plugin that ignores it runs the batches of all
//     of an instance's lanes one after the other: each lane's order holds).
const ProtocolVersion = 2

// PreviousProtocolVersion is the older version the host still runs.
const PreviousProtocolVersion = 1

// SDKVersion is the release of module github.com/evorelay/evorelay/sdk
// that speaks ProtocolVersion: what a plugin of an unknown version is
// told to build with. SDK releases v0.N speak protocol N.
const SDKVersion = "v0.2"

// PluginName is the key both sides use in go-plugin's plugin set.
const PluginName = "sink"

// Handshake keeps a plugin binary from being run by hand as if it were a
// command: without the cookie it prints a hint and exits. The cookie is the
// same for every protocol version.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "EVORELAY_PLUGIN",
	MagicCookieValue: "sink-v1-5b1f0c2e",
}

// MaxMessageBytes is the gRPC message size limit both sides set. The host
// splits batches well below it; one event alone may be tens of MB (media).
const MaxMessageBytes = 256 << 20
