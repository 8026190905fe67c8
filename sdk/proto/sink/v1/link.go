package sinkv1

import (
	"context"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc/credentials"
)

// The link between the host and a plugin is a Unix socket: the plugin
// listens, the host dials (go-plugin). Where the kernel says which
// process is at the other end of such a socket (ProcessLink), neither
// end runs TLS over it: each accepts the connection only from the
// process it expects, by its process id (HostLinkCredentials,
// PluginLinkCredentials). The plugin accepts only an ancestor of its
// own process (the host that started it, or that host's own ancestors);
// the host accepts only the process it started, or one of that
// process's descendants (a plugin behind a wrapper script). That is no
// wider than what go-plugin's AutoMTLS allowed: the host's ancestors
// started it and chose its binary and environment, and under Linux's
// usual ptrace rules may trace it and take its TLS key. TLS over the
// socket cost 8–14 % of the host's and the plugins' CPU per event (go
// run ./bench, issue 11). Elsewhere (ProcessLink false) the host keeps
// AutoMTLS.

// HostLinkCredentials are the host's end of the link to a plugin process:
// they accept only process child() (the plugin the host started; 0 while
// it has not started) or one of its descendants.
func HostLinkCredentials(child func() int) credentials.TransportCredentials {
	return linkCredentials{accept: func(peer int) bool {
		c := child()
		return c > 0 && descends(peer, c)
	}}
}

// PluginLinkCredentials are a plugin's end of the link: they accept only
// an ancestor of this process (the host that started it).
func PluginLinkCredentials() credentials.TransportCredentials {
	self := os.Getpid()
	return linkCredentials{accept: func(peer int) bool { return descends(self, peer) }}
}

// linkCredentials accept a connection only when accept approves the id of
// the process at its other end.
type linkCredentials struct{ accept func(peer int) bool }

// linkInfo is what linkCredentials tell gRPC of a connection they accepted.
type linkInfo struct {
	credentials.CommonAuthInfo
	Peer int // the process id at the other end
}

// AuthType names the credentials.
func (linkInfo) AuthType() string { return "process" }

// refused is a connection from a process not accepted: final, so that
// gRPC does not dial it again.
type refused struct{ error }

func (refused) Temporary() bool { return false }

func (c linkCredentials) check(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, refused{fmt.Errorf("sink link: %s is not a Unix socket", conn.RemoteAddr())}
	}
	peer, err := peerProcess(uc)
	if err != nil {
		return nil, nil, refused{fmt.Errorf("sink link: which process is at the other end: %w", err)}
	}
	if !c.accept(peer) {
		return nil, nil, refused{fmt.Errorf("sink link: process %d at the other end of the socket is not the one expected", peer)}
	}
	// A Unix socket's bytes go through the kernel alone, as gRPC's own
	// local credentials say.
	return conn, linkInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, Peer: peer}, nil
}

func (c linkCredentials) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.check(conn)
}

func (c linkCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.check(conn)
}

func (linkCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "process"}
}

func (c linkCredentials) Clone() credentials.TransportCredentials { return c }

func (linkCredentials) OverrideServerName(string) error { return nil }

// descends reports whether process pid is ancestor or one of its
// descendants. Where ProcessLink is false it knows only pid == ancestor.
func descends(pid, ancestor int) bool {
	for range 64 { // deeper trees are not ours
		if pid == ancestor {
			return true
		}
		if pid <= 1 {
			return false
		}
		var err error
		if pid, err = parentProcess(pid); err != nil {
			return false
		}
	}
	return false
}
