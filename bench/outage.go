package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// runOutage measures what a receiver that is down costs (-outage): the
// sidecar holds -events for -instances (8) webhook destinations whose
// receiver answers 503 for -outage, then comes back. It reports the
// attempts the receiver saw while down, the dead letters left once every
// event that can arrive has, how long the backlog took to arrive after
// the receiver came back, and whether each instance's events arrived in
// the order they were accepted. Settings are the defaults: the command is
// the same before and after a change to how the sidecar treats failures.
//
//	make build && go run ./bench -outage 10m -events 10000 -instances 1
func runOutage(l load) error {
	recv, err := newOutageReceiver()
	if err != nil {
		return err
	}
	defer recv.Close()
	s, err := startSidecar("webhook", l.scenario)
	if err != nil {
		return err
	}
	defer s.stop()
	if err := s.setWebhooks(l, recv.url, nil); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+*outage)
	defer cancel()
	start := time.Now()
	// Each event's data carries its instance's sequence number, so the
	// receiver can tell the order it arrives in.
	if err := ingestNumbered(ctx, s, l.names); err != nil {
		return err
	}
	fmt.Printf("ingested %d events in %s; receiver down (503) for %s\n", *events, time.Since(start).Round(time.Millisecond), *outage)
	time.Sleep(time.Until(start.Add(*outage)))
	down := recv.attempts.Load()
	recv.up.Store(true)
	back := time.Now()
	fmt.Printf("receiver back after %s: %d attempts while down (%.2f per event)\n", time.Since(start).Round(time.Second), down, float64(down)/float64(*events))

	arrived := recv.wait(ctx)
	drain := time.Since(back)
	dead, err := s.deadLetters("webhook")
	if err != nil {
		return err
	}
	fmt.Printf("after it came back: %d of %d events arrived in %s, %d attempts in all, %d dead letters left, %d arrived out of order\n",
		recv.n.Load(), *events, drain.Round(time.Second), recv.attempts.Load(), dead, recv.outOfOrder.Load())
	return arrived
}

// ingestNumbered posts -events events round-robin over names, one request
// each, in order: event k of an instance carries {"seq": k}.
func ingestNumbered(ctx context.Context, s *sidecar, names []string) error {
	for i := range *events {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		body := fmt.Sprintf(`{"event":"messages.upsert","instance":%q,"data":{"seq":%d}}`, names[i%len(names)], i/len(names))
		if code, b := s.call("POST", "/events", []byte(body)); code != 202 {
			return fmt.Errorf("ingest: %d %s", code, b)
		}
	}
	return nil
}

// deadLetters is how many dead letters sink holds, as /readyz says.
func (s *sidecar) deadLetters(sink string) (int, error) {
	code, body := s.call("GET", "/readyz", nil)
	var r struct {
		Details struct {
			Spool struct {
				Dead map[string]int `json:"dead_letters"`
			} `json:"spool"`
		} `json:"details"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("readyz: %d %s", code, body)
	}
	return r.Details.Spool.Dead[sink], nil
}

// outageReceiver answers 503 until up, counting every request, then 200,
// counting distinct webhook-ids and arrivals out of order per instance.
type outageReceiver struct {
	*http.Server
	*counter
	url        string
	up         atomic.Bool
	attempts   atomic.Int64
	outOfOrder atomic.Int64

	mu   sync.Mutex
	ids  map[string]bool // webhook-ids arrived
	last map[string]int  // instance → highest seq arrived
}

func newOutageReceiver() (*outageReceiver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &outageReceiver{url: "http://" + l.Addr().String() + "/hook", counter: newCounter(), ids: map[string]bool{}, last: map[string]int{}}
	r.expect(*events)
	r.Server = &http.Server{Handler: http.HandlerFunc(r.serve)}
	go func() { _ = r.Serve(l) }()
	return r, nil
}

func (r *outageReceiver) serve(w http.ResponseWriter, req *http.Request) {
	r.attempts.Add(1)
	body, _ := io.ReadAll(req.Body)
	if !r.up.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var ev struct {
		Instance string `json:"instance"`
		Data     struct {
			Seq int `json:"seq"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &ev)
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	if !r.ids[id] {
		r.ids[id] = true
		if last, ok := r.last[ev.Instance]; ok && ev.Data.Seq < last {
			r.outOfOrder.Add(1)
		}
		r.last[ev.Instance] = max(r.last[ev.Instance], ev.Data.Seq)
	}
	r.mu.Unlock()
	r.see(id)
}
