package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustPolicy(t *testing.T, allow, deny string) Policy {
	t.Helper()
	a, err := ParseCIDRs(allow)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseCIDRs(deny)
	if err != nil {
		t.Fatal(err)
	}
	return New(a, d)
}

// TestCheck is the rule, address by address: what is refused by default
// and why, what the lists change, and what a scoped key's settings may
// not reach.
func TestCheck(t *testing.T) {
	def := Policy{}
	for _, tc := range []struct {
		addr string
		p    Policy
		// want is "" for allowed, or words the refusal must contain.
		want []string
	}{
		{"93.184.215.14", def, nil},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", def, nil},
		{"10.1.2.3", def, nil}, // private: a receiver in the same cluster
		{"192.168.1.10", def, nil},
		{"fd12::1", def, nil},
		{"127.0.0.1", def, []string{"loopback", "127.0.0.1/32", AllowVar}},
		{"127.9.9.9", def, []string{"loopback"}},
		{"::1", def, []string{"loopback", "::1/128", AllowVar}},
		{"::ffff:127.0.0.1", def, []string{"loopback"}},
		{"0.0.0.0", def, []string{"unspecified"}},
		{"0.1.2.3", def, []string{"unspecified"}},
		{"::", def, []string{"unspecified"}},
		{"169.254.1.1", def, []string{"link-local"}},
		{"fe80::1%eth0", def, []string{"link-local"}},
		{"169.254.169.254", def, []string{"metadata"}},
		{"::ffff:169.254.169.254", def, []string{"metadata"}},
		{"100.100.100.200", def, []string{"metadata", "Alibaba"}},
		{"168.63.129.16", def, []string{"metadata", "Azure"}},
		{"fd00:ec2::254", def, []string{"metadata", "AWS"}},
		{"64:ff9b::a9fe:a9fe", def, []string{"NAT64", "169.254.169.254", "metadata"}},
		{"64:ff9b::6464:64c8", def, []string{"NAT64", "100.100.100.200"}},
		{"64:ff9b::a83f:8110", def, []string{"NAT64", "168.63.129.16"}},
		{"64:ff9b::7f00:1", def, []string{"NAT64", "loopback"}},
		{"2002:a9fe:a9fe::1", def, []string{"6to4", "metadata"}},
		{"64:ff9b::5db8:d70e", def, nil}, // NAT64 of a public address
		{"224.0.0.1", def, []string{"multicast"}},

		// allow wins over the default denials, in every form
		{"127.0.0.1", mustPolicy(t, "127.0.0.0/8", ""), nil},
		{"64:ff9b::7f00:1", mustPolicy(t, "127.0.0.1", ""), nil},
		{"169.254.169.254", mustPolicy(t, "169.254.169.254/32, ::1", ""), nil},
		{"::1", mustPolicy(t, "127.0.0.0/8", ""), []string{"loopback"}},
		// deny wins over everything
		{"10.1.2.3", mustPolicy(t, "", "10.0.0.0/8"), []string{DenyVar, "10.0.0.0/8", "remove it"}},
		{"127.0.0.1", mustPolicy(t, "127.0.0.0/8", "127.0.0.1/32"), []string{DenyVar}},
		{"::ffff:10.1.2.3", mustPolicy(t, "", "::ffff:10.0.0.0/104"), []string{DenyVar}},
		{"8.8.8.8", mustPolicy(t, "", "8.8.8.8"), []string{DenyVar}},

		// a scoped key's settings: no private networks, unless allowed
		{"10.1.2.3", def.PublicOnly(), []string{"private", "instance-scoped", "admin key", "10.1.2.3/32", AllowVar}},
		{"172.16.0.9", def.PublicOnly(), []string{"private"}},
		{"fd12::1", def.PublicOnly(), []string{"private"}},
		{"100.64.1.1", def.PublicOnly(), []string{"private"}},
		{"64:ff9b::a00:1", def.PublicOnly(), []string{"NAT64", "private"}},
		{"127.0.0.1", def.PublicOnly(), []string{"loopback"}},
		{"93.184.215.14", def.PublicOnly(), nil},
		{"10.1.2.3", mustPolicy(t, "10.1.0.0/16", "").PublicOnly(), nil},
	} {
		err := tc.p.Check(netip.MustParseAddr(tc.addr))
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s (%v): %v, want allowed", tc.addr, tc.p, err)
		case tc.want != nil && err == nil:
			t.Errorf("%s (%v): allowed, want refused", tc.addr, tc.p)
		case err != nil && !errors.Is(err, ErrRefused):
			t.Errorf("%s: %v does not match ErrRefused", tc.addr, err)
		}
		for _, w := range tc.want {
			if err != nil && !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.addr, err, w)
			}
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs(" 10.0.0.0/8, fd00::/8,,127.0.0.1 ,10.1.2.3/8")
	want := []string{"10.0.0.0/8", "fd00::/8", "127.0.0.1/32", "10.0.0.0/8"}
	if err != nil || len(got) != len(want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "localhost", "10.0.0.0/8;", "10.0.0/8"} {
		if _, err := ParseCIDRs(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseCIDRs(%q): %v, want an error naming it", bad, err)
		}
	}
}

