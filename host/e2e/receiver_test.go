package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// hit is one request a receiver got.
type hit struct {
	Path   string
	Header http.Header
	Body   []byte
}

// receiver is a webhook destination that records what it gets and answers
// with Status (200 by default).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	hits   []hit
	status int
	// decide, when set, answers instead of status: seen counts the
	// requests with this webhook-id so far, this one included.
	decide func(h hit, seen int) int
	seen   map[string]int
	// down, while set, closes every connection without an answer: a
	// destination that cannot be reached, on a port the test keeps (a
	// port freed and bound again later may be taken in between).
	down atomic.Bool
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{status: http.StatusOK, seen: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	if r.down.Load() {
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	body, _ := io.ReadAll(req.Body)
	h := hit{Path: req.URL.Path, Header: req.Header.Clone(), Body: body}
	r.mu.Lock()
	r.hits = append(r.hits, h)
	id := req.Header.Get("webhook-id")
	r.seen[id]++
	status, decide, seen := r.status, r.decide, r.seen[id]
	r.mu.Unlock()
	if decide != nil {
		status = decide(h, seen)
	}
	w.WriteHeader(status)
}

// SetDecide sets the function that answers each request.
func (r *receiver) SetDecide(f func(h hit, seen int) int) {
	r.mu.Lock()
	r.decide = f
	r.mu.Unlock()
}

// SetStatus changes what the receiver answers from now on.
func (r *receiver) SetStatus(code int) {
	r.mu.Lock()
	r.status = code
	r.mu.Unlock()
}

// Hits returns a copy of what arrived so far.
func (r *receiver) Hits() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

// IDs counts the webhook-id of every request: id → times seen.
func (r *receiver) IDs() map[string]int {
	out := map[string]int{}
	for _, h := range r.Hits() {
		out[h.Header.Get("webhook-id")]++
	}
	return out
}

// decode unmarshals a body into a map, failing the test on bad JSON.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, b)
	}
	return m
}
