// Command evorelay-sink-rabbitmq is the evorelay sink that publishes a
// WhatsApp engine's events to RabbitMQ, under the names Evolution API uses,
// with publisher confirms. It is a plugin: the evorelay host launches it;
// run by hand it only prints a hint.
//
// # Names on the broker
//
// For instance i and an event whose wire name is e (messages.upsert): a
// durable topic exchange named i, routing key e, and a durable queue i.e
// bound to the exchange with key e, one for each event the instance
// subscribes to (all events when its list is empty). Queues are quorum
// queues unless EVORELAY_RABBITMQ_QUEUE_TYPE=classic; an exchange or queue
// that already exists with other properties is used as it is (and a
// warning logged) rather than failing every publish.
//
// In global mode (EVORELAY_RABBITMQ_GLOBAL=true) every instance's events
// go to one topic exchange instead, EVORELAY_RABBITMQ_GLOBAL_EXCHANGE
// (default evolution_exchange), routing key e, queue e (or p.e with
// EVORELAY_RABBITMQ_GLOBAL_PREFIX=p), as Evolution API's global mode does.
//
// The topology is declared when a client enables the sink for an instance
// (so the queues exist once the set call answers), and again lazily before
// the first publish on each new connection; it is cached per connection,
// not declared on every publish.
//
// # Messages
//
// The body is the envelope as the host accepted it, with only its event
// member rewritten per EVORELAY_NAMING (seed: MESSAGES_UPSERT, evolution:
// messages.upsert). Properties: persistent, content-type
// application/json, message-id the delivery id (the same on every retry,
// for de-duplication), timestamp, app-id evorelay, and headers instance and
// event.
//
// # Delivery guarantees
//
// A delivery is acknowledged as delivered only after the broker confirmed
// the message (publisher confirms, many outstanding at once, bounded by
// EVORELAY_RABBITMQ_MAX_IN_FLIGHT). A nack, a return (the message is
// published mandatory, so an unroutable one comes back; the route is then
// declared again), a lost connection or a confirm that does not come within
// EVORELAY_RABBITMQ_CONFIRM_TIMEOUT make the host retry it. Delivery is
// at-least-once: a message confirmed just as the connection died may be
// published twice, with the same message-id.
//
// The connection has heartbeats and is re-established forever, with a
// backoff from 0.5s doubling to EVORELAY_RABBITMQ_RECONNECT_MAX_DELAY
// (jittered). While it is down, or while the broker blocks publishing (a
// memory or disk alarm), Deliver answers every delivery with a retryable
// error at once and Health says why; nothing is dropped.
//
// # Settings
//
// Process settings (environment): EVORELAY_RABBITMQ_URI (required to
// deliver: amqp://user:pass@host:5672/vhost, or amqps://), _GLOBAL,
// _GLOBAL_EXCHANGE, _GLOBAL_PREFIX, _QUEUE_TYPE (quorum | classic),
// _HEARTBEAT (10s), _MAX_IN_FLIGHT (1000), _CONFIRM_TIMEOUT (30s),
// _RECONNECT_MAX_DELAY (30s), _TLS_CA (PEM file of the CA that signed an
// amqps:// broker's certificate; default: the system's CAs). Durations
// take Go syntax or seconds.
//
// Per-instance settings: {"enabled": bool, "events": [...]}, and optional
// broker-side limits of the instance's queues, declared as queue
// arguments: "queue_ttl" (x-message-ttl, e.g. "6h") and "queue_max_length"
// (x-max-length; the oldest are dropped). RabbitMQ never changes a queue's
// arguments: limits that differ from an existing queue's are refused (400)
// with what to do (queues.go).
// Enabling the sink is refused (400) while EVORELAY_RABBITMQ_URI is unset,
// for an instance name that cannot name an exchange (empty, longer than 200
// bytes, or starting with the reserved amq.), and when the broker refuses
// to declare the instance's exchange or queues (access refused, say).
package main
