package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
)

// consolePage is GET /ws-console: a page that connects to /ws with the API
// key a person types and shows the events as they arrive.
//
//go:embed console.html
var consolePage []byte

// maxSinceLen bounds the since query parameter.
const maxSinceLen = 256

// routes is the handler served on the Unix socket. The host has already
// checked the API key of every request that reaches it.
func (s *Sink) routes(sio http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(sioPath+"/", sio)
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) { s.serveClient(w, r, allRoom) })
	mux.HandleFunc("GET /ws/{instance}", func(w http.ResponseWriter, r *http.Request) {
		s.serveClient(w, r, r.PathValue("instance"))
	})
	mux.HandleFunc("GET /ws-console", serveConsole)
	return mux
}

// serveClient upgrades one client of room and runs it until it leaves.
func (s *Sink) serveClient(w http.ResponseWriter, r *http.Request, room string) {
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, "this is a websocket endpoint: connect with a websocket client (Upgrade: websocket)")
		return
	}
	if !s.originAllowed(r) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("origin %q may not connect: it is not this server's origin; add it to EVORELAY_WEBSOCKET_ALLOWED_ORIGINS", r.Header.Get("Origin")))
		return
	}
	since := r.URL.Query().Get("since")
	hasSince := since != "" // ?since= with no id is the same as none
	if len(since) > maxSinceLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("since is %d bytes long; give the id of the last message received", len(since)))
		return
	}
	if err := s.hub.reserve(room); err != nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	// Join before the upgrade: every delivery after the client's handshake
	// completes is queued to it, none falls between the two.
	c := newClient(room, &s.cfg)
	if !s.hub.join(c, since, hasSince) {
		s.hub.release(room, nil)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "the websocket sink is shutting down; reconnect shortly")
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.hub.release(room, c)
		return // the upgrader answered the client
	}
	s.hub.attach(c, conn)
	log := s.log.With("instance", room)
	log.Debug("client connected", "since", since, "replay", len(c.replay), "gap", c.gap != nil)
	// The connection runs on two fresh goroutines and this handler
	// returns, so net/http lets go of the request's buffers: an idle
	// connection holds only what it needs.
	s.hub.conns.Add(1)
	go func() {
		defer s.hub.conns.Done()
		c.readLoop()
	}()
	go func() {
		defer s.hub.release(room, c)
		c.writeLoop()
		if c.pongMissed {
			s.hub.notePongMissed()
		}
		logLeave(log, c)
	}()
}

func logLeave(log hclog.Logger, c *client) {
	select {
	case <-c.kicked:
		if c.kickCode == closeSlow {
			log.Warn("client dropped: it could not keep up", "reason", c.kickReason)
			return
		}
	default:
	}
	if c.pongMissed {
		log.Info("client dropped: no pong within ping_interval + pong_timeout")
		return
	}
	log.Debug("client disconnected")
}

// originAllowed lets in a request with no Origin (not a browser), one
// from the origin it was sent to (its Host, as the host's proxy keeps it),
// and one from EVORELAY_WEBSOCKET_ALLOWED_ORIGINS.
func (s *Sink) originAllowed(r *http.Request) bool {
	return originAllowed(r, s.cfg.anyOrigin, s.cfg.origins)
}

// originAllowed reports whether r has no Origin, is from the origin it
// was sent to, or from one of others (any when anyOrigin).
func originAllowed(r *http.Request, anyOrigin bool, others map[string]bool) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || anyOrigin {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return others[strings.ToLower(u.Scheme+"://"+u.Host)]
}

// newUpgrader returns the upgrader of cfg. Origins are checked before it
// runs. Reads need little buffer (clients send only control frames), and
// the write buffer comes from a pool when one is needed at all (prepared
// messages are written without it), so an idle connection holds little.
func newUpgrader(cfg processConfig, log hclog.Logger) *websocket.Upgrader {
	return &websocket.Upgrader{
		ReadBufferSize:    512,
		WriteBufferPool:   &sync.Pool{},
		EnableCompression: cfg.compression,
		CheckOrigin:       func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			log.Debug("websocket upgrade refused", "status", status, "error", reason)
			writeError(w, status, reason.Error())
		},
	}
}

// serveConsole answers GET /ws-console with the console page.
func serveConsole(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	_, _ = w.Write(consolePage)
}

// writeError answers with the host's error envelope, which clients of the
// REST routes already parse.
func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(map[string]any{
		"status":   status,
		"error":    http.StatusText(status),
		"response": map[string]any{"message": []string{msg}},
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
