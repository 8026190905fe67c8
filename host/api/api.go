package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/julienschmidt/httprouter"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// DefaultMaxBodyBytes bounds an ingest request when Options.MaxBodyBytes is
// zero. WhatsApp media arrives base64-encoded inside the event, and a short
// video is several MB, so the bound is generous.
const DefaultMaxBodyBytes = 64 << 20

// maxSettingsBytes bounds a settings body: settings are a few fields.
const maxSettingsBytes = 1 << 20

// retryAfterSeconds is the Retry-After of every 503.
const retryAfterSeconds = "5"

// Sinks is what the API needs from the loaded plugins.
type Sinks interface {
	// Names lists the loaded sinks. It is read once, by New, to register
	// each sink's routes, and again to name them in 404 answers.
	Names() []string
	// Validate asks the sink's plugin to check one instance's settings. The
	// host has already normalized "enabled" (a bool) and "events" (a list
	// of constants, empty for all). fieldErrs are the user's mistakes
	// (answered 400); err is anything else (answered 503).
	Validate(ctx context.Context, sink, instance string, settings json.RawMessage) (normalized json.RawMessage, fieldErrs []FieldError, err error)
	// SecretFields are the sink's top-level settings fields that find and
	// set answers mask.
	SecretFields(sink string) []string
	// Unavailable is nil while the sink's plugin can answer (or is being
	// restarted); otherwise why it cannot (its last start failed), which
	// set and find answer as a 503.
	Unavailable(sink string) error
	// Plugins is what GET /plugins serializes (name, version, state,
	// restarts).
	Plugins() any
}

// FieldError is one bad settings field, as a plugin's Validate reports it.
type FieldError struct {
	// Field is the JSON name of the setting.
	Field   string
	Message string
}

// Settings is the settings store.
type Settings interface {
	// Get returns one instance's settings for one sink, if set.
	Get(sink, instance string) (store.Settings, bool)
	// Set stores the normalized settings (replacing what was there) and
	// returns them as stored.
	Set(ctx context.Context, sink, instance string, raw json.RawMessage) (store.Settings, error)
}

// Spool is where accepted events go; spool.Spool satisfies it.
type Spool interface {
	// Append stores events durably, all or none.
	Append(ctx context.Context, events []spool.Event) error
}

// DeadLetters lists, replays and discards what a sink could not deliver;
// spool.Spool satisfies it.
type DeadLetters interface {
	DeadLetters(sink, instance string, limit int, before string) ([]spool.DeadLetter, error)
	Replay(sink, instance string, ids []string) (int, error)
	Discard(sink, instance string, ids []string) (int, error)
}

// Options configure the handler New builds.
type Options struct {
	// APIKey is the key the "apikey" header must carry (EVORELAY_API_KEY).
	// An empty key authenticates no request: the API fails closed.
	APIKey string
	// ServerURL is the server_url of envelopes that carry none
	// (EVORELAY_SERVER_URL).
	ServerURL string
	// MaxBodyBytes bounds an ingest request body; larger is 413. Zero or
	// less means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// BodyMemory bounds the bytes of request bodies being read at once
	// (each counted at its Content-Length, or MaxBodyBytes when unknown);
	// a request past it is answered 503 + Retry-After before its body is
	// read. Zero or less means DefaultBodyMemory; never below
	// MaxBodyBytes.
	BodyMemory int64
	// BodyTimeout is how long a request body may make no progress before
	// it is cut off. Zero or less means DefaultBodyTimeout.
	BodyTimeout time.Duration

	Sinks    Sinks    // required
	Settings Settings // required
	Spool    Spool    // required
	// DeadLetters serves /{sink}/deadletters/{instance}; nil routes none.
	DeadLetters DeadLetters
	// Keys keeps the instance-scoped API keys and serves /keys; nil
	// routes none and knows only the admin key.
	Keys Keys

	// FullDetail, when set, says which sinks hold the spool when it is
	// full; the 503 of ingest includes it.
	FullDetail func() string
	// DropSink, when set, serves DELETE /plugins/{name}: it drops what the
	// spool keeps for a sink whose plugin is absent. An error wrapping
	// ErrNotAbsent is a 404.
	DropSink func(name string) error

	// Ready reports readiness and its details for GET /readyz; nil is
	// always ready.
	Ready func(ctx context.Context) (bool, map[string]any)
	// Metrics serves GET /metrics without an API key; nil answers 404.
	Metrics http.Handler
	// Registerer receives the API's own metrics (requests, events
	// accepted, ingest bytes); nil records none.
	Registerer prometheus.Registerer
	// Websocket, when set, serves GET /ws and GET /ws/{instance} once the
	// API key (header or apikey query parameter) is checked.
	Websocket http.Handler

	// Logger receives 5xx causes and recovered panics; nil discards.
	Logger hclog.Logger
	// Now is the clock of date_time; nil is time.Now.
	Now func() time.Time
	// NewID returns a unique event id; nil is a monotonic ULID, safe for
	// concurrent use.
	NewID func() string
}

