//go:build !linux

package sinkv1

import (
	"errors"
	"net"
)

// ProcessLink says the link checks the process at its other end instead
// of running TLS (see HostLinkCredentials): not on this system, where the
// host keeps go-plugin's AutoMTLS.
const ProcessLink = false

var errNoPeer = errors.New("not on this system")

func peerProcess(*net.UnixConn) (int, error) { return 0, errNoPeer }

func parentProcess(int) (int, error) { return 0, errNoPeer }
