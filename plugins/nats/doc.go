// Command evorelay-sink-nats is the evorelay sink that publishes a WhatsApp
// engine's events to NATS, under the subjects Evolution API uses. It is a
// plugin: the evorelay host launches it; run by hand it only prints a hint.
//
// # Subjects
//
// Instance i's event with wire name e (messages.upsert) is published on
// i.e (acme.messages.upsert); with EVORELAY_NATS_SUBJECT_PREFIX=p (global
// mode: one prefix under which every instance publishes) on p.i.e.
//
// # Two modes, chosen per subject by the server's streams
//
// The sink asks the server which JetStream stream covers a subject
// (StreamNameBySubject, remembered for EVORELAY_NATS_STREAM_CACHE_TTL, 5s
// by default, and forgotten after a reconnect or a failed publish):
//
//   - jetstream: a stream covers it. The message is published
//     asynchronously (many outstanding, bounded by
//     EVORELAY_NATS_MAX_IN_FLIGHT) and the delivery is acknowledged only
//     when the server's PubAck says the stream stored it. Nats-Msg-Id is
//     the delivery id, so a retry within the stream's duplicate window is
//     stored once.
//   - core: no stream covers it. The message is published as a core NATS
//     message and the delivery is acknowledged once one flush of the batch
//     came back from the server. That proves the server took the message,
//     not that anyone received it: core NATS is at-most-once on the wire,
//     and a message with no subscriber is dropped by the server. Create a
//     stream over the subjects to get at-least-once.
//
// Health's detail says so and counts the publishes of each mode. Validate
// adds a read-only "mode" to an enabled instance's normalized settings, so
// GET /nats/find/{instance} shows it: "jetstream" when a stream covers
// every subscribed event's subject, "core" when none does, "mixed"
// otherwise. It is a snapshot taken when the settings were set, left out
// when the server could not be asked; a "mode" a client sends is ignored.
//
// # Messages
//
// The body is the envelope as the host accepted it, with only its event
// member rewritten per EVORELAY_NAMING (seed: MESSAGES_UPSERT, evolution:
// messages.upsert). Headers: Nats-Msg-Id (the delivery id, in both
// modes), Content-Type application/json, instance, event.
//
// # Disconnects
//
// The connection reconnects forever (a backoff from 0.5s doubling to
// EVORELAY_NATS_RECONNECT_MAX_DELAY, jittered), and the client's reconnect
// buffer is off: a publish while disconnected fails, and its delivery is
// retried by the host, instead of waiting in a memory buffer that a crash
// would lose. While disconnected Deliver answers every delivery with a
// retryable error at once and Health says why. JetStream publishes waiting
// for their PubAck when the connection drops are retried too (a stored one
// is then de-duplicated by its Nats-Msg-Id).
//
// # Settings
//
// Process settings (environment): EVORELAY_NATS_URL (required to deliver;
// nats://host:4222, several separated by commas; tls://, ws://, wss://),
// _CREDS (a .creds file), _NKEY (an nkey seed file), _TOKEN, _USER and
// _PASSWORD, _TLS_CA, _TLS_CERT and _TLS_KEY, _SUBJECT_PREFIX,
// _MAX_IN_FLIGHT (1000), _ACK_TIMEOUT (30s), _FLUSH_TIMEOUT (10s),
// _STREAM_CACHE_TTL (5s), _RECONNECT_MAX_DELAY (30s), _PING_INTERVAL (20s).
// Durations take Go syntax or seconds.
//
// Per-instance settings: {"enabled": bool, "events": [...]}, and the
// read-only "mode" above. Enabling the sink is refused (400) while
// EVORELAY_NATS_URL is unset, and for an instance name that cannot stand in
// a subject (whitespace, a wildcard, an empty token).
package main
