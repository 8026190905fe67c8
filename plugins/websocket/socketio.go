package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/zishang520/socket.io/parsers/socket/v3/parser"
	"github.com/zishang520/socket.io/servers/engine/v3/transports"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
	"github.com/zishang520/socket.io/v3/pkg/utils"

	"github.com/evorelay/evorelay/sdk"
)

// This file serves Socket.IO (protocol v5, what socket.io-client 4.x
// speaks) beside /ws: the namespace /<instance> carries that instance's
// events and / every instance's, from the same hub, windows and limits as
// /ws. doc.go says what clients see.

// sioPath is where Socket.IO clients connect by default.
const sioPath = "/socket.io"

// Namespaces a frame is encoded for: its instance's, and "/".
const (
	nspInstance = iota
	nspAll
)

// maxSioClientBytes bounds one HTTP body or websocket message a Socket.IO
// client sends: a CONNECT packet with its auth payload, or a pong.
const maxSioClientBytes = 64 << 10

// lazyPacket is an encoded Socket.IO packet, built once on first use.
type lazyPacket struct {
	once sync.Once
	b    []byte
}

// sioEncoder writes Socket.IO packets; it holds no state.
var sioEncoder = parser.NewEncoder()

// encodeEvent is the Socket.IO EVENT packet of namespace nsp with args.
func encodeEvent(nsp string, args ...any) []byte {
	bufs := sioEncoder.Encode(&parser.Packet{Type: parser.EVENT, Nsp: nsp, Data: args})
	b := bufs[0].Bytes()
	return b[:len(b):len(b)] // shared by every client: appends must copy
}

// packet is f's EVENT packet in namespace which (nspInstance or nspAll):
// the event named per EVORELAY_NAMING, the envelope, and the delivery id
// last, which is where socket.io-client's connection-state recovery reads
// the offset it sends back on reconnection.
func (f *frame) packet(which int) []byte {
	p := &f.packets[which]
	p.once.Do(func() {
		nsp := "/"
		if which == nspInstance {
			nsp = "/" + f.instance
		}
		p.b = encodeEvent(nsp, f.event, f.envelope, f.id)
	})
	return p.b
}

// roomOfNamespace is the hub room of a namespace: "/" is every instance,
// "/<instance>" one.
func roomOfNamespace(nsp string) string {
	if nsp == "/" {
		return allRoom
	}
	return strings.TrimPrefix(nsp, "/")
}

