package api

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// Defaults of Options.BodyMemory and Options.BodyTimeout.
const (
	DefaultBodyMemory  = 256 << 20
	DefaultBodyTimeout = 60 * time.Second
)

// bodyBudget bounds the bytes of request bodies read at once: each
// request takes its Content-Length (the body limit when unknown) before
// its body is read and gives it back when answered.
type bodyBudget struct {
	mu          sync.Mutex
	used, limit int64
}

func (b *bodyBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

func (b *bodyBudget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
}

// progressBody cuts a request body off once it makes no progress for
// timeout: each read moves the connection's read deadline on, so a slow
// body that keeps moving gets through whatever its size, and a stalled one
// ends in a read error (its connection is then closed).
type progressBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *progressBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// Read to the end: the handler's own work is not timed.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// withBody runs the handler with r's body bounded in memory and in time,
// or answers 503 without reading the body when the bodies being read
// already fill the budget.
func (s *server) withBody(w http.ResponseWriter, r *http.Request, run func()) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		run()
		return
	}
	need := r.ContentLength
	if need < 0 || need > s.maxBody {
		need = s.maxBody
	}
	if !s.bodies.take(need) {
		w.Header().Set("Connection", "close")
		writeUnavailable(w, "the sidecar is reading as many request bodies as its memory budget allows (EVORELAY_BODY_MEMORY); retry shortly")
		return
	}
	defer s.bodies.give(need)
	r.Body = &progressBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: s.bodyTimeout}
	run()
}
