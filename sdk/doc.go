// Package sdk is all a sink plugin author imports to add an integration to
// evorelay. A plugin is its own program whose main is one line:
//
//	func main() { sdk.Serve(mysink.New()) }
//
// The host (the evorelay sidecar) launches the program, and talks to it over
// gRPC through hashicorp/go-plugin. The author never sees gRPC: they
// implement Sink.
//
// # The life of a plugin
//
//  1. Describe: the sink's name (its route: POST /{name}/set/{instance}),
//     version, the JSON Schema of its per-instance settings, and the
//     settings fields that are secrets (masked in find responses).
//  2. Open: once, with the process settings. Every EVORELAY_<NAME>_* variable
//     arrives in Config.Settings with the prefix cut and the rest lowercased:
//     a kafka plugin's EVORELAY_KAFKA_BROKERS is Settings["brokers"].
//  3. Validate: whenever a client sets an instance's settings. The host has
//     already checked "enabled" and "events"; the sink checks its own fields,
//     returns the settings normalized, or FieldErrors the API returns as 400.
//  4. Deliver: batches of deliveries. A batch holds one instance's
//     deliveries in the order the sidecar accepted them, and the host sends
//     an instance's next batch only once the previous one is acknowledged;
//     batches of different instances arrive concurrently. A sink whose
//     destination keeps order (a queue, a webhook receiver) should send a
//     batch in order, so that without failures an instance's events arrive
//     in order. Every delivery must be acknowledged exactly once with
//     Acks.Done(id, err): nil is delivered; an error is retried later by
//     the host's schedule, unless it is marked Permanent (dead-lettered
//     with its reason). RetryAfter asks for a delay, and Gone
//     also disables the instance's sink (HTTP 410). Deliver may ack
//     deliveries in any order, from any goroutine, as each finishes; batches
//     run concurrently. Whatever is not acked when Deliver returns gets the
//     error Deliver returned, or a retry if it returned nil.
//  5. Close: when the host stops.
//
// Embed UnimplementedSink so that methods added to Sink later have a
// default. Never write to stdout: go-plugin owns it. Log with
// Config.Logger; it reaches the host's log with the plugin's name.
//
// A delivery's Envelope is the JSON every sink starts from:
// {event, instance, data, date_time, sender, server_url, apikey}, with the
// event as a constant and null where the engine sent nothing. To write the
// event as the user's naming mode wants it, without re-encoding data (it
// may be megabytes of base64 media), use
// events.WithEvent(d.Envelope, cfg.Naming.Name(d.Event)).
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
