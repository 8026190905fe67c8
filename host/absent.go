package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/host/api"
	"github.com/evorelay/evorelay/host/pluginhost"
	"github.com/evorelay/evorelay/host/spool"
)

// stateAbsent is the state /plugins shows for a sink the spool knows (it
// has a position, retries or dead letters) but whose plugin is not in the
// plugin directory any more.
const stateAbsent = "absent"

// absentSinks are the sinks the spool keeps for plugins that were not
// loaded at start. Their positions hold back the log's truncation, so
// each is kept for a while (its plugin may come back, and resumes where
// it was) and then forgotten; an operator can drop one at once with
// DELETE /plugins/{name}.
type absentSinks struct {
	spool  spool.Spool
	logger hclog.Logger

	mu    sync.Mutex
	until map[string]time.Time // sink → when it is forgotten (zero: never)
	timer map[string]*time.Timer
}

// findAbsent lists the sinks sp knows besides loaded, and forgets each
// after keep (0: keeps them until dropped through the API).
func findAbsent(sp spool.Spool, loaded []string, keep time.Duration, logger hclog.Logger) *absentSinks {
	a := &absentSinks{spool: sp, logger: logger, until: map[string]time.Time{}, timer: map[string]*time.Timer{}}
	isLoaded := map[string]bool{}
	for _, n := range loaded {
		isLoaded[n] = true
	}
	st := sp.Stats()
	for _, m := range []map[string]int{st.Backlog, st.Dead} {
		for name := range m {
			if isLoaded[name] || a.has(name) {
				continue
			}
			a.until[name] = time.Time{}
			if keep > 0 {
				a.until[name] = time.Now().Add(keep)
				a.timer[name] = time.AfterFunc(keep, func() {
					if err := a.drop(name); err == nil {
						logger.Warn("absent sink forgotten: its plugin did not come back; its backlog and dead letters are dropped", "sink", name, "after", keep)
					}
				})
			}
			logger.Warn("sink absent: the spool keeps its backlog, which holds back the log, until its plugin is back or it is dropped",
				"sink", name, "backlog", st.Backlog[name], "dead_letters", st.Dead[name], "until", a.until[name], "drop", "DELETE /plugins/"+name)
		}
	}
	return a
}

func (a *absentSinks) has(name string) bool {
	_, ok := a.until[name]
	return ok
}

// drop forgets an absent sink: its position, retries and dead letters.
func (a *absentSinks) drop(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.has(name) {
		return fmt.Errorf("%w: %q", api.ErrNotAbsent, name)
	}
	if err := a.spool.Forget(name); err != nil {
		return err
	}
	if t := a.timer[name]; t != nil {
		t.Stop()
	}
	delete(a.until, name)
	delete(a.timer, name)
	return nil
}

// status lists the absent sinks as /plugins shows them, sorted.
func (a *absentSinks) status(st spool.Stats) []pluginhost.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []pluginhost.Status
	for name, until := range a.until {
		kept := "until it is dropped"
		if !until.IsZero() {
			kept = "until " + until.UTC().Format(time.RFC3339)
		}
		out = append(out, pluginhost.Status{
			Name: name, State: stateAbsent,
			Detail: fmt.Sprintf("no %s%s in the plugin directory; its backlog (%d) and dead letters (%d) are kept %s; DELETE /plugins/%s drops them",
				pluginhost.BinaryPrefix, name, st.Backlog[name], st.Dead[name], kept, name),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// isAbsent reports whether name is an absent sink.
func (a *absentSinks) isAbsent(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.has(name)
}

// close stops the timers.
func (a *absentSinks) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.timer {
		t.Stop()
	}
}

// fullWatch remembers how much the spool held when an Append found it
// full, so that /readyz says what ingest answers: full until an Append
// fits again or the spool has drained below that.
type fullWatch struct {
	spool.Spool
	heldAtFull atomic.Int64 // events + scheduled retries; 0: not full
}

func (w *fullWatch) Append(ctx context.Context, evs []spool.Event) error {
	err := w.Spool.Append(ctx, evs)
	switch {
	case errors.Is(err, spool.ErrFull):
		st := w.Spool.Stats()
		w.heldAtFull.Store(int64(max(st.Events+st.Scheduled, 1)))
	case err == nil && w.heldAtFull.Load() != 0:
		w.heldAtFull.Store(0)
	}
	return err
}

// isFull reports whether the last Append found the spool full and it has
// not drained since.
func (w *fullWatch) isFull(st spool.Stats) bool {
	at := w.heldAtFull.Load()
	return at > 0 && int64(st.Events+st.Scheduled) >= at
}

// heldBy names the sinks holding the most of the spool (the largest
// backlog), saying which are absent: what an operator must look at when
// the spool is full.
func heldBy(st spool.Stats, absent *absentSinks) []string {
	most := 0
	for _, n := range st.Backlog {
		most = max(most, n)
	}
	if most == 0 {
		return nil
	}
	var out []string
	for name, n := range st.Backlog {
		if n != most {
			continue
		}
		if absent.isAbsent(name) {
			out = append(out, fmt.Sprintf("%s (absent: its plugin is not loaded; DELETE /plugins/%s drops its backlog of %d)", name, name, n))
		} else {
			out = append(out, fmt.Sprintf("%s (backlog %d)", name, n))
		}
	}
	sort.Strings(out)
	return out
}

// fullDetail says, for the 503 of a full spool, which sinks hold it.
func (h *host) fullDetail() string {
	held := heldBy(h.spool.Stats(), h.absent)
	if len(held) == 0 {
		return ""
	}
	return "held back by sink " + strings.Join(held, ", ")
}