// public are the routes that need no API key.
var public = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true, "/ws-console": true}

// newServer is the state New and NewIdentify share.
func newServer(o Options) *server {
	s := &server{
		key:     sha256.Sum256([]byte(o.APIKey)),
		keySet:  o.APIKey != "",
		opts:    o,
		maxBody: o.MaxBodyBytes,
		log:     o.Logger,
		now:     o.Now,
		newID:   o.NewID,
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	s.bodies.limit = o.BodyMemory
	if s.bodies.limit <= 0 {
		s.bodies.limit = DefaultBodyMemory
	}
	s.bodies.limit = max(s.bodies.limit, s.maxBody)
	s.bodyTimeout = o.BodyTimeout
	if s.bodyTimeout <= 0 {
		s.bodyTimeout = DefaultBodyTimeout
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = func() string { return ulid.Make().String() }
	}
	return s
}

type server struct {
	key     [sha256.Size]byte
	keySet  bool
	opts    Options
	maxBody int64
	// bodies and bodyTimeout bound request bodies (Options.BodyMemory,
	// Options.BodyTimeout).
	bodies      bodyBudget
	bodyTimeout time.Duration
	sinks       []string // routed, sorted
	log         hclog.Logger
	now         func() time.Time
	newID       func() string
	metrics     *metrics
	router      *httprouter.Router
}

// New builds the API's handler. It registers each loaded sink's routes now;
// a sink loaded later has none until New is called again. It panics if
// Sinks, Settings or Spool is nil, which is a programming error.
func New(o Options) http.Handler {
	if o.Sinks == nil || o.Settings == nil || o.Spool == nil {
		panic("api: New needs Options.Sinks, Options.Settings and Options.Spool")
	}
	s := newServer(o)
	s.metrics = newMetrics(o.Registerer)
	r := httprouter.New()
	// Redirects and automatic OPTIONS answers would run before
	// authentication and tell a stranger which sinks exist.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false
	r.HandleMethodNotAllowed = true
	// 404 takes the key as the ingest routes do: a misspelled ingest
	// path is told it is wrong, not that its key is missing.
	r.NotFound = s.wrap("not_found", authQuery, s.notFound)
	// 405 authenticates inside: a probe sent with the wrong method is told
	// so without a key.
	r.MethodNotAllowed = s.wrap("method_not_allowed", authNone, s.methodNotAllowed)
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, p any) { s.panicked(w, req, p, false) }
	s.router = r

	s.route(http.MethodGet, "/healthz", "/healthz", authNone, s.healthz)
	s.route(http.MethodGet, "/readyz", "/readyz", authNone, s.readyz)
	s.route(http.MethodGet, "/metrics", "/metrics", authNone, s.metricsRoute)
	s.route(http.MethodGet, "/plugins", "/plugins", authHeader, s.plugins)
	if o.DropSink != nil {
		s.route(http.MethodDelete, "/plugins/:name", "/plugins/:name", authHeader, s.dropSink)
	}
	if o.Keys != nil {
		s.route(http.MethodPost, "/keys/:instance", "/keys/:instance", authHeader, s.createKey)
		s.route(http.MethodGet, "/keys/:instance", "/keys/:instance", authHeader, s.listKeys)
		s.route(http.MethodDelete, "/keys/:instance/:id", "/keys/:instance/:id", authHeader, s.revokeKey)
	}
	s.route(http.MethodPost, "/events", "/events", authQuery, s.ingest)
	s.route(http.MethodPost, "/events/*suffix", "/events", authQuery, s.ingest)
	s.route(http.MethodPost, "/webhook/evolution/:instance", "/webhook/evolution/:instance", authQuery, s.ingest)
	if o.Websocket != nil {
		s.route(http.MethodGet, "/ws", "/ws", authQuery, s.websocket)
		s.route(http.MethodGet, "/ws/:instance", "/ws", authQueryInstance, s.websocket)
		// The console is a static page; the key is typed into it and sent
		// with its websocket, which /ws authenticates.
		s.route(http.MethodGet, "/ws-console", "/ws-console", authNone, s.websocket)
		s.routeSocketIO()
	}

	seen := map[string]bool{}
	for _, name := range o.Sinks.Names() {
		switch {
		case seen[name]:
			continue
		case sinkv1.CheckName(name) != nil:
			s.log.Error("sink not routed; rename the plugin", "sink", name, "error", sinkv1.CheckName(name))
			continue
		}
		seen[name] = true
		s.sinks = append(s.sinks, name)
		s.route(http.MethodPost, "/"+name+"/set/:instance", "/:sink/set/:instance", authHeaderInstance, s.set(name))
		s.route(http.MethodGet, "/"+name+"/find/:instance", "/:sink/find/:instance", authHeaderInstance, s.find(name))
		if o.DeadLetters != nil {
			s.route(http.MethodGet, "/"+name+"/deadletters/:instance", "/:sink/deadletters/:instance", authHeaderInstance, s.listDead(name))
			s.route(http.MethodDelete, "/"+name+"/deadletters/:instance", "/:sink/deadletters/:instance", authHeaderInstance, s.discardDead(name))
			s.route(http.MethodPost, "/"+name+"/deadletters/:instance/replay", "/:sink/deadletters/:instance/replay", authHeaderInstance, s.replayDead(name))
		}
	}
	sort.Strings(s.sinks)
	return r
}

