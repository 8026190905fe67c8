// Package faultproxy is a TCP proxy a test puts between a sink and its
// broker to simulate an outage without touching the broker: Cut closes
// every connection, Reset aborts them with a TCP RST, Stall keeps them
// open but forwards nothing, and Restore lets traffic through again.
//
// It is for tests only. It lets a sink's outage tests run against the
// machine's own RabbitMQ, NATS or Redis (which stay up for everyone else)
// instead of stopping them.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// Fault is the proxy's mode.
type Fault int

const (
	// None forwards traffic both ways.
	None Fault = iota
	// Cut closes every connection (FIN); new ones are accepted and closed
	// at once, as a broker whose process has stopped.
	Cut
	// Reset aborts every connection with a TCP RST; new ones too.
	Reset
	// Stall keeps connections open and accepts new ones, but forwards no
	// byte either way until Restore: a network partition, or a broker that
	// hangs.
	Stall
)

func (f Fault) String() string {
	return [...]string{"none", "cut", "reset", "stall"}[f]
}

// Proxy forwards connections on a loopback port to an upstream address.
type Proxy struct {
	upstream string
	ln       net.Listener

	mu      sync.Mutex
	fault   Fault
	resumed chan struct{} // closed when a Stall ends
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// Start listens on a free loopback port and forwards to upstream (a
// host:port) until the test ends.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{upstream: upstream, ln: ln, conns: map[net.Conn]bool{}, resumed: make(chan struct{})}
	close(p.resumed)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port; point the client under test at it.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Inject switches the proxy to fault f; None is Restore.
func (p *Proxy) Inject(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == Stall && f != Stall {
		close(p.resumed)
	}
	if f == Stall && p.fault != Stall {
		p.resumed = make(chan struct{})
	}
	p.fault = f
	if f == Cut || f == Reset {
		for c := range p.conns {
			abort(c, f)
		}
	}
}

// Cut closes every connection and every new one.
func (p *Proxy) Cut() { p.Inject(Cut) }

// Reset aborts every connection and every new one with a TCP RST.
func (p *Proxy) Reset() { p.Inject(Reset) }

// Stall stops forwarding, keeping the connections open.
func (p *Proxy) Stall() { p.Inject(Stall) }

// Restore forwards again; after a Stall, the held bytes flow on.
func (p *Proxy) Restore() { p.Inject(None) }

// Close stops listening and closes every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	if p.fault == Stall {
		close(p.resumed)
	}
	p.fault = Cut
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		fault := p.fault
		p.mu.Unlock()
		if fault == Cut || fault == Reset {
			abort(down, fault)
			continue
		}
		p.wg.Add(1)
		go p.serve(down)
	}
}

// serve dials upstream for one accepted connection and copies both ways.
func (p *Proxy) serve(down net.Conn) {
	defer p.wg.Done()
	if !p.wait() {
		_ = down.Close()
		return
	}
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		abort(down, Reset)
		return
	}
	if !p.track(down, up) {
		return
	}
	defer p.untrack(down, up)
	var both sync.WaitGroup
	both.Go(func() { p.copy(up, down) })
	both.Go(func() { p.copy(down, up) })
	both.Wait()
}

// track registers a connection pair, or closes both if a fault came first.
func (p *Proxy) track(down, up net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == Cut || p.fault == Reset {
		abort(down, p.fault)
		_ = up.Close()
		return false
	}
	p.conns[down], p.conns[up] = true, true
	return true
}

func (p *Proxy) untrack(down, up net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, down)
	delete(p.conns, up)
	_ = down.Close()
	_ = up.Close()
}

// copy forwards src to dst, holding every chunk while the proxy stalls.
// When either side ends, both are closed.
func (p *Proxy) copy(dst, src net.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			how := Reset // pass a reset on
			switch {
			case errors.Is(err, io.EOF):
				how = None
			case errors.Is(err, net.ErrClosed):
				// The proxy closed src: close dst as the fault says (a
				// Cut's FIN must not race a reset out first).
				p.mu.Lock()
				how = p.fault
				p.mu.Unlock()
			}
			abort(dst, how)
			return
		}
	}
}

// wait blocks while the proxy stalls; false when the proxy cut the
// connections meanwhile.
func (p *Proxy) wait() bool {
	for {
		p.mu.Lock()
		fault, resumed := p.fault, p.resumed
		p.mu.Unlock()
		switch fault {
		case None:
			return true
		case Stall:
			<-resumed
		default:
			return false
		}
	}
}

// abort closes c: with a RST for Reset, a FIN otherwise.
func abort(c net.Conn, f Fault) {
	if tc, ok := c.(*net.TCPConn); ok && f == Reset {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
