package main

import (
	"context"
	"net"
	"os/exec"
	"strconv"
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
	inst := sinktest.Unique("t-restart")
	name := sinktest.Unique("T-RESTART")
	c.stream(name, inst+".messages.upsert")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT","CALL"]}`
	if got := validate(t, s, inst, settings); got["mode"] != "mixed" {
		t.Fatalf("mode %v, want mixed: messages.upsert through JetStream, call core", got["mode"])
	}

	sinktest.StreamOutage{
		Sink: s, Instance: inst, Settings: settings,
		Down: func(testing.TB) { srv.kill() },
		// A core publish while disconnected is retried, not buffered or lost.
		WhileDown: func(t testing.TB) {
			core := sinktest.Delivery(t, sinktest.Unique("id"), inst, "CALL", settings)
			if err := sinktest.Deliver(t, s, s.naming, core)[core.ID]; err == nil || sdk.IsPermanent(err) {
				t.Errorf("core delivery while the server is down acked %v, want a retryable error", err)
			}
		},
		Up: func(testing.TB) { srv.start() },
		// The test's first client reconnected too; ask on a fresh one anyway.
		Stored: func(t testing.TB) map[string]int {
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
			return seen
		},
		Where: "stream",
	}.Run(t)
}
