package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// BenchmarkFanout delivers bursts of events to one instance with 100
// clients connected, each reading as fast as it can, and reports events
// per second and messages written per second (events × clients).
//
//	go test -run '^$' -bench Fanout -benchtime 20000x ./plugins/websocket/
func BenchmarkFanout(b *testing.B) {
	for _, clients := range []int{1, 100} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchFanout(b, clients, false) })
	}
	// With permessage-deflate: each message is compressed once, not once
	// per client.
	b.Run("clients=100/compressed", func(b *testing.B) { benchFanout(b, 100, true) })
	// The same through Socket.IO (websocket transport, namespace
	// /bench): each packet is encoded once, not once per socket.
	for _, clients := range []int{1, 100} {
		b.Run(fmt.Sprintf("socketio/clients=%d", clients), func(b *testing.B) { benchFanoutSocketIO(b, clients) })
	}
}

// benchMessage is a realistic text message's data, about 600 bytes.
var benchMessage = `"pushName":"Ana Souza","message":{"conversation":"` + strings.Repeat("Olá! Is my order on its way? ", 16) +
	`"},"messageType":"conversation","messageTimestamp":1704110400,"source":"android"`

// runFanout delivers b.N events to instance bench in bursts of 100 and
// waits, after each, until the clients counted in got have them all; it
// reports events per second and messages written per second.
func runFanout(b *testing.B, s *testSink, clients int, got, target *atomic.Int64, reached chan struct{}) {
	const burst = 100
	batch := make([]sdk.Delivery, b.N)
	for i := range batch {
		batch[i] = delivery(fmt.Sprintf("b-%09d", i), "bench", "MESSAGES_UPSERT", benchMessage)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += burst {
		end := min(i+burst, b.N)
		if err := s.Deliver(context.Background(), batch[i:end], newAckLog()); err != nil {
			b.Fatal(err)
		}
		// Wait for every client to have the burst: the rate measured is
		// the rate they all keep up with, and no buffer overflows.
		want := int64(end * clients)
		target.Store(want)
		for got.Load() < want {
			select {
			case <-reached:
			case <-time.After(patience):
				b.Fatalf("clients got %d of %d messages (%+v)", got.Load(), want, s.stats())
			}
		}
	}
	el := time.Since(start).Seconds()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el, "events/s")
	b.ReportMetric(float64(b.N*clients)/el, "msgs/s")
}

// counter counts messages and signals reached when the count hits target.
func counter(got, target *atomic.Int64, reached chan struct{}) {
	if got.Add(1) == target.Load() {
		select {
		case reached <- struct{}{}:
		default: // a token is there already
		}
	}
}

func benchFanoutSocketIO(b *testing.B, clients int) {
	s := openSink(b, map[string]string{"max_connections_per_instance": "10000"}, events.NamingSeed)
	var got, target atomic.Int64
	reached := make(chan struct{}, 1)
	for range clients {
		_, err := s.dialSioCounting(b, "/bench", identity(sdk.Identity{}), nil, func() { counter(&got, &target, reached) })
		if err != nil {
			b.Fatal(err)
		}
	}
	runFanout(b, s, clients, &got, &target, reached)
}

func benchFanout(b *testing.B, clients int, compress bool) {
	s := openSink(b, map[string]string{"max_connections_per_instance": "10000"}, events.NamingSeed)
	// got counts messages received by all clients; the one that brings it
	// to target signals reached.
	var got, target atomic.Int64
	reached := make(chan struct{}, 1)
	d := dialer(s.sock)
	d.EnableCompression = compress
	for range clients {
		conn, _, err := d.Dial("ws://evorelay/ws/bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				_, r, err := conn.NextReader()
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, r)
				counter(&got, &target, reached)
			}
		}()
		b.Cleanup(func() { conn.Close(); <-done })
	}
	runFanout(b, s, clients, &got, &target, reached)
}

// BenchmarkIdleConnection opens b.N idle connections and reports the heap
// and stack they hold, per connection, and the goroutines per connection.
// The clients are bare sockets that did the handshake by hand and hold no
// goroutine or buffer, so what is measured is the sink's side (plus one
// net.Conn per client, a few hundred bytes).
//
//	go test -run '^$' -bench IdleConnection -benchtime 2000x ./plugins/websocket/
func BenchmarkIdleConnection(b *testing.B) {
	benchIdle(b, "every connection joined", func(sock string, i int) net.Conn {
		c, err := rawHandshake(sock, fmt.Sprintf("/ws/idle-%d", i%100))
		if err != nil {
			b.Fatal(err)
		}
		return c
	})
}

// BenchmarkIdleConnectionSocketIO is BenchmarkIdleConnection for
// Socket.IO sockets (websocket transport, one namespace each), from bare
// clients that sent their CONNECT packet by hand and read nothing.
//
//	go test -run '^$' -bench IdleConnectionSocketIO -benchtime 2000x ./plugins/websocket/
func BenchmarkIdleConnectionSocketIO(b *testing.B) {
	benchIdle(b, "every socket joined", func(sock string, i int) net.Conn {
		c, err := rawHandshakeHeader(sock, "/socket.io/?EIO=4&transport=websocket", sdk.IdentityHeader+": admin\r\n")
		if err != nil {
			b.Fatal(err)
		}
		// A client frame must be masked; a zero mask leaves it as is.
		connect := fmt.Sprintf("40/idle-%d,", i%100)
		frame := append([]byte{0x81, 0x80 | byte(len(connect)), 0, 0, 0, 0}, connect...)
		if _, err := c.Write(frame); err != nil {
			b.Fatal(err)
		}
		return c
	})
}

// benchIdle opens b.N idle connections with join (the i-th on the sink's
// socket sock) and reports the heap and stack they hold, per connection,
// and the goroutines per connection, once the sink counts them all.
func benchIdle(b *testing.B, joined string, join func(sock string, i int) net.Conn) {
	s := openSink(b, map[string]string{"max_connections_per_instance": "100000", "max_connections": "100000"}, events.NamingSeed)
	before := heapAndStack()
	g0 := runtime.NumGoroutine()
	conns := make([]net.Conn, 0, b.N)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conns = append(conns, join(s.sock, i))
	}
	eventually(b, joined, func() bool { return s.stats().clients == b.N })
	b.StopTimer()
	// Let the handlers settle into their loops before measuring.
	time.Sleep(100 * time.Millisecond)
	after := heapAndStack()
	b.ReportMetric(float64(int64(after)-int64(before))/float64(b.N), "bytes/conn")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(b.N), "goroutines/conn")
}

func heapAndStack() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// rawHandshake upgrades a bare Unix socket connection to a websocket.
func rawHandshake(sock, path string) (net.Conn, error) {
	return rawHandshakeHeader(sock, path, "")
}

// rawHandshakeHeader is rawHandshake with more header lines (each ending
// in CRLF).
func rawHandshakeHeader(sock, path, header string) (net.Conn, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: evorelay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + header + "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	// Read the response a byte at a time so nothing of the stream is
	// buffered away from the socket; it is short.
	br := bufio.NewReaderSize(oneByteReader{c}, 16)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return c, nil
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }
