package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/julienschmidt/httprouter"

	"github.com/evorelay/evorelay/host/spool"
)

// Dead-letter paging.
const (
	defaultDeadPage = 50
	maxDeadPage     = 500
)

// deadLetter is one dead letter as the API shows it: the envelope that
// failed, and why.
type deadLetter struct {
	spool.DeadLetter
	Envelope json.RawMessage `json:"envelope"`
}

// deadPage is the answer of GET /{sink}/deadletters/{instance}.
type deadPage struct {
	DeadLetters []deadLetter `json:"deadletters"`
	// Next is the before cursor of the next page; "" on the last one.
	Next string `json:"next"`
}

// listDead is GET /{sink}/deadletters/{instance}?limit=N&before=ID,
// newest first.
func (s *server) listDead(sink string) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		instance := ps.ByName("instance")
		if msg := checkInstance(instance); msg != "" {
			writeError(w, http.StatusBadRequest, "instance: "+msg)
			return
		}
		limit := defaultDeadPage
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxDeadPage {
				writeError(w, http.StatusBadRequest, "limit: want a whole number from 1 to "+strconv.Itoa(maxDeadPage))
				return
			}
			limit = n
		}
		// One more than asked tells whether there is a next page.
		before := r.URL.Query().Get("before")
		list, err := s.opts.DeadLetters.DeadLetters(sink, instance, limit+1, before)
		if errors.Is(err, spool.ErrBadCursor) {
			writeError(w, http.StatusBadRequest, "before: want the next cursor of a page, a dead letter id of "+instance+", or an RFC 3339 time; got "+strconv.Quote(before))
			return
		}
		if err != nil {
			s.log.Error("dead letters cannot be listed", "sink", sink, "instance", instance, "error", err)
			writeUnavailable(w, "the dead letters cannot be read right now; retry")
			return
		}
		page := deadPage{DeadLetters: []deadLetter{}}
		for i, d := range list {
			if i == limit {
				page.Next = list[i-1].ID
				break
			}
			env := json.RawMessage(d.Envelope)
			if !json.Valid(env) {
				env = json.RawMessage("null")
			}
			page.DeadLetters = append(page.DeadLetters, deadLetter{DeadLetter: d, Envelope: env})
		}
		writeJSON(w, http.StatusOK, page)
	}
}

// replayDead is POST /{sink}/deadletters/{instance}/replay with an
// optional body {"ids": [...]}; no body replays them all, an empty list is
// a mistake. Each keeps its id.
func (s *server) replayDead(sink string) handler {
	return s.deadAction(sink, "replayed", s.opts.DeadLetters.Replay)
}

// discardDead is DELETE /{sink}/deadletters/{instance} with an optional
// body {"ids": [...]}; no body discards them all, an empty list is a
// mistake (a client whose selection came out empty must not wipe all).
func (s *server) discardDead(sink string) handler {
	return s.deadAction(sink, "discarded", s.opts.DeadLetters.Discard)
}

func (s *server) deadAction(sink, verb string, act func(sink, instance string, ids []string) (int, error)) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		instance := ps.ByName("instance")
		if msg := checkInstance(instance); msg != "" {
			writeError(w, http.StatusBadRequest, "instance: "+msg)
			return
		}
		var body struct {
			IDs *[]string `json:"ids"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSettingsBytes))
		dec.DisallowUnknownFields()
		err := dec.Decode(&body)
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			s.readFailed(w, err, maxSettingsBytes, "send the ids in several requests")
			return
		case err != nil && !errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, `body: want nothing, or {"ids": ["<dead letter id>", ...]}: `+err.Error())
			return
		case err == nil && (body.IDs == nil || len(*body.IDs) == 0):
			writeError(w, http.StatusBadRequest, `ids: give at least one dead letter id; send no body to `+strings.TrimSuffix(verb, "ed")+` every dead letter of `+instance)
			return
		}
		var ids []string
		if body.IDs != nil {
			ids = *body.IDs
		}
		n, err := act(sink, instance, ids)
		if err != nil {
			s.log.Error("dead letters: "+verb+" failed", "sink", sink, "instance", instance, "error", err)
			writeUnavailable(w, "the dead letters cannot be changed right now; retry")
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{verb: n})
	}
}
