package main

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// errRefusedAddress is a connection the address rule did not allow.
var errRefusedAddress = errors.New("refused address")

// metadataNames are the host names cloud metadata services answer on.
var metadataNames = map[string]bool{
	"metadata.google.internal": true,
	"metadata":                 true,
}

// metadataAddrs are the metadata services' addresses outside link-local.
// 169.254.169.254 is link-local too; it is listed for the clearer reason.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true,
	netip.MustParseAddr("fd00:ec2::254"):   true,
}

// refusedAddr says why a is refused, or "" when it is allowed.
func refusedAddr(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	switch {
	case metadataAddrs[a]:
		return "a cloud metadata address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	}
	return ""
}

// refusedHost says why a URL's host name (no port, no brackets) is
// refused, or "" when it is allowed. Names other than the metadata ones
// are checked when they are dialed.
func refusedHost(host string) string {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if metadataNames[h] {
		return "a cloud metadata address"
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return refusedAddr(a)
	}
	return ""
}

// checkURL parses a URL the sink will connect to: http or https, with a
// host that the address rule allows.
func checkURL(raw string, allowLinkLocal bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a valid URL: %v", err)
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return nil, errors.New("must be an http:// or https:// URL")
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, errors.New("must have a host, e.g. https://example.com/hook")
	}
	if !allowLinkLocal {
		if why := refusedHost(u.Hostname()); why != "" {
			return nil, fmt.Errorf("%s is %s; refused unless EVORELAY_WEBHOOK_ALLOW_LINK_LOCAL=true", u.Hostname(), why)
		}
	}
	return u, nil
}

// dialControl is the dialer's last word: it sees the address a name
// resolved to, just before connecting.
func dialControl(allowLinkLocal bool) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		if allowLinkLocal {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot check %q: %v", errRefusedAddress, address, err)
		}
		if why := refusedAddr(ap.Addr()); why != "" {
			return fmt.Errorf("%w: %s is %s; allowed only with EVORELAY_WEBHOOK_ALLOW_LINK_LOCAL=true", errRefusedAddress, ap.Addr(), why)
		}
		return nil
	}
}