// validInstance is the host's rule for an instance name: 1 to 128 bytes
// of valid UTF-8, no control characters, no '/'.
func validInstance(name string) bool {
	if name == "" || len(name) > 128 || !utf8.ValidString(name) || strings.ContainsRune(name, '/') {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// newSocketIO builds the Socket.IO server and returns its HTTP handler.
func (s *Sink) newSocketIO() (*socket.Server, http.Handler) {
	opts := socket.DefaultServerOptions()
	opts.SetPath(sioPath)
	opts.SetServeClient(false)
	opts.SetTransports(types.NewSet[transports.TransportCtor](&transports.PollingBuilder{}, &transports.WebSocketBuilder{}))
	opts.SetPingInterval(s.cfg.pingInterval)
	opts.SetPingTimeout(s.cfg.pongTimeout)
	opts.SetMaxHttpBufferSize(maxSioClientBytes)
	opts.SetCleanupEmptyChildNamespaces(true)
	if s.cfg.corsAny || len(s.cfg.corsOrigins) > 0 {
		// sioOriginGate has let in only the origins that may connect; the
		// library answers them with CORS headers (and lets their
		// websockets in).
		opts.SetCors(&types.Cors{
			Origin:         func(string) bool { return true },
			AllowedHeaders: []string{"apikey", "content-type"},
		})
	}
	// Connection-state recovery makes the server hand each client a
	// private session id, which socket.io-client sends back with the id
	// of the last event it got. The session is not kept: windowAdapter
	// answers from the hub's windows, and the auth middleware runs again.
	csr := &socket.ConnectionStateRecovery{}
	csr.SetSkipMiddlewares(false)
	opts.SetConnectionStateRecovery(csr)
	opts.SetAdapter(&windowAdapterBuilder{hub: s.hub})

	io := socket.NewServer(nil, opts)
	io.Use(s.sioAuth)
	_ = io.On("connection", s.sioConnection)
	match := socket.ParentNspNameMatchFn(new(func(name string, _ map[string]any, next func(error, bool)) {
		next(nil, validInstance(strings.TrimPrefix(name, "/")))
	}))
	instances := io.Of(match, nil)
	instances.Use(s.sioAuth)
	_ = instances.On("connection", s.sioConnection)
	return io, s.sioOriginGate(io.ServeHandler(nil))
}

// sioOriginGate refuses a request from a browser page of another origin
// than the one it was sent to, unless that origin is in
// EVORELAY_WEBSOCKET_CORS_ORIGINS, as /ws does with its own list.
func (s *Sink) sioOriginGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !originAllowed(r, s.cfg.corsAny, s.cfg.corsOrigins) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("origin %q may not use Socket.IO: it is not this server's origin; add it to EVORELAY_WEBSOCKET_CORS_ORIGINS", r.Header.Get("Origin")))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sioAuth lets a socket into its namespace when its key may see it: the
// key in the socket.io auth payload (checked by the host through
// sdk.Identify), else the one the host checked on the HTTP request
// (sdk.IdentityHeader). "/" needs the admin key.
func (s *Sink) sioAuth(sock *socket.Socket, next func(*socket.ExtendedError)) {
	nsp := sock.Nsp().Name()
	room := roomOfNamespace(nsp)
	id, err := s.sioIdentity(sock)
	if err != nil {
		next(socket.NewExtendedError(err.Error(), nil))
		return
	}
	if !id.May(room) {
		what := "namespace " + nsp + " (instance " + room + ")"
		if room == allRoom {
			what = `namespace "/" (every instance)`
		}
		next(socket.NewExtendedError(fmt.Sprintf("this API key may not see %s; it is scoped to instance %s", what, id.Instance), nil))
		return
	}
	if err := s.sioJoin(sock); err != nil {
		next(socket.NewExtendedError(err.Error(), nil))
		return
	}
	next(nil)
}

// errNoKey is a socket with no key anywhere.
var errNoKey = errors.New(`missing API key; send it in the "apikey" header, the apikey query parameter or the Socket.IO auth payload ({auth: {apikey}})`)

// sioIdentity is whose key a socket carries.
func (s *Sink) sioIdentity(sock *socket.Socket) (sdk.Identity, error) {
	if key, ok := sock.Handshake().Auth["apikey"].(string); ok && key != "" {
		id, err := sdk.Identify(context.Background(), s.hostSocket, key)
		if errors.Is(err, sdk.ErrUnknownKey) {
			return sdk.Identity{}, errors.New("invalid API key in the Socket.IO auth payload; send the key the sidecar is configured with")
		}
		if err != nil {
			s.log.Warn("socket.io: cannot check an auth payload's key with the host", "error", err)
			return sdk.Identity{}, errors.New("the API key in the auth payload cannot be checked right now; retry shortly")
		}
		return id, nil
	}
	h := sock.Request().Headers().Peek(sdk.IdentityHeader)
	if h == "" {
		return sdk.Identity{}, errNoKey
	}
	return sdk.ParseIdentity(h)
}

// sioJoin joins a socket that may see its namespace to the hub's room
// (replaying from the auth payload's offset, if any) before the library
// acknowledges its CONNECT, as /ws joins before its upgrade: no delivery
// falls between the client's "connect" and the join. Its frames are
// written once sioConnection says it is connected, until it leaves or is
// dropped.
func (s *Sink) sioJoin(sock *socket.Socket) error {
	room := roomOfNamespace(sock.Nsp().Name())
	offset, _ := sock.Handshake().Auth["offset"].(string)
	if len(offset) > maxSinceLen {
		return fmt.Errorf("offset is %d bytes long; send the id of the last event received", len(offset))
	}
	if err := s.hub.reserve(room); err != nil {
		return err
	}
	c := newClient(room, &s.cfg)
	if !s.hub.join(c, offset, offset != "") {
		s.hub.release(room, nil)
		return errors.New("the websocket sink is shutting down; reconnect shortly")
	}
	conn := sock.Conn()
	s.hub.attachFunc(c, func() { conn.Close(true) })
	gone := make(chan struct{})
	var goneOnce sync.Once
	leave := func(...any) { goneOnce.Do(func() { close(gone) }) }
	_ = sock.On("disconnect", leave)
	_ = conn.Once("close", leave)
	if conn.ReadyState() != "open" { // it closed before the listeners were there
		leave()
	}
	ready := make(chan struct{})
	s.sioReady.Store(sock, ready)
	log := s.log.With("instance", room, "transport", "socket.io")
	go func() {
		defer s.hub.release(room, c)
		defer s.sioReady.Delete(sock)
		select {
		case <-ready:
		case <-gone:
			return
		case <-c.kicked:
			conn.Close(true)
			return
		}
		log.Debug("client connected", "offset", offset, "recovered", sock.Recovered(), "replay", len(c.replay), "gap", c.gap != nil)
		s.sioWriteLoop(c, sock, gone)
		logLeave(log, c)
	}()
	return nil
}

// sioConnection lets a joined socket's frames be written: the library has
// acknowledged its CONNECT.
func (s *Sink) sioConnection(args ...any) {
	if ready, ok := s.sioReady.LoadAndDelete(args[0].(*socket.Socket)); ok {
		close(ready.(chan struct{}))
	}
}

// sioWriteLoop writes a socket's replay and then its live frames. The
// Engine.IO socket buffers writes without bound, so the loop keeps at most
// send_buffer packets unwritten there; a client that stops reading holds
// them, its own queue fills, and the hub drops it as it drops a slow /ws
// client. It never waits on another client.
func (s *Sink) sioWriteLoop(c *client, sock *socket.Socket, gone <-chan struct{}) {
	conn := sock.Conn()
	which := nspInstance
	if c.room == allRoom {
		which = nspAll
	}
	inFlight := make(chan struct{}, s.cfg.sendBuffer)
	written := func(transports.Transport) { <-inFlight }
	write := func(b []byte) bool {
		select {
		case inFlight <- struct{}{}:
		case <-c.kicked:
			return false
		case <-gone:
			return false
		}
		conn.Write(types.NewStringBuffer(b), nil, written)
		return true
	}
	ok := true
	if c.gap != nil {
		ok = write(encodeEvent(sock.Nsp().Name(), gapEvent, c.gap))
	}
	for _, f := range c.replay {
		if !ok {
			break
		}
		ok = write(f.packet(which))
	}
	c.replay = nil
	for ok {
		select {
		case f := <-c.send:
			ok = write(f.packet(which))
		case <-c.kicked:
			ok = false
		case <-gone:
			return
		}
	}
	select {
	case <-c.kicked:
		if c.kickCode == closeSlow {
			// It does not read: a goodbye would not reach it.
			conn.Close(true)
			return
		}
		sock.Disconnect(true)
	default:
	}
}

// windowAdapterBuilder makes the namespaces' adapters.
type windowAdapterBuilder struct{ hub *hub }

func (b *windowAdapterBuilder) New(nsp socket.Namespace) socket.Adapter {
	a := &windowAdapter{Adapter: socket.MakeAdapter(), hub: b.hub}
	a.Prototype(a)
	a.Construct(nsp)
	return a
}

// windowAdapter is the library's in-memory adapter, but for connection
// state recovery, which it answers from the hub's windows: a session is
// recovered (socket.recovered on the client) when its offset, the id of
// the last event it got, is in its namespace's window; sioConnection then
// replays what follows. Nothing is kept per session: the private id a
// client sends back is taken at its word, since it grants nothing: the
// auth middleware runs again and the offset is only a position.
type windowAdapter struct {
	socket.Adapter
	hub *hub
}

func (a *windowAdapter) RestoreSession(pid socket.PrivateSessionId, offset string) (*socket.Session, error) {
	if pid == "" || offset == "" || !a.hub.holds(roomOfNamespace(a.Nsp().Name()), offset) {
		return nil, nil
	}
	return &socket.Session{SessionToPersist: &socket.SessionToPersist{
		Sid: socket.SocketId(utils.Base64Id().GenerateId()), Pid: pid, Rooms: types.NewSet[socket.Room](),
	}}, nil
}
