// Command evorelay-sink-webhook is the webhook sink: it POSTs every event an
// instance subscribed to to that instance's URL, as JSON, signed with
// Standard Webhooks when the settings carry a secret. It is a plugin process
// the evorelay host launches; it is not meant to be run by hand, and it knows
// nothing of the host beyond the sdk.
//
// # Instance settings
//
// POST /webhook/set/{instance} stores, and GET /webhook/find/{instance}
// returns, the seed's flat shape:
//
//	{"url": "https://example.com/hook", "enabled": true,
//	 "events": ["MESSAGES_UPSERT"],
//	 "webhook_by_events": false, "webhook_base64": false,
//	 "headers": {"Authorization": "Bearer x"},
//	 "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
//
// Evolution API v2 spellings are accepted and stored under the seed's
// names: byEvents and webhookByEvents for webhook_by_events, base64 and
// webhookBase64 for webhook_base64. The read-only fields Evolution API
// returns from its own find (id, instanceId, createdAt, updatedAt) are
// dropped, so a settings object copied from Evolution API can be set as it
// is. Any other field is refused with an error naming it: a misspelt
// webhook_base64 silently ignored would lose media without a word.
//
// url is required when enabled; it must be http or https with a host that
// the egress policy (package sdk/egress, EVORELAY_EGRESS_ALLOW and
// EVORELAY_EGRESS_DENY) allows: loopback, unspecified, link-local and cloud
// metadata addresses are refused with a message naming the CIDR to allow.
// The policy is checked again on every connection, deliveries, mediaUrl
// fetches and each of their redirect hops, against the address the name
// resolved to, so DNS cannot point a delivery there later.
//
// public_only, true, also refuses private networks (unless the operator
// allows them). Settings set with an instance-scoped API key are always
// public_only; the admin key may set or clear it.
//
// headers are sent with every delivery. The webhook-* headers, Host,
// Content-Length, Transfer-Encoding and Connection are the sink's own and
// refused; a Content-Type other than application/json is refused because
// the body is always JSON.
//
// secret, when set, is a Standard Webhooks secret: "whsec_" followed by the
// base64 of 24 to 64 random bytes.
//
// # Process settings
//
//	EVORELAY_WEBHOOK_TIMEOUT             request timeout (10s); a Go duration or seconds
//	EVORELAY_WEBHOOK_MEDIA_MAX_BYTES     largest mediaUrl fetch (64MiB); bytes, or KiB/MiB/GiB
//	EVORELAY_WEBHOOK_MEDIA_TIMEOUT       mediaUrl fetch timeout (30s)
//	EVORELAY_WEBHOOK_MAX_CONNS_PER_HOST  concurrent requests to one host (64: as many as the lanes the SDK runs at once)
//
// A bad value stops the plugin's Open with an error naming the variable; an
// unknown EVORELAY_WEBHOOK_* variable is logged as a warning.
//
// # What a receiver gets
//
// The body is {event, instance, data, destination, date_time, sender,
// server_url, apikey}, in that order. event is written as EVORELAY_NAMING
// says (MESSAGES_UPSERT or messages.upsert); destination is the URL posted
// to; sender, server_url and apikey are what the engine sent, null when it
// sent nothing (server_url falls back to EVORELAY_SERVER_URL). data is the
// engine's bytes unchanged unless the media rule below edits them, and then
// only the edited member changes.
//
// With webhook_by_events the event's suffix is appended to the URL's path
// (/messages_upsert, or /messages-upsert in evolution naming), keeping any
// query string.
//
// Media: with webhook_base64 false, data.message.base64 is removed. With it
// true, base64 is kept; when the engine sent only data.message.mediaUrl,
// the sink fetches it (http or https, the same address rule, the size and
// time limits above) and adds it as data.message.base64. A fetch that
// cannot succeed (refused address, 4xx, over the size limit) delivers the
// event without base64 — the receiver still has mediaUrl, and the message
// itself matters more than its inlined copy. A fetch that may succeed later
// (network error, timeout, 408, 429, 5xx) retries the delivery on its first
// two attempts, and from the third delivers without base64. Both cases log
// a warning.
//
// Headers: Content-Type: application/json, the settings' headers,
// webhook-id (the delivery id, the same on every retry, for
// de-duplication), and with a secret webhook-timestamp and
// webhook-signature (v1, HMAC-SHA256 over "id.timestamp.body").
//
// # Outcomes
//
// 2xx is delivered. 408, 429, 5xx, timeouts and network errors are retried,
// no sooner than Retry-After when the receiver sends one. 410 is Gone: the
// instance's webhook is disabled until its settings are set again. 3xx is
// not followed and, like any other 4xx, dead-letters the delivery with the
// status and the start of the response body. A malformed envelope or a URL
// resolving to a refused address is dead-lettered too.
//
// A batch's deliveries (one lane: an instance, or one chat of it, per the
// instance's "ordering") are sent one after the other, in the order of
// the batch (the host's ingest order), so a receiver sees that lane's
// events in order; different lanes are sent concurrently, each delivery
// acknowledged when it finishes. Requests to one host are bounded by
// EVORELAY_WEBHOOK_MAX_CONNS_PER_HOST and all requests by a fixed 512, and
// a delivery waiting for its host's slot does not hold one of the 512, so a
// hanging receiver delays only the deliveries to itself.
package main
