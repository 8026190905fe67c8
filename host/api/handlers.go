package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/julienschmidt/httprouter"

	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// set answers POST /{sink}/set/{instance}.
func (s *server) set(sink string) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		instance := ps.ByName("instance")
		if msg := checkInstance(instance); msg != "" {
			writeError(w, http.StatusBadRequest, "instance: "+msg)
			return
		}
		if err := s.opts.Sinks.Unavailable(sink); err != nil {
			writeUnavailable(w, err.Error())
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSettingsBytes))
		if err != nil {
			s.readFailed(w, err, maxSettingsBytes, "settings are a few fields; send only the settings object")
			return
		}
		parsed, msgs := parseSettings(sink, body)
		if len(msgs) > 0 {
			writeError(w, http.StatusBadRequest, msgs...)
			return
		}
		secrets := s.opts.Sinks.SecretFields(sink)
		var previous json.RawMessage
		if old, ok := s.opts.Settings.Get(sink, instance); ok {
			previous = old.Raw
		}
		if msgs := parsed.restoreSecrets(secrets, previous); len(msgs) > 0 {
			writeError(w, http.StatusBadRequest, msgs...)
			return
		}

		sent := parsed.json()
		normalized, fieldErrs, err := s.opts.Sinks.Validate(r.Context(), sink, instance, sent)
		if err != nil {
			s.log.Error("validating settings failed", "sink", sink, "instance", instance, "error", err)
			writeUnavailable(w, fmt.Sprintf("the %s plugin could not validate the settings: %v; check GET /plugins and retry", sink, err))
			return
		}
		if len(fieldErrs) > 0 {
			msgs := make([]string, len(fieldErrs))
			for i, fe := range fieldErrs {
				msgs[i] = fe.Message
				if fe.Field != "" {
					msgs[i] = fe.Field + ": " + fe.Message
				}
			}
			writeError(w, http.StatusBadRequest, msgs...)
			return
		}
		if len(normalized) == 0 {
			normalized = sent
		}
		normalized = parsed.withHost(normalized)
		if _, err := store.Parse(normalized); err != nil || !isObject(normalized) {
			s.log.Error("plugin returned settings that are not an object with enabled and events", "sink", sink, "instance", instance, "error", err)
			writeError(w, http.StatusBadGateway, fmt.Sprintf("the %s plugin returned settings that are not a JSON object with enabled and events; this is a bug in the plugin, nothing was stored", sink))
			return
		}
		stored, err := s.opts.Settings.Set(r.Context(), sink, instance, normalized)
		if err != nil {
			s.log.Error("storing settings failed", "sink", sink, "instance", instance, "error", err)
			writeUnavailable(w, fmt.Sprintf("the settings could not be stored: %v; retry later", err))
			return
		}
		s.writeSettings(w, http.StatusCreated, sink, instance, stored.Raw, secrets)
	}
}

// find answers GET /{sink}/find/{instance}.
func (s *server) find(sink string) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		instance := ps.ByName("instance")
		if msg := checkInstance(instance); msg != "" {
			writeError(w, http.StatusBadRequest, "instance: "+msg)
			return
		}
		if err := s.opts.Sinks.Unavailable(sink); err != nil {
			writeUnavailable(w, err.Error())
			return
		}
		st, ok := s.opts.Settings.Get(sink, instance)
		if !ok {
			writeRaw(w, http.StatusOK, []byte("null"))
			return
		}
		s.writeSettings(w, http.StatusOK, sink, instance, st.Raw, s.opts.Sinks.SecretFields(sink))
	}
}

// writeSettings answers with stored settings, secrets masked.
func (s *server) writeSettings(w http.ResponseWriter, status int, sink, instance string, raw json.RawMessage, secrets []string) {
	out, err := maskSecrets(raw, secrets)
	if err != nil {
		// Never answer with what could not be masked.
		s.log.Error("stored settings cannot be read", "sink", sink, "instance", instance, "error", err)
		writeError(w, http.StatusInternalServerError, "the stored settings cannot be read; set them again")
		return
	}
	writeRaw(w, status, out)
}

// accepted is the 202 answer of the ingest routes.
type accepted struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
}

// printable reports whether JSON writes s as it is: printable ASCII but
// for the quote and the backslash.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// write answers 202 with a. The ids the host assigns are ULIDs, which
// JSON writes as they are, so the answer of every ingest is put together
// by hand; any other id goes through writeJSON.
func (a accepted) write(w http.ResponseWriter) {
	b := make([]byte, 0, 32+30*len(a.IDs))
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(a.Accepted), 10)
	b = append(b, `,"ids":[`...)
	for i, id := range a.IDs {
		if !printable(id) {
			writeJSON(w, http.StatusAccepted, a)
			return
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, id...)
		b = append(b, '"')
	}
	b = append(b, "]}\n"...)
	writeRaw(w, http.StatusAccepted, b)
}

