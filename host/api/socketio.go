package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/evorelay/evorelay/sdk"
)

// Socket.IO clients (Evolution API's websocket) connect under /socket.io/.
// Their key may come where the host can check it (the apikey header or
// query parameter) or inside the Socket.IO stream (the auth payload of a
// namespace's CONNECT), which only the plugin reads. So these routes let a
// request without a key through to the plugin, marked with no identity,
// and the plugin asks the host about the key in the payload (Identify, on
// the host socket). A request that does carry a key must carry a valid one
// (401 otherwise), and reaches the plugin with its identity in
// sdk.IdentityHeader. A client never sets that header itself: the host
// removes it from every request it proxies.

// socketIOPath is the path Socket.IO clients use by default.
const socketIOPath = "/socket.io/"

// routeSocketIO routes the Engine.IO requests: GET (handshake, long
// polling, websocket upgrade), POST (long-polling writes) and OPTIONS
// (a browser's CORS preflight, which carries no key and reveals nothing).
func (s *server) routeSocketIO() {
	s.route(http.MethodGet, socketIOPath+"*rest", socketIOPath, authNone, s.socketIO)
	s.route(http.MethodPost, socketIOPath+"*rest", socketIOPath, authNone, s.socketIO)
	s.route(http.MethodOptions, socketIOPath+"*rest", socketIOPath, authNone, s.proxyAnonymous)
}

// socketIO checks the key of a request that carries one, and proxies it
// with its identity, or without one when it carries no key.
func (s *server) socketIO(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	key := r.Header.Get("apikey")
	if key == "" {
		key = r.URL.Query().Get("apikey")
	}
	if key == "" {
		s.proxyAnonymous(w, r, ps)
		return
	}
	id, ok := s.identify(key)
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid API key; send the key the sidecar is configured with (EVORELAY_API_KEY) in the \"apikey\" header, the apikey query parameter or the Socket.IO auth payload")
		return
	}
	r.Header.Set(sdk.IdentityHeader, id.String())
	s.opts.Websocket.ServeHTTP(w, r)
}

// proxyAnonymous proxies a request that carries no key.
func (s *server) proxyAnonymous(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	r.Header.Del(sdk.IdentityHeader)
	s.opts.Websocket.ServeHTTP(w, r)
}

// identify returns whose key key is. It is the one place a key becomes an
// identity: the routes' authentication, the /socket.io/ identity header
// and the plugins' Identify all ask it, so a key scoped to one instance
// is known to all three once it answers Identity{Instance: ...}.
func (s *server) identify(key string) (sdk.Identity, bool) {
	sum := sha256.Sum256([]byte(key))
	if s.keySet && subtle.ConstantTimeCompare(sum[:], s.key[:]) == 1 {
		return sdk.Identity{}, true
	}
	return s.identifyScoped(key)
}

// NewIdentify returns the handler of the host socket that listener
// plugins ask about keys their clients sent in a stream (sdk.Identify):
// POST /v1/identify with header apikey answers 200 and the key's identity
// (sdk.Identity.String), or 401. Only the plugins can reach it: the host
// serves it on a Unix socket in its private run directory.
func NewIdentify(o Options) http.Handler {
	s := newServer(o)
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+sdk.IdentifyPath, func(w http.ResponseWriter, r *http.Request) {
		id, ok := s.identify(r.Header.Get("apikey"))
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, id.String())
	})
	return mux
}
