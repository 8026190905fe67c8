// Package api is evorelay's HTTP layer: the REST routes that configure sinks
// per instance, the ingest routes the engine posts its events to, the
// operational routes (health, readiness, metrics, plugins), API-key
// authentication and the one error envelope every failure is written in.
//
// It knows HTTP and nothing else. What it needs from the rest of the host
// (the loaded plugins, the settings store, the spool) is a small interface
// defined here, where it is used; it does not speak gRPC, open a database or
// deliver anything. An event is answered 202 only once Spool.Append has
// returned, so "accepted" always means "durably spooled".
//
// # Routes
//
//	POST /{sink}/set/{instance}          201 stored settings (secrets masked)
//	GET  /{sink}/find/{instance}         200 settings, or null when unset
//	POST /events, /events/{anything}     202 {"accepted": n, "ids": [...]}
//	POST /webhook/evolution/{instance}   202, as above, for one instance
//	GET  /plugins                        200 what Sinks.Plugins returns
//	GET  /ws, /ws/{instance}             Options.Websocket, when set
//	GET, POST, OPTIONS /socket.io/...    Options.Websocket: Socket.IO (socketio.go)
//	GET  /healthz, /readyz, /metrics     probes and scrapers, no API key
//
// Every other route needs the API key in the "apikey" header (the ingest
// routes and /ws also take it as the apikey query parameter), checked before
// anything is looked up: a bad key is 401 even for a sink that does not
// exist. Every error, including 404, 405 and a recovered panic, is written
// as {"status": 400, "error": "Bad Request", "response": {"message": [...]}}.
//
// # Decisions
//
// Settings bodies are flat ({"url": ..., "enabled": true, "events": [...]})
// or wrapped in the sink's name as Evolution API v2 clients send them
// ({"webhook": {...}}); a body whose only key is the sink's name is
// unwrapped. "enabled" defaults to false when absent, as in Evolution API:
// a sink delivers only once it is switched on, and the 201 response shows
// the stored value. "enabled": true with no events means every event, and is
// stored as an empty list. Event names are accepted in either spelling and
// stored as constants.
//
// An instance name is 1 to 128 bytes of valid UTF-8, without control
// characters or '/', and without leading or trailing spaces. The rule is
// deliberately loose, since engines let users choose names freely; a sink
// whose broker cannot carry a name refuses it in its Validate.
//
// Sink routes are registered per loaded sink when the handler is built.
// Names that would collide with the API's own routes (see ReservedName) and
// names that are not lowercase letters, digits, '_' and '-' are not routed;
// the handler logs an error for each.
package api
