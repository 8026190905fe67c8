// Package egress is the one rule for where a plugin may connect when the
// address comes from a user: a webhook URL in an instance's settings, a
// mediaUrl in an event, every redirect hop, any URL a third-party sink is
// told to dial. It is not for endpoints the operator configures (a broker
// URI, EVORELAY_SQS_ENDPOINT): those are trusted.
//
// The rule is checked after DNS resolution, at dial time (a net.Dialer
// Control function), so a name that resolves to a refused address, or is
// re-bound to one later, is refused on every connection, including each
// redirect hop. By default it refuses loopback, unspecified, link-local,
// multicast and the cloud metadata addresses (169.254.169.254,
// 100.100.100.200, 168.63.129.16, fd00:ec2::254, and the NAT64, 6to4 and
// IPv4-mapped forms of all of them); private networks are allowed, because
// a receiver in the same cluster is the common case. The operator changes
// it with two lists of CIDRs: EVORELAY_EGRESS_ALLOW wins over the default
// denials, EVORELAY_EGRESS_DENY wins over everything.
//
// The host parses both variables and hands the policy to every plugin in
// Open (sdk.Config.Egress). A sink dials through Policy.Client, or builds
// its own transport on Policy.Dialer, and checks URLs at Validate with
// Policy.CheckURL, so that a refused URL is a 400 that names the setting.
// Settings set with an instance-scoped API key (sdk.ScopedKey) follow
// Policy.PublicOnly, which refuses private networks too.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// The variables an operator changes the policy with.
const (
	AllowVar = "EVORELAY_EGRESS_ALLOW"
	DenyVar  = "EVORELAY_EGRESS_DENY"
)

// ErrRefused matches (errors.Is) every refusal of the policy.
var ErrRefused = errors.New("refused by the egress policy")

// Policy decides which addresses a plugin may connect to. The zero Policy
// is the default one. A Policy is immutable and safe for concurrent use.
type Policy struct {
	allow, deny []netip.Prefix
	publicOnly  bool
}

// New returns the policy with the operator's lists.
func New(allow, deny []netip.Prefix) Policy {
	return Policy{allow: canonical(allow), deny: canonical(deny)}
}

func canonical(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked()
	}
	return out
}

// unmapBits is what an IPv4-mapped prefix (::ffff:10.0.0.0/104) loses when
// written as IPv4.
func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

// ParseCIDRs reads a comma-separated list of CIDRs ("10.0.0.0/8,
// fd00::/8"); a bare address is taken as a single-address prefix. The
// error names the entry that is wrong.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR; expected e.g. 10.0.0.0/8 or fd00::/8", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR; expected e.g. 10.0.0.0/8 or fd00::/8", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Allow and Deny are the operator's lists, as New got them.
func (p Policy) Allow() []netip.Prefix { return append([]netip.Prefix(nil), p.allow...) }

// Deny: see Allow.
func (p Policy) Deny() []netip.Prefix { return append([]netip.Prefix(nil), p.deny...) }

// PublicOnly returns the stricter policy for settings set with an
// instance-scoped key: private networks are refused too, unless they are in
// the operator's allow list.
func (p Policy) PublicOnly() Policy {
	p.publicOnly = true
	return p
}

// IsPublicOnly reports whether p refuses private networks.
func (p Policy) IsPublicOnly() bool { return p.publicOnly }

// RefusedError is an address the policy refused. It matches ErrRefused.
type RefusedError struct {
	// Addr is the refused address; Host the name it was resolved from, or
	// "" when it was dialed as an address.
	Addr netip.Addr
	Host string
	// Why says what the address is ("a loopback address").
	Why string
	// Fix says which setting would allow it.
	Fix string
}

