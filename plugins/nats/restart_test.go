package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// natsServer is a nats-server this test starts, kills and starts again on
// the same port and JetStream store directory, so the machine's shared
// server is never disturbed.
type natsServer struct {
	t    *testing.T
	port string
	dir  string
	args []string // more nats-server flags
	cmd  *exec.Cmd
}

func startServer(t *testing.T, args ...string) *natsServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	_ = l.Close()
	srv := &natsServer{t: t, port: port, dir: t.TempDir(), args: args}
	srv.start()
	t.Cleanup(srv.kill)
	return srv
}

func (srv *natsServer) url() string { return "nats://127.0.0.1:" + srv.port }

func (srv *natsServer) start() {
	srv.t.Helper()
	cmd := exec.Command("/usr/sbin/nats-server", append([]string{"-a", "127.0.0.1", "-p", srv.port, "-js", "-sd", srv.dir}, srv.args...)...)
	if err := cmd.Start(); err != nil {
		srv.t.Fatalf("start nats-server: %v", err)
	}
	srv.cmd = cmd
	sinktest.Eventually(srv.t, "nats-server to listen on "+srv.port, time.Minute, func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+srv.port)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
}

// kill ends the server the hard way, as a crash would.
func (srv *natsServer) kill() {
	if srv.cmd == nil {
		return
	}
	_ = srv.cmd.Process.Kill()
	_ = srv.cmd.Wait()
	srv.cmd = nil
}

// The server dies while deliveries stream in through JetStream and comes
// back with its store: the sink answers retries while it is down, never
// sends a core publish into the void, reconnects on its own, and in the
// end every delivery acked as delivered is in the stream (once: the
// server de-duplicates the retries of those it had stored).
func TestServerRestart(t *testing.T) {
	srv := startServer(t)
	s := openSink(t, srv.url(), events.NamingSeed, map[string]string{"reconnect_max_delay": "1s"})
	c := dial(t, srv.url())
	inst := unique("t-restart")
	name := unique("T-RESTART")
	c.stream(name, inst+".messages.upsert")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT","CALL"]}`
	if got := validate(t, s, inst, settings); got["mode"] != "mixed" {
		t.Fatalf("mode %v, want mixed: messages.upsert through JetStream, call core", got["mode"])
	}

	h := &hostSim{t: t, s: s, instance: inst, settings: settings, delivered: map[string]bool{}, producing: true}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { h.run(stop) })
	defer func() { close(stop); wg.Wait() }()

	sinktest.Eventually(t, "200 deliveries before the crash", time.Minute, func() bool { _, d := h.counts(); return d >= 200 })
	before := h.retries.Load()
	srv.kill()
	sinktest.Eventually(t, "the sink to report the outage", time.Minute, func() bool { return !s.Health(context.Background()).Ready })
	sinktest.Eventually(t, "deliveries retried during the outage", time.Minute, func() bool { return h.retries.Load() > before+20 })
	t.Logf("during the outage: %s", s.Health(context.Background()).Detail)
	// A core publish while disconnected is retried, not buffered or lost.
	core := delivery(t, unique("id"), inst, "CALL", settings)
	if err := sinktest.Deliver(t, s, s.naming, core)[core.ID]; err == nil || sdk.IsPermanent(err) {
		t.Errorf("core delivery while the server is down acked %v, want a retryable error", err)
	}

	srv.start()
	sinktest.Eventually(t, "the sink to reconnect", 2*time.Minute, func() bool { return s.Health(context.Background()).Ready })
	_, mark := h.counts()
	sinktest.Eventually(t, "deliveries after the restart", time.Minute, func() bool { _, d := h.counts(); return d >= mark+200 })
	h.mu.Lock()
	h.producing = false
	h.mu.Unlock()
	sinktest.Eventually(t, "every delivery acked as delivered", 3*time.Minute, func() bool { p, d := h.counts(); return d == p })

	// The test's first client reconnected too; ask on a fresh one anyway.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := dial(t, srv.url()).js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range stored(t, st) {
		seen[m.Header.Get("Nats-Msg-Id")]++
	}
	produced, _ := h.counts()
	dups := 0
	for i := 1; i <= produced; i++ {
		id := fmt.Sprintf("%s-%06d", inst, i)
		switch n := seen[id]; {
		case n == 0:
			t.Errorf("delivery %s was acked as delivered but is not in the stream", id)
		case n > 1:
			dups += n - 1
			t.Logf("delivery %s is in the stream %d times", id, n)
		}
	}
	t.Logf("%d deliveries, %d retries, %d duplicates in the stream", produced, h.retries.Load(), dups)
}

// hostSim plays the host: it hands the sink a stream of deliveries in
// batches and hands back, with the next attempt number, every delivery
// acked with an error, until each one has been acked as delivered.
type hostSim struct {
	t        *testing.T
	s        *Sink
	instance string
	settings string

	mu        sync.Mutex
	queue     []sdk.Delivery
	delivered map[string]bool
	produced  int
	producing bool

	retries atomic.Int64
}

func (h *hostSim) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		h.mu.Lock()
		for h.producing && len(h.queue) < 10 {
			h.produced++
			h.queue = append(h.queue, delivery(h.t, fmt.Sprintf("%s-%06d", h.instance, h.produced), h.instance, "MESSAGES_UPSERT", h.settings))
		}
		n := min(len(h.queue), 10)
		batch := append([]sdk.Delivery(nil), h.queue[:n]...)
		h.queue = h.queue[n:]
		h.mu.Unlock()
		if len(batch) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}

		r := sinktest.NewAcks()
		_ = h.s.Deliver(context.Background(), batch, r)
		failed := 0
		h.mu.Lock()
		for _, d := range batch {
			got := r.Outcomes(d.ID)
			switch {
			case len(got) != 1:
				h.t.Errorf("delivery %s acked %d times: %v", d.ID, len(got), got)
			case got[0] == nil:
				h.delivered[d.ID] = true
			case sdk.IsPermanent(got[0]):
				h.t.Errorf("delivery %s rejected as permanent: %v", d.ID, got[0])
			default:
				failed++
				d.Attempt++
				h.queue = append(h.queue, d)
			}
		}
		h.mu.Unlock()
		h.retries.Add(int64(failed))
		if failed > 0 {
			time.Sleep(100 * time.Millisecond) // the host's retry backoff
		} else {
			time.Sleep(5 * time.Millisecond) // a steady stream, not a flood
		}
	}
}

func (h *hostSim) counts() (produced, delivered int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.produced, len(h.delivered)
}