// server is an HTTP server on addr (host:0) answering with h.
func server(t *testing.T, addr string, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func get(c *http.Client, u string) (string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestClientChecksAtDialTime: the client refuses a loopback receiver
// before connecting (it never sees a request), by name as well as by
// address, and reaches it once the operator allows it.
func TestClientChecksAtDialTime(t *testing.T) {
	var hits atomic.Int32
	srv := server(t, "127.0.0.1:0", func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "internal secret")
	})
	u, _ := url.Parse(srv.URL)
	byName := "http://localhost:" + u.Port() + "/"

	c := Policy{}.Client(0)
	defer c.CloseIdleConnections()
	for _, target := range []string{srv.URL, byName} {
		body, err := get(c, target)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), AllowVar) {
			t.Errorf("GET %s: %q, %v; want refused, naming %s", target, body, err, AllowVar)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the receiver got %d requests, want none", n)
	}

	allowed := mustPolicy(t, "127.0.0.0/8,::1", "").Client(0)
	defer allowed.CloseIdleConnections()
	if body, err := get(allowed, srv.URL); err != nil || body != "internal secret" {
		t.Errorf("allowed: %q, %v", body, err)
	}
}

// TestClientChecksEveryRedirectHop: an allowed receiver that redirects to
// a refused one does not get its response read back.
func TestClientChecksEveryRedirectHop(t *testing.T) {
	var inside atomic.Int32
	internal := server(t, "127.0.0.2:0", func(w http.ResponseWriter, _ *http.Request) {
		inside.Add(1)
		_, _ = io.WriteString(w, "internal secret")
	})
	public := server(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/latest/meta-data", http.StatusFound)
	})
	c := mustPolicy(t, "127.0.0.1/32", "").Client(0)
	defer c.CloseIdleConnections()
	body, err := get(c, public.URL)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "127.0.0.2") {
		t.Errorf("GET through a redirect: %q, %v; want refused at 127.0.0.2", body, err)
	}
	if n := inside.Load(); n != 0 {
		t.Errorf("the internal server got %d requests, want none", n)
	}
}

// TestDialerKeepsItsControl: a dialer's own Control still runs, first.
func TestDialerKeepsItsControl(t *testing.T) {
	mine := errors.New("mine")
	d := Policy{}.Dialer(&net.Dialer{Control: func(string, string, syscall.RawConn) error { return mine }})
	if _, err := d.DialContext(context.Background(), "tcp", "127.0.0.1:1"); !errors.Is(err, mine) {
		t.Errorf("dial: %v, want the dialer's own Control error", err)
	}
}

// TestCheckURL: what Validate can tell before anything is sent.
func TestCheckURL(t *testing.T) {
	for raw, want := range map[string]string{
		"http://127.0.0.1:9000/hook":         "127.0.0.1/32",
		"http://localhost:9000/hook":         "localhost resolves to",
		"http://[::1]/":                      "::1/128",
		"http://0.0.0.0/":                    "unspecified",
		"http://[64:ff9b::a9fe:a9fe]/latest": "metadata",
		"https://10.0.0.5/":                  "",
		"http://app.localhost/":              "app.localhost resolves to 127.0.0.1",
		"https://no-such-host.invalid/":      "", // names are checked when dialed
	} {
		u, _ := url.Parse(raw)
		err := Policy{}.CheckURL(u)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckURL(%s): %v, want %q", raw, err, want)
		}
	}
}