// ingest answers POST /events, /events/{anything} and
// /webhook/evolution/{instance}.
func (s *server) ingest(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	instance := ps.ByName("instance") // "" on /events
	if instance != "" {
		if msg := checkInstance(instance); msg != "" {
			writeError(w, http.StatusBadRequest, "instance in the path: "+msg)
			return
		}
	}
	body := &countingReader{r: http.MaxBytesReader(w, r.Body, s.maxBody)}
	got, err := parseIngest(body, instance)
	s.metrics.ingested(body.n, 0)
	var br *badRequest
	switch {
	case errors.As(err, &br):
		writeError(w, http.StatusBadRequest, br.messages...)
		return
	case err != nil:
		s.readFailed(w, err, s.maxBody, "send fewer or smaller events a request, or raise the sidecar's body limit")
		return
	}

	res := accepted{Accepted: len(got), IDs: make([]string, len(got))}
	if len(got) == 0 {
		res.write(w)
		return
	}
	now := events.FormatTime(s.now())
	batch := make([]spool.Event, len(got))
	for i, ev := range got {
		id := s.newID()
		res.IDs[i] = id
		batch[i] = spool.Event{ID: id, Instance: ev.Instance, Event: ev.Event, Envelope: ev.envelope(now, s.opts.ServerURL)}
	}
	if err := s.opts.Spool.Append(r.Context(), batch); err != nil {
		if errors.Is(err, spool.ErrTooLarge) {
			// Retrying cannot help: it is the request that must change.
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the %d events of this request are more than the spool holds at once (%v); nothing was accepted, send fewer or smaller events a request", len(batch), err))
			return
		}
		msg := fmt.Sprintf("the events could not be spooled: %v; nothing of this request was accepted, retry later", err)
		if errors.Is(err, spool.ErrFull) {
			msg = "the spool is full because sinks are behind; nothing of this request was accepted, retry later"
			if s.opts.FullDetail != nil {
				if d := s.opts.FullDetail(); d != "" {
					msg = "the spool is full because sinks are behind (" + d + "); nothing of this request was accepted, retry later"
				}
			}
		}
		s.log.Warn("ingest refused", "events", len(batch), "error", err)
		writeUnavailable(w, msg)
		return
	}
	s.metrics.ingested(0, len(batch))
	res.write(w)
}

// readFailed answers a body that could not be read: 413 when it is over
// its limit.
func (s *server) readFailed(w http.ResponseWriter, err error, limit int64, advice string) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over the limit of %d bytes; %s", limit, advice))
		return
	}
	writeError(w, http.StatusBadRequest, fmt.Sprintf("the request body could not be read: %v", err))
}

// healthz answers GET /healthz: the process is alive.
func (s *server) healthz(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	writeRaw(w, http.StatusOK, []byte(`{"status":"ok"}`))
}

// readiness is the answer of GET /readyz.
type readiness struct {
	Status  string         `json:"status"`
	Details map[string]any `json:"details"`
}

// readyz answers GET /readyz: 200 when store, spool and plugins are
// healthy, 503 otherwise, with Options.Ready's details either way.
func (s *server) readyz(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ready, details := true, map[string]any(nil)
	if s.opts.Ready != nil {
		ready, details = s.opts.Ready(r.Context())
	}
	if details == nil {
		details = map[string]any{}
	}
	if ready {
		writeJSON(w, http.StatusOK, readiness{"ok", details})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, readiness{"unavailable", details})
}

// metricsRoute answers GET /metrics with Options.Metrics.
func (s *server) metricsRoute(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	if s.opts.Metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are not served by this sidecar")
		return
	}
	s.opts.Metrics.ServeHTTP(w, r)
}

// plugins answers GET /plugins.
func (s *server) plugins(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	writeJSON(w, http.StatusOK, s.opts.Sinks.Plugins())
}

// ErrNotAbsent is wrapped by Options.DropSink's error for a name that is
// not an absent sink.
var ErrNotAbsent = errors.New("not an absent sink")

// dropSink answers DELETE /plugins/{name}: what the spool keeps for an
// absent sink (its backlog, retries and dead letters) is dropped.
func (s *server) dropSink(w http.ResponseWriter, _ *http.Request, ps httprouter.Params) {
	name := ps.ByName("name")
	err := s.opts.DropSink(name)
	switch {
	case errors.Is(err, ErrNotAbsent):
		writeError(w, http.StatusNotFound, fmt.Sprintf("name: %q is not an absent sink; only a sink whose plugin is not loaded can be dropped (see GET /plugins)", name))
	case err != nil:
		s.log.Error("dropping an absent sink failed", "sink", name, "error", err)
		writeUnavailable(w, fmt.Sprintf("the sink %s could not be dropped: %v; retry", name, err))
	default:
		writeJSON(w, http.StatusOK, map[string]string{"dropped": name})
	}
}

// websocket hands an authenticated GET /ws or /ws/{instance} to
// Options.Websocket.
func (s *server) websocket(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	// Only the host says who a client is.
	r.Header.Del(sdk.IdentityHeader)
	s.opts.Websocket.ServeHTTP(w, r)
}

// countingReader counts the bytes read, for the ingest metric.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
