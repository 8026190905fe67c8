//go:build linux

package sinkv1

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

func TestDescends(t *testing.T) {
	self, parent := os.Getpid(), os.Getppid()
	for _, c := range []struct {
		pid, ancestor int
		want          bool
	}{
		{self, self, true},
		{self, parent, true},
		{parent, self, false},
		{self, 0, false},
		{1 << 30, self, false}, // no such process
	} {
		if got := descends(c.pid, c.ancestor); got != c.want {
			t.Errorf("descends(%d, %d) = %v, want %v", c.pid, c.ancestor, got, c.want)
		}
	}
}

// serveLink serves the Sink service, unimplemented, on a Unix socket with
// creds, and returns its address.
func serveLink(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "link.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(creds))
	RegisterSinkServer(s, UnimplementedSinkServer{})
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return path
}

// describe calls Describe over a link from this process, with creds.
func describe(t *testing.T, path string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = NewSinkClient(conn).Describe(ctx, &DescribeRequest{})
	return err
}

func TestLinkCredentials(t *testing.T) {
	self := func() int { return os.Getpid() }
	notStarted := func() int { return 0 }
	nobody := linkCredentials{accept: func(int) bool { return false }}

	// The plugin's end accepts its ancestors, this process included, and
	// the host's end the process it started (here, this one): the call
	// reaches the server, which has no Describe.
	if err := describe(t, serveLink(t, PluginLinkCredentials()), HostLinkCredentials(self)); status.Code(err) != codes.Unimplemented {
		t.Fatalf("accepted at both ends: %v, want Unimplemented from the server", err)
	}
	// The host's end refuses a process it did not start.
	err := describe(t, serveLink(t, PluginLinkCredentials()), HostLinkCredentials(notStarted))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not the one expected") {
		t.Fatalf("refused by the client: %v", err)
	}
	// The listening end refuses the process that dials.
	if err := describe(t, serveLink(t, nobody), HostLinkCredentials(self)); status.Code(err) != codes.Unavailable {
		t.Fatalf("refused by the server: %v", err)
	}
}
