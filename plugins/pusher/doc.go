// Command evorelay-sink-pusher is the Pusher sink: it triggers every event
// an instance subscribed to on Pusher Channels (or on a server that speaks
// Pusher's HTTP API, such as soketi, through EVORELAY_PUSHER_HOST). It is a
// plugin process the evorelay host launches; it is not meant to be run by
// hand, and it knows nothing of the host beyond the sdk.
//
// # Instance settings
//
// POST /pusher/set/{instance} takes Evolution API v2's shape:
//
//	{"enabled": true, "events": ["MESSAGES_UPSERT"],
//	 "appId": "1234567", "key": "a1b2c3", "secret": "d4e5f6",
//	 "cluster": "mt1", "useTLS": true}
//
// appId, key, secret and cluster are required when enabled; each one
// missing is its own field error. With a global app configured (below),
// settings that name none of the four use it; naming any, they must name
// all. appId may be sent as a number; useTLS is true when absent. The
// secret is masked in find responses and never logged. The read-only
// fields Evolution API adds to its own find responses (id, instanceId,
// createdAt, updatedAt) are dropped; any other field is refused by name.
// The instance's name is its channel, so it must be a Pusher channel name
// (at most 200 of A-Z, a-z, 0-9 and -_=@,.;, and not private-encrypted-).
//
// # Process settings
//
//	EVORELAY_PUSHER_GLOBAL    true: a global app, for instances whose settings name none
//	EVORELAY_PUSHER_APP_ID    the global app (all four required with GLOBAL=true,
//	EVORELAY_PUSHER_KEY         refused without it)
//	EVORELAY_PUSHER_SECRET
//	EVORELAY_PUSHER_CLUSTER
//	EVORELAY_PUSHER_USE_TLS   the global app's useTLS (true)
//	EVORELAY_PUSHER_HOST      host[:port] to send to instead of api-<cluster>.pusher.com,
//	                          for self-hosted Pusher-protocol servers
//	EVORELAY_PUSHER_TIMEOUT   request timeout (10s)
//
// A bad value stops the plugin's Open with an error naming the variable; an
// unknown EVORELAY_PUSHER_* variable is logged as a warning.
//
// # What subscribers get
//
// Channel: the instance. Event: the wire name (messages.upsert,
// group-participants.update), whatever EVORELAY_NAMING says. Data: the
// envelope as JSON, {event, instance, data, date_time, sender, server_url,
// apikey}, event written as EVORELAY_NAMING says, data as the engine sent
// it, and sender, server_url and apikey null when the engine sent none.
//
// Pusher takes at most 10 KB of data an event. Above that the sink sets
// inline media to null, data.message.base64 first, then the largest of the
// other base64, jpegThumbnail, pngThumbnail and thumbnail members at any
// depth of data, until the event fits; every other byte of data is kept as
// it was. It then adds the paths it emptied to the payload:
//
//	{"event": "MESSAGES_UPSERT", ..., "data": {..., "message": {..., "base64": null}},
//	 ..., "evorelay_truncated": ["data.message.base64"]}
//
// A subscriber that needs the media fetches it from the engine. An event
// that still does not fit (or has no media to remove) is dead-lettered
// with a reason saying its size and the limit; nothing is dropped silently.
//
// # Sending and outcomes
//
// Events are sent with batch_events, at most 10 a call, in order for one
// app; different apps in parallel. One client is kept per app, keyed by a
// hash of its settings, so a changed secret takes effect with the next
// delivery. A call's outcome is every one of its events' outcome: 2xx is
// delivered; 401 and 403 (wrong credentials, or the app disabled or over
// quota) are dead-lettered with a reason saying what to check; 413 and any
// other 4xx are dead-lettered with Pusher's answer; 408, 429, 5xx, timeouts
// and network errors are retried, no sooner than Retry-After when Pusher
// sends one. An envelope that is not JSON is dead-lettered. An event the
// delivery's settings do not subscribe to (they changed while it was on its
// way) is acknowledged without being sent, and logged.
package main
