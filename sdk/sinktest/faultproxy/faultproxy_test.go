package faultproxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo serves a TCP echo on loopback until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads what comes back.
func roundTrip(c net.Conn, msg string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func TestForwards(t *testing.T) {
	p := Start(t, echo(t))
	if got, err := roundTrip(dial(t, p), "hello", 10*time.Second); got != "hello" || err != nil {
		t.Fatalf("through the proxy: %q, %v; want the echo", got, err)
	}
}

func TestCutAndReset(t *testing.T) {
	for _, tc := range []struct {
		fault Fault
		want  func(error) bool
	}{
		{Cut, func(err error) bool { return errors.Is(err, io.EOF) }},
		{Reset, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			p := Start(t, echo(t))
			c := dial(t, p)
			if _, err := roundTrip(c, "up", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			p.Inject(tc.fault)
			if err := readErr(c); !tc.want(err) {
				t.Fatalf("an open connection after %s: %v", tc.fault, err)
			}
			if err := newConnErr(p); !tc.want(err) {
				t.Fatalf("a new connection during %s: %v", tc.fault, err)
			}
			p.Restore()
			if got, err := roundTrip(dial(t, p), "back", 10*time.Second); got != "back" || err != nil {
				t.Fatalf("a new connection after Restore: %q, %v", got, err)
			}
		})
	}
}

// A stall holds bytes without closing anything; Restore delivers them.
func TestStall(t *testing.T) {
	p := Start(t, echo(t))
	c := dial(t, p)
	if _, err := roundTrip(c, "up", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Stall()
	fresh := dial(t, p)
	for _, conn := range []net.Conn{c, fresh} {
		if got, err := roundTrip(conn, "held", 300*time.Millisecond); !isTimeout(err) {
			t.Fatalf("during a stall: read %q, %v; want nothing (a timeout)", got, err)
		}
	}
	p.Restore()
	for _, conn := range []net.Conn{c, fresh} {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "held" {
			t.Fatalf("after Restore: %q, %v; want the held bytes", buf, err)
		}
	}
}

// readErr is how a read on c ends.
func readErr(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err
}

// newConnErr is how a new connection through p ends: at dial or at the
// first read.
func newConnErr(p *Proxy) error {
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return err
	}
	defer c.Close()
	return readErr(c)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
