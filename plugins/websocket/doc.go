// Command evorelay-sink-websocket is the websocket sink: it streams the
// events evorelay accepts to websocket clients as they arrive. It is a
// plugin process the evorelay host launches; it is not meant to be run by
// hand, and it knows nothing of the host beyond the sdk.
//
// It is live delivery, not a queue: a client receives what is delivered
// while it is connected, and what it missed in a short window before (see
// Resuming). Nothing is kept for a client that never connects.
//
// # How clients reach it
//
// The sink describes itself as a Listener: the host gives it a Unix socket
// (Config.ListenSocket) and the sink serves HTTP there, on these paths:
//
//	GET /ws/{instance}   a websocket of one instance's events
//	GET /ws              a websocket of every instance's events
//	GET /ws-console      a web page to watch the events (below)
//	/socket.io/          Socket.IO, as Evolution API serves it (below)
//
// The host authenticates a client (header apikey, or the apikey query
// parameter, which is what a browser can send) and reverse-proxies the
// request to the socket unchanged: path, query, Host and the websocket
// upgrade headers (Sec-WebSocket-Extensions included). The sink trusts
// every request that reaches it; the socket is created 0600. /ws-console
// is a static page and needs no key; the page asks for one.
//
// # Instance settings
//
// POST /websocket/set/{instance} stores {"enabled": true, "events":
// ["MESSAGES_UPSERT"]}. The host normalizes both fields and sends the sink
// only the deliveries an instance's settings want, so everything the sink
// receives for an instance goes to that instance's clients (and to /ws).
// Evolution API's read-only fields (id, instanceId, createdAt, updatedAt)
// are dropped; any other field is refused by name. A client may connect to
// an instance whose websocket is not enabled: it receives nothing until it
// is.
//
// # Messages
//
// Every message is a JSON text frame, the seed's {event, instance, data}
// with the delivery id added, in this order:
//
//	{"event":"MESSAGES_UPSERT","instance":"sales","data":{...},"id":"01J9Z8..."}
//
// event is written as EVORELAY_NAMING says (MESSAGES_UPSERT, or
// messages.upsert in evolution naming); data is the engine's data; id is
// the delivery id, stable across the host's retries, to resume from. A
// message is built once per delivery and the same prepared bytes go to
// every client (gorilla compresses them once per compression setting).
// Messages are sent to a client in the order the sink received them.
// Anything a client sends, but pongs and close frames, is read and ignored.
//
// # Resuming
//
// The sink keeps a window of the latest messages of each instance
// (EVORELAY_WEBSOCKET_RESUME_WINDOW, 1000) and one of all of them for /ws
// (RESUME_WINDOW_GLOBAL, 10000), each also bounded in bytes
// (RESUME_WINDOW_BYTES, 32MiB; the newest message is kept whatever its
// size). A client that connects with ?since=<id of the last message it
// got> first receives every message of its window after that id, in order,
// then the live ones, with none lost or repeated between the two: the
// replay is cut and the client joins the live stream in one step.
//
// When since is not in the window (it is older than the window reaches,
// the plugin restarted, or the id is unknown), the client first gets a gap
// message, then every message the window holds, then the live ones:
//
//	{"event":"evorelay.gap","instance":"sales","since":"01J9Z8...","oldest":"01J9ZA..."}
//
// since is what the client sent; oldest is the id of the first message
// that follows (the oldest one the window holds), or null when it holds
// none; instance is null on /ws. The messages between since and oldest are
// lost to this client. The gap message has no id and is spelt the same in
// both naming modes. A client that connects without since (or with an
// empty one) gets live messages only. A delivery whose id the instance's
// window already holds (the host sent it again) is acknowledged and not
// sent again.
//
// Windows live in memory: they start empty when the plugin starts. When
// the plugin process dies, its clients reconnect through the host to the
// new process with since, get the gap message and then the new window,
// which holds what the host delivered since the restart, including what
// the dead process had not acknowledged (the host sends that again). What
// the dead process had acknowledged (queued to a client) but not yet
// written to that client's socket is lost to that client; the gap message
// tells it so. Acknowledging only once written would close that hole, but
// a client that stops reading would then hold every other client's
// messages up to write_timeout, which live delivery must never do.
//
// # Acknowledgement
//
// A delivery is acknowledged as delivered once it is queued to every
// client of its instance and of /ws connected at that moment, and also
// when no client is connected: there is nobody to deliver to, and holding
// events back for a client that may never come is what the resume window
// is for. Health's Detail counts these ("N clients (M on /ws); D
// delivered, X with no client"), and the host shows it in /readyz. A
// delivery whose envelope is not JSON is dead-lettered. Nothing is ever
// retried.
//
// # Slow and dead clients
//
// Each connection has a bounded queue (SEND_BUFFER, 256 messages). Deliver
// never waits for a client: when a client's queue is full the client is
// dropped from the stream and closed with 1008 (policy violation) and the
// reason "send buffer full (256 messages); reconnect with since=<last id>"
// — it can resume. The other clients are not slowed. A write that does not
// finish within WRITE_TIMEOUT ends the connection too.
//
// The sink pings every client every PING_INTERVAL (30s); a client that has
// not answered within PING_INTERVAL + PONG_TIMEOUT (10s) of its last pong
// is taken as dead and its connection closed. Browsers answer pings
// themselves.
//
// When the plugin closes, every client is closed with 1001 (going away).
//
// # Limits and origins
//
// MAX_CONNECTIONS (10000) bounds all connections and
// MAX_CONNECTIONS_PER_INSTANCE (1000) those of one instance, /ws counting
// as one more instance. A connection over a limit is refused before the
// upgrade with 503, Retry-After: 5, and the error envelope
// {"status":503,"error":"Service Unavailable","response":{"message":["too
// many websocket connections ..."]}}. A request that is not a websocket
// upgrade is 400.
//
// Browsers send an Origin header; the sink lets in a connection with no
// Origin (not a browser), one whose Origin's host is the Host it was sent
// to (the same origin; the host's proxy keeps Host), and one whose origin
// is listed in ALLOWED_ORIGINS (comma-separated scheme://host[:port], or *
// for any). Others are refused with 403. The default, same origin only,
// keeps a page on another site from reading events with a key it found
// in the browser.
//
// Per-message compression (permessage-deflate) is used when the client
// offers it, unless COMPRESSION is false.
//
// # The console
//
// GET /ws-console is a page, embedded in the binary, with no external
// resources: a person enters the API key and an instance (empty for all),
// and it connects to /ws/{instance}?apikey=… on the same origin and lists
// the events as they arrive, newest first. When the connection drops it
// reconnects with backoff (1s doubling to 30s) and resumes with since=the
// last id it got, showing a gap message as a notice. The key stays in the
// page's memory. It can watch through Socket.IO instead (websocket
// transport, namespace /{instance} or /, resuming with the auth payload's
// offset), which shows what an Evolution API client receives; it speaks
// the few Engine.IO/Socket.IO packets it needs itself, as it may load no
// script from elsewhere.
//
// # Socket.IO
//
// Evolution API's own websocket is Socket.IO, and its clients
// (socket.io-client 4.x, protocol v5) connect here unchanged, through the
// host's port and proxy, from the same settings, hub and windows as /ws.
// github.com/zishang520/socket.io v3 speaks Engine.IO and Socket.IO: HTTP
// long-polling then the upgrade to websocket, or websocket only. It was
// chosen as the maintained Go port of the reference Node server (protocol
// v5, Engine.IO v4, connection-state recovery, dynamic namespaces, a
// replaceable adapter, actively released); googollee/go-socket.io speaks
// only the old protocol v4 (socket.io-client 2.x). Its cost: about 9 MB
// more in this binary (it imports quic-go for WebTransport, which is not
// served here) and an unbounded write buffer per connection, bounded by
// this sink (below).
//
//   - Namespaces: /<instance> carries that instance's events, / every
//     instance's. Any valid instance name is a namespace from the start (a
//     dynamic namespace), so a client never gets "Invalid namespace", after
//     a restart or before the instance's first event.
//   - Events: named by the event, per EVORELAY_NAMING (messages.upsert in
//     evolution naming, as Evolution API emits them); the first argument is
//     the envelope as Evolution API sends it, {event, instance, data,
//     date_time, sender, server_url, apikey}; the second is the delivery
//     id. A client that listens with socket.on("messages.upsert", msg =>
//     ...) sees what it saw from Evolution API.
//   - Keys: as Evolution API takes them, in the apikey query parameter or
//     header, which the host checks and passes on as sdk.IdentityHeader,
//     or in the handshake's auth payload ({auth: {apikey}}), which the
//     host's proxy cannot see: the sink asks the host (sdk.Identify, on
//     Config.HostSocket). The sink never holds a key. A request without a
//     key reaches the sink; its sockets join no namespace without a key in
//     the payload. Keys are scoped, which Evolution API does not do: "/"
//     needs the admin key, and a key scoped to one instance joins only
//     that instance's namespace. A refusal is a connect_error whose message
//     says why.
//   - Resuming: the server offers connection-state recovery, so
//     socket.io-client sends back the id of the last event it got when it
//     reconnects; the sink replays what follows from the instance's window
//     (the one /ws?since= reads) and the client's socket.recovered is true.
//     A client may also send an id itself: {auth: {offset: "<id>"}}. An id
//     no longer in the window gets an evorelay.gap event first (the gap
//     message below, as the first argument), then the window, and
//     socket.recovered is false.
//   - Slow clients: Engine.IO buffers writes without bound, so the sink
//     keeps at most SEND_BUFFER packets unwritten per socket, and a socket
//     whose own queue of SEND_BUFFER messages fills as well is closed, as a
//     slow /ws client is. Deliver never waits for a socket.
//   - Limits and pings: a socket in a namespace counts as a connection of
//     that instance (or of /ws for "/"); over a limit, the connect_error
//     says so. Engine.IO pings every PING_INTERVAL and drops a client that
//     has not answered within PONG_TIMEOUT.
//   - Origins: a browser page of another origin gets CORS headers, and its
//     websocket is let in, only when its origin is in CORS_ORIGINS; closed
//     (same origin only) by default.
//
// # Process settings
//
//	EVORELAY_WEBSOCKET_PING_INTERVAL                 ping every (30s); a Go duration or seconds
//	EVORELAY_WEBSOCKET_PONG_TIMEOUT                  pong grace after the interval (10s)
//	EVORELAY_WEBSOCKET_WRITE_TIMEOUT                 one message's write (10s)
//	EVORELAY_WEBSOCKET_SEND_BUFFER                   messages queued per client (256)
//	EVORELAY_WEBSOCKET_MAX_CONNECTIONS               all connections (10000)
//	EVORELAY_WEBSOCKET_MAX_CONNECTIONS_PER_INSTANCE  connections of one instance, or of /ws (1000)
//	EVORELAY_WEBSOCKET_RESUME_WINDOW                 messages kept per instance (1000; 0 turns resume off)
//	EVORELAY_WEBSOCKET_RESUME_WINDOW_GLOBAL          messages kept for /ws (10000)
//	EVORELAY_WEBSOCKET_RESUME_WINDOW_BYTES           bytes kept per window (32MiB); bytes, or KiB/MiB/GiB
//	EVORELAY_WEBSOCKET_ALLOWED_ORIGINS               other origins that may connect to /ws ("")
//	EVORELAY_WEBSOCKET_CORS_ORIGINS                  other origins that may use Socket.IO ("")
//	EVORELAY_WEBSOCKET_COMPRESSION                   offer permessage-deflate (true)
//
// A bad value stops the plugin's Open with an error naming the variable; an
// unknown EVORELAY_WEBSOCKET_* variable is logged as a warning. Memory is
// bounded by the windows (at most one per instance that had a delivery,
// plus /ws) and by the messages queued to clients, which share their bytes.
package main
