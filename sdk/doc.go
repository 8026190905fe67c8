// Package sdk is all a sink plugin author imports to add an integration to
// evorelay. A plugin is its own program whose main is one line:
//
//	func main() { sdk.Serve(mysink.New()) }
//
// The host (the evorelay sidecar) launches the program, and talks to it over
// gRPC through hashicorp/go-plugin. The author never sees gRPC: they
// implement Sink.
//
// # Depending on the SDK
//
// The SDK is a module of its own, github.com/evorelay/evorelay/sdk, tagged
// sdk/vX.Y.Z: go get github.com/evorelay/evorelay/sdk@latest. It brings
// go-plugin, gRPC, protobuf and hclog, and none of the host's dependencies.
// Release v0.N speaks plugin protocol N (sinkv1.ProtocolVersion); a host
// runs its own protocol version and the one before, and refuses any other
// naming the SDK release to build with (see sinkv1.ProtocolVersion for the
// policy). examples/jsonl in the repository is a whole plugin in 57 lines.
//
// # The life of a plugin
//
//  1. Describe: the sink's name (its route: POST /{name}/set/{instance}),
//     version, and the settings fields that are secrets (masked in find
//     responses).
//  2. Open: once, with the process settings. Every EVORELAY_<NAME>_* variable
//     arrives in Config.Settings with the prefix cut and the rest lowercased:
//     a kafka plugin's EVORELAY_KAFKA_BROKERS is Settings["brokers"]. Read
//     them with Settings (a Setting a key: Duration, Count, Size, Bool,
//     Text or one of the plugin's own), which names the variable in errors
//     and returns the ones the plugin does not know, to warn about.
//     Config.Egress is the egress policy (package sdk/egress): dial every
//     address that comes from a user (a URL in settings or in an event)
//     through Egress.Client or Egress.Dialer.
//  3. Validate: whenever a client sets an instance's settings. The host has
//     already checked "enabled" and "events"; the sink checks its own fields,
//     returns the settings normalized, or FieldErrors the API returns as 400.
//     See "Settings" below.
//  4. Deliver: batches of deliveries. A batch holds the deliveries of one
//     lane of an instance (the instance, or one of its chats, per the
//     instance's "ordering" setting) in the order the sidecar accepted
//     them. A lane's batches run one after the other: the next starts once
//     Deliver returns, or once it calls Sent(acks) (every delivery is on
//     its way, in order, and only confirmations are awaited: a broker sink
//     says so after its last publish); batches of different lanes, of one
//     instance or of several, run concurrently. A sink whose destination
//     keeps order (a queue, a webhook receiver) should send a batch in
//     order, so that without failures a lane's events arrive in order.
//     Every delivery must be acknowledged exactly once with
//     Acks.Done(id, err): nil is delivered; an error is retried later by
//     the host's schedule, unless it is marked Permanent (dead-lettered
//     with its reason). RetryAfter asks for a delay, and Gone also
//     disables the instance's sink (HTTP 410). Deliver
//     may ack deliveries in any order, from any goroutine, as each
//     finishes. Whatever is not acked when Deliver returns gets the error
//     Deliver returned, or a retry if it returned nil.
//  5. Close: when the host stops.
//
// Embed UnimplementedSink so that methods added to Sink later have a
// default. Never write to stdout: go-plugin owns it. Log with
// Config.Logger; it reaches the host's log with the plugin's name.
//
// A delivery's Envelope is the JSON every sink starts from:
// {event, instance, data, date_time, sender, server_url, apikey}, null
// where the engine sent nothing, with the event already written as the
// user's naming mode (EVORELAY_NAMING) wants it; Delivery.Event is always
// the constant. A sink that sends the envelope on sends it as it is.
//
// # Settings
//
// An instance's settings for a sink are a JSON object: "enabled" and
// "events", which the host normalizes and filters deliveries on (a sink
// never checks them again), and the sink's own members. The host keeps its
// own members ("retry", "disabled_reason", "disabled_at", ...) to itself: a
// sink sees only its own, in Validate and with every batch. Clients
// written for Evolution API may wrap the settings ({"<name>": {...}}) and
// add the members Evolution's own find returns (id, instanceId, createdAt,
// updatedAt): the host unwraps the one and drops the others, and always
// sends "enabled" and "events" (an empty list means every event).
//
// Declare the settings as a struct with json tags, embedding Subscription:
//
//	type settings struct {
//		sdk.Subscription
//		Path string `json:"path"`
//	}
//
// In Validate, ParseSettings decodes them and refuses, by name, a member
// the struct has no field for or a value of the wrong type, as FieldErrors;
// a sink that takes only enabled and events needs no Validate at all
// (UnimplementedSink's does this). In Deliver, SettingsOf decodes a
// delivery's settings once per instance and caches them; members the
// struct does not know are ignored there.
//
// # Process settings
//
// Open's Config.Settings are the plugin's EVORELAY_<NAME>_* variables: the
// prefix is EVORELAY_, the sink's name upper-cased with '-' written as
// '_', and '_'; what follows is lowercased. So a sink named kafka-eu reads
// EVORELAY_KAFKA_EU_BROKERS as Settings["brokers"]. A sink named x also
// receives the variables of a sink named x_y (EVORELAY_X_Y_*, as "y_*"):
// choose names that are not prefixes of one another.
//
// Delivery is at-least-once: Delivery.ID is the same on every attempt, and
// a sink passes it on (a header, a message id) so receivers can de-duplicate.
//
// # Testing a plugin
//
// Package sdk/sinktest is a conformance suite: call sinktest.Run from a test
// in the plugin's package with a factory, a few sample settings and a real
// destination. It serves the sink through this package's gRPC adapter, so
// it checks what the host will see.
package sdk