func (e *RefusedError) Error() string {
	what := e.Addr.String()
	if e.Host != "" && e.Host != what {
		what = e.Host + " resolves to " + what + ", which"
	}
	return fmt.Sprintf("%s is %s, refused by the egress policy; %s", what, e.Why, e.Fix)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// metadata are the cloud metadata services' addresses. 169.254.169.254 is
// link-local too; it is listed for the clearer reason.
var metadata = map[netip.Addr]string{
	netip.MustParseAddr("169.254.169.254"): "a cloud metadata address (AWS, GCP, Azure, OpenStack)",
	netip.MustParseAddr("100.100.100.200"): "a cloud metadata address (Alibaba Cloud)",
	netip.MustParseAddr("168.63.129.16"):   "a cloud metadata address (Azure WireServer)",
	netip.MustParseAddr("fd00:ec2::254"):   "a cloud metadata address (AWS IPv6)",
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
)

// Check says whether p allows connecting to a: nil, or a *RefusedError.
func (p Policy) Check(a netip.Addr) error {
	a = a.WithZone("").Unmap()
	if pre, ok := match(p.deny, a); ok {
		return &RefusedError{Addr: a, Why: "in " + DenyVar + " (" + pre.String() + ")",
			Fix: "remove it from " + DenyVar + " to allow it"}
	}
	if _, ok := match(p.allow, a); ok {
		return nil
	}
	fix := fmt.Sprintf("to allow it, add %s to %s (comma-separated CIDRs)", netip.PrefixFrom(a, a.BitLen()), AllowVar)
	if why := denied(a); why != "" {
		return &RefusedError{Addr: a, Why: why, Fix: fix}
	}
	if v4, how, ok := embedded(a); ok {
		if err := p.Check(v4); err != nil {
			re := err.(*RefusedError)
			return &RefusedError{Addr: a, Why: how + " of " + v4.String() + ", " + re.Why, Fix: re.Fix}
		}
	}
	if p.publicOnly && (a.IsPrivate() || cgnat.Contains(a)) {
		return &RefusedError{Addr: a, Why: "a private address, and these settings were set with an instance-scoped API key, whose URLs may reach public addresses only",
			Fix: "set them with the admin key, or the operator may " + fix}
	}
	return nil
}

// denied is why a is refused by default, or "".
func denied(a netip.Addr) string {
	switch {
	case metadata[a] != "":
		return metadata[a]
	case a.IsLoopback():
		return "a loopback address"
	case a.IsUnspecified() || thisNetwork.Contains(a):
		return "an unspecified address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsMulticast():
		return "a multicast address"
	}
	return ""
}

// embedded is the IPv4 address an IPv6 one carries by a translation
// mechanism, and its name.
func embedded(a netip.Addr) (netip.Addr, string, bool) {
	b := a.As16()
	switch {
	case !a.Is6():
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "the NAT64 form", true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), "the 6to4 form", true
	}
	return netip.Addr{}, "", false
}

func match(ps []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Control is a net.Dialer Control function: it sees the address a name
// resolved to just before connecting, and refuses what p refuses.
func (p Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check %q: %v", ErrRefused, address, err)
	}
	return p.Check(ap.Addr())
}

// Dialer returns a copy of d (nil: a dialer with a 30 s timeout) that
// checks every address it connects to, after any Control d already had.
func (p Policy) Dialer(d *net.Dialer) *net.Dialer {
	out := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if d != nil {
		*out = *d
	}
	prevCtx, prev := out.ControlContext, out.Control
	out.Control = nil // ignored beside ControlContext anyway
	out.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		var err error
		switch {
		case prevCtx != nil:
			err = prevCtx(ctx, network, address, c)
		case prev != nil:
			err = prev(network, address, c)
		}
		if err != nil {
			return err
		}
		return p.Control(network, address, c)
	}
	return out
}

// Transport returns an HTTP transport, http.DefaultTransport's settings,
// that dials through p.Dialer and never through a proxy (a proxy would be
// the address checked, not the destination).
func (p Policy) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = p.Dialer(nil).DialContext
	return t
}

// Client returns an HTTP client on p.Transport that follows at most 5
// redirects; every hop is dialed, so checked, anew. timeout 0 is none.
func (p Policy) Client(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: p.Transport(),
		Timeout:   timeout,
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			return nil
		},
	}
}

// CheckURL checks, before anything is sent, the host of a URL a user
// gave: an address, or localhost (RFC 6761: localhost and *.localhost are
// loopback). Other names are not looked up here (that would wait on DNS,
// and the receiver may not exist yet); the dialer checks what they resolve
// to on every connection. The error is a *RefusedError, whose message
// names the setting that would allow the address.
func (p Policy) CheckURL(u *url.URL) error {
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if a, err := netip.ParseAddr(host); err == nil {
		return p.Check(a)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		if err := p.Check(netip.AddrFrom4([4]byte{127, 0, 0, 1})); err != nil {
			re := err.(*RefusedError)
			re.Host = host
			return re
		}
	}
	return nil
}
