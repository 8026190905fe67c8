package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/evorelay/evorelay/host/api"
	"github.com/evorelay/evorelay/host/dispatch"
	"github.com/evorelay/evorelay/host/pluginhost"
	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk/events"
)

// host joins the plugins, the store and the spool for the API.
type host struct {
	plugins  *pluginhost.Host
	settings *store.Store
	spool    spool.Spool
	circuits *dispatch.Circuits
	absent   *absentSinks
	full     *fullWatch
}

func (h *host) Names() []string { return h.plugins.Names() }

func (h *host) Validate(ctx context.Context, sink, instance string, raw json.RawMessage) (json.RawMessage, []api.FieldError, error) {
	p, ok := h.plugins.Plugin(sink)
	if !ok {
		return nil, nil, fmt.Errorf("no sink %q", sink)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, fe, err := p.Validate(ctx, instance, raw)
	var afe []api.FieldError
	for _, e := range fe {
		afe = append(afe, api.FieldError{Field: e.Field, Message: e.Message})
	}
	return out, afe, err
}

func (h *host) SecretFields(sink string) []string {
	if p, ok := h.plugins.Plugin(sink); ok {
		return p.Describe().GetSecretFields()
	}
	return nil
}

func (h *host) Unavailable(sink string) error {
	if p, ok := h.plugins.Plugin(sink); ok {
		return p.Unavailable()
	}
	return nil
}

// Plugins is GET /plugins: the loaded plugins, then the absent sinks.
func (h *host) Plugins() any {
	return append(h.plugins.Status(), h.absent.status(h.spool.Stats())...)
}

// ready is GET /readyz: every plugin process running, and the spool's and
// the dead letters' state.
func (h *host) ready(ctx context.Context) (bool, map[string]any) {
	ok := true
	details := map[string]any{}
	if p, is := h.spool.(pinger); is {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			ok = false
			details["backend"] = map[string]any{"ok": false, "error": err.Error() + "; ingest answers 503 and deliveries pause until it is back"}
		} else {
			details["backend"] = map[string]any{"ok": true}
		}
	}
	var plugins []pluginhost.Status
	for _, s := range h.plugins.Status() {
		if s.State != pluginhost.StateRunning {
			ok = false
		}
		plugins = append(plugins, s)
	}
	st := h.spool.Stats()
	// Full is what ingest answers: the last append did not fit, or the
	// bound is reached.
	full := h.full.isFull(st) || (st.Limit.Events > 0 && st.Events+st.Scheduled >= st.Limit.Events) || (st.Limit.Bytes > 0 && st.Bytes >= st.Limit.Bytes)
	if full {
		ok = false
	}
	details["plugins"] = append(plugins, h.absent.status(st)...)
	spoolDetails := map[string]any{
		"events": st.Events, "scheduled_retries": st.Scheduled, "bytes": st.Bytes, "max_events": st.Limit.Events, "max_bytes": st.Limit.Bytes,
		"full": full, "backlog": st.Backlog, "dead_letters": st.Dead,
	}
	if full {
		spoolDetails["held_by"] = heldBy(st, h.absent)
	}
	details["spool"] = spoolDetails
	// Open circuits do not make the sidecar unready: the destination
	// is down, not the sidecar.
	details["circuits_open"] = h.circuits.Open()
	return ok, details
}

// websocket routes /ws to the first plugin that accepts connections.
func (h *host) websocket() http.Handler {
	for _, n := range h.plugins.Names() {
		if p, _ := h.plugins.Plugin(n); p.Listener() {
			return p.Proxy()
		}
	}
	return nil
}

// emitStartup spools one APPLICATION_STARTUP per instance that has a sink
// subscribed to it.
func emitStartup(ctx context.Context, sp spool.Spool, st *store.Store, sinks []string, serverURL string) error {
	const name = "APPLICATION_STARTUP"
	seen := map[string]bool{}
	var evs []spool.Event
	now := events.FormatTime(time.Now())
	for _, sink := range sinks {
		for _, inst := range st.Instances(sink) {
			s, _ := st.Get(sink, inst)
			if seen[inst] || !s.Wants(name) {
				continue
			}
			seen[inst] = true
			env := events.Envelope{
				Event: name, Instance: inst, Data: json.RawMessage(`{"status":"started"}`),
				DateTime: now, ServerURL: serverURL,
			}.Append(nil)
			evs = append(evs, spool.Event{ID: ulid.Make().String(), Instance: inst, Event: name, Envelope: env})
		}
	}
	if len(evs) == 0 {
		return nil
	}
	if err := sp.Append(ctx, evs); err != nil {
		return fmt.Errorf("emit %s: %w", name, err)
	}
	return nil
}