// authMode is how a route is authenticated.
type authMode int

const (
	authNone   authMode = iota // probes and scrapers
	authHeader                 // the admin key in the apikey header
	authQuery                  // the admin key in the apikey header, or the apikey query parameter
	// As authHeader and authQuery, and a key scoped to the route's
	// {instance} is let through as well.
	authHeaderInstance
	authQueryInstance
)

// query reports whether the key may come in the apikey query parameter.
func (m authMode) query() bool { return m == authQuery || m == authQueryInstance }

// scoped reports whether a key scoped to the route's {instance} may call it.
func (m authMode) scoped() bool { return m == authHeaderInstance || m == authQueryInstance }

type handler func(w http.ResponseWriter, r *http.Request, ps httprouter.Params)

func (s *server) route(method, path, label string, mode authMode, h handler) {
	s.router.Handle(method, path, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		s.serve(label, mode, h, w, r, ps)
	})
}

func (s *server) wrap(label string, mode authMode, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(label, mode, h, w, r, nil)
	})
}

// serve authenticates, runs h, recovers a panic into a 500 envelope and
// counts the request.
func (s *server) serve(label string, mode authMode, h handler, w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.panicked(sw, r, p, sw.status != 0)
		}
		s.metrics.request(label, sw.status)
	}()
	if mode != authNone {
		id, msg := s.authenticate(r, mode.query())
		if msg != "" {
			writeError(sw, http.StatusUnauthorized, msg)
			return
		}
		if msg := forbidden(id, mode, ps.ByName("instance")); msg != "" {
			writeError(sw, http.StatusForbidden, msg)
			return
		}
		if !id.Admin() {
			// Sinks.Validate tells the plugin (a webhook then holds the
			// URL to the stricter egress policy).
			r = r.WithContext(sdk.WithScopedKey(r.Context()))
		}
	}
	s.withBody(sw, r, func() { h(sw, r, ps) })
}

// forbidden returns why identity id may not call a route of mode whose
// {instance} is instance, or "".
func forbidden(id sdk.Identity, mode authMode, instance string) string {
	switch {
	case id.Admin():
		return ""
	case mode.scoped() && instance == id.Instance:
		return ""
	case mode.scoped() && instance != "":
		return fmt.Sprintf("this key is scoped to instance %q; it may not act on instance %q", id.Instance, instance)
	default:
		return fmt.Sprintf("this key is scoped to instance %q; it may set, find, read dead letters of and stream only that instance; everything else needs the admin key (EVORELAY_API_KEY)", id.Instance)
	}
}

// authenticate returns whose key r carries, or why r is not authorized.
func (s *server) authenticate(r *http.Request, query bool) (sdk.Identity, string) {
	key := r.Header.Get("apikey")
	where := `the "apikey" header`
	if query {
		where += " or the apikey query parameter"
		if key == "" {
			key = r.URL.Query().Get("apikey")
		}
	}
	if key == "" {
		return sdk.Identity{}, "missing API key; send it in " + where
	}
	id, ok := s.identify(key)
	if !ok {
		return sdk.Identity{}, "invalid API key; send the key the sidecar is configured with (EVORELAY_API_KEY) in " + where
	}
	return id, ""
}

func (s *server) panicked(w http.ResponseWriter, r *http.Request, p any, written bool) {
	s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "error", fmt.Sprint(p), "stack", string(stack()))
	if !written {
		writeError(w, http.StatusInternalServerError, "internal error; the sidecar's log has the details")
	}
}

func (s *server) notFound(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) == 3 && (parts[1] == "set" || parts[1] == "find") && parts[2] != "" && !contains(s.sinks, parts[0]) {
		loaded := "none"
		if len(s.sinks) > 0 {
			loaded = strings.Join(s.sinks, ", ")
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown sink %q; the loaded sinks are: %s", parts[0], loaded))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s; the sidecar's README lists the routes", r.Method, r.URL.Path))
}

func (s *server) methodNotAllowed(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	// The router lists OPTIONS, which it is told not to answer.
	var methods []string
	for _, m := range strings.Split(w.Header().Get("Allow"), ", ") {
		if m != http.MethodOptions {
			methods = append(methods, m)
		}
	}
	allow := strings.Join(methods, ", ")
	w.Header().Set("Allow", allow)
	if !public[r.URL.Path] {
		if _, msg := s.authenticate(r, true); msg != "" {
			// The router set Allow; it would tell a stranger the route exists.
			w.Header().Del("Allow")
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
	}
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, allow))
}
