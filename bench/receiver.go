package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// epoch is the origin of every time the tool records (monotonic).
var epoch = time.Now()

// since is the time since epoch.
func since() time.Duration { return time.Since(epoch) }

// receiver is the fast webhook receiver: it reads each body, finds the
// event's number in it ("seq-n", see load.data) and answers 200, after
// delay when that is set. It keeps when each number first arrived.
type receiver struct {
	*http.Server
	url   string
	delay time.Duration
	cur   atomic.Pointer[tally]
	bufs  sync.Pool
}

// tally is one count of a receiver: the first arrival (since epoch) of
// each event number, 0 until it arrived.
type tally struct {
	at    []atomic.Int64
	n     atomic.Int64
	all   chan struct{}
	stray atomic.Int64 // bodies with no number, or one out of range
}

func newReceiver() (*receiver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + l.Addr().String() + "/hook"}
	r.bufs.New = func() any { return new(bytes.Buffer) }
	r.expect(0)
	r.Server = &http.Server{Handler: http.HandlerFunc(r.serve)}
	go func() { _ = r.Serve(l) }()
	return r, nil
}

// expect starts a new count of the events 0 … n-1.
func (r *receiver) expect(n int) *tally {
	t := &tally{at: make([]atomic.Int64, n), all: make(chan struct{})}
	if n == 0 {
		close(t.all)
	}
	r.cur.Store(t)
	return t
}

var seqMark = []byte(`"seq-`)

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	b := r.bufs.Get().(*bytes.Buffer)
	b.Reset()
	_, _ = io.Copy(b, req.Body)
	now := int64(since())
	t := r.cur.Load()
	seq, ok := findSeq(b.Bytes())
	r.bufs.Put(b)
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	switch {
	case !ok || seq >= len(t.at):
		t.stray.Add(1)
	case t.at[seq].CompareAndSwap(0, now):
		if t.n.Add(1) == int64(len(t.at)) {
			close(t.all)
		}
	}
}

// findSeq is the n of the first "seq-n" in body.
func findSeq(body []byte) (int, bool) {
	i := bytes.Index(body, seqMark)
	if i < 0 {
		return 0, false
	}
	n, digits := 0, 0
	for _, c := range body[i+len(seqMark):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
		digits++
	}
	return n, digits > 0
}

// wait returns once every expected event arrived, or fails at -timeout or
// when ctx ends.
func (t *tally) wait(ctx context.Context) error {
	fail := func(why string) error {
		msg := fmt.Sprintf("only %d of %d events arrived %s", t.n.Load(), len(t.at), why)
		if s := t.stray.Load(); s > 0 {
			msg += fmt.Sprintf(" (and %d bodies without a known seq-n)", s)
		}
		return fmt.Errorf("%s", msg)
	}
	select {
	case <-t.all:
		return nil
	case <-ctx.Done():
		return fail(ctx.Err().Error())
	case <-time.After(*timeout):
		return fail("within " + timeout.String())
	}
}

// last is when the last event arrived.
func (t *tally) last() time.Duration {
	var last int64
	for i := range t.at {
		last = max(last, t.at[i].Load())
	}
	return time.Duration(last)
}
