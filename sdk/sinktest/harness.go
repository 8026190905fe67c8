package sinktest

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/internal/bridge"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// plugin is one sink served by the SDK's own gRPC adapter over an
// in-memory connection: what the host would see of the plugin process.
type plugin struct {
	sinkv1.SinkClient
	conn   *grpc.ClientConn
	server *grpc.Server
	served chan struct{}
}

// serve starts s behind the adapter. stop must be called.
func serve(t testing.TB, s sdk.Sink, log io.Writer) (*plugin, error) {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:   "plugin",
		Output: log,
		Level:  hclog.Debug,
	})
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(sinkv1.ServerOptions()...)
	sinkv1.RegisterSinkServer(gs, bridge.NewServer(s, logger))
	p := &plugin{server: gs, served: make(chan struct{})}
	go func() {
		defer close(p.served)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///sinktest", append(sinkv1.DialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return lis.DialContext(ctx)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		gs.Stop()
		<-p.served
		return nil, fmt.Errorf("sinktest: dial the in-memory plugin: %w", err)
	}
	p.conn = conn
	p.SinkClient = sinkv1.NewSinkClient(conn)
	return p, nil
}

// stop closes the connection and the server and waits for the server.
func (p *plugin) stop() {
	_ = p.conn.Close()
	p.server.Stop()
	<-p.served
}

// testLog is the plugin's log: it goes to the test's log while the test
// runs and is dropped after, so a goroutine the sink leaves behind cannot
// make the test binary panic (the leak check reports it instead).
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestLog(t testing.TB) *testLog {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *testLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("plugin log: %s", trimNewline(b))
	}
	return len(b), nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
