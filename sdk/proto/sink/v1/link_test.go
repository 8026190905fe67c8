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
		if got := Descends(c.pid, c.ancestor); got != c.want {
			t.Errorf("Descends(%d, %d) = %v, want %v", c.pid, c.ancestor, got, c.want)
		}
	}
}

// serveLink serves the Sink service, unimplemented, on a Unix socket with
// LinkCredentials that accept what accept does, and returns its address.
func serveLink(t *testing.T, accept func(int) bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "link.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(LinkCredentials(accept)))
	RegisterSinkServer(s, UnimplementedSinkServer{})
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return path
}

// describe calls Describe over a link from this process, with
// LinkCredentials that accept what accept does.
func describe(t *testing.T, path string, accept func(int) bool) error {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(LinkCredentials(accept)))
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
	self := os.Getpid()
	isSelf := func(peer int) bool { return peer == self }
	other := func(peer int) bool { return peer == self+1 }

	// Both ends accept this process: the call reaches the server, which
	// has no Describe.
	if err := describe(t, serveLink(t, isSelf), isSelf); status.Code(err) != codes.Unimplemented {
		t.Fatalf("accepted at both ends: %v, want Unimplemented from the server", err)
	}
	// The dialing end refuses the process that listens.
	err := describe(t, serveLink(t, isSelf), other)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not the one expected") {
		t.Fatalf("refused by the client: %v", err)
	}
	// The listening end refuses the process that dials.
	if err := describe(t, serveLink(t, other), isSelf); status.Code(err) != codes.Unavailable {
		t.Fatalf("refused by the server: %v", err)
	}
}
