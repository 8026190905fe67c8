package sinkv1

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc/credentials"
)

// The link between the host and a plugin is a Unix socket: the plugin
// listens, the host dials (go-plugin). Where the kernel says which
// process is at the other end of such a socket (ProcessLink), neither end
// runs TLS over it: each accepts the connection only from the process it
// expects, by its process id (LinkCredentials). The plugin accepts only an
// ancestor of its own process (the host that started it, or that host's
// own ancestors); the host accepts only the process it started, or one of
// that process's descendants (a plugin behind a wrapper script). That is
// no wider than what go-plugin's AutoMTLS allowed: the host's ancestors
// started it and chose its binary and environment, and under Linux's
// usual ptrace rules may trace it and take its TLS key. TLS over the socket cost 8–14 % of the host's and the
// plugins' CPU per event (go run ./bench, issue 11). Elsewhere
// (ProcessLink false) the host keeps AutoMTLS.

// LinkCredentials returns transport credentials that accept a connection
// only when accept approves the id of the process at its other end.
func LinkCredentials(accept func(peer int) bool) credentials.TransportCredentials {
	return linkCredentials{accept: accept}
}

type linkCredentials struct{ accept func(peer int) bool }

// LinkInfo is what LinkCredentials tell gRPC of a connection they accepted.
type LinkInfo struct {
	credentials.CommonAuthInfo
	Peer int // the process id at the other end
}

// AuthType names the credentials.
func (LinkInfo) AuthType() string { return "process" }

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
	return conn, LinkInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, Peer: peer}, nil
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

// Descends reports whether process pid is ancestor or one of its
// descendants. Where ProcessLink is false it knows only pid == ancestor.
func Descends(pid, ancestor int) bool {
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
