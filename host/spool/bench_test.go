package spool

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// Run with: go test -run '^$' -bench . -benchtime 2s ./host/spool/
// The events/s metric is what to compare; ns/op is per call.

// benchEvents makes n events of about 1 KB.
func benchEvents(prefix string, n int) []Event {
	env := make([]byte, 1000)
	for i := range env {
		env[i] = 'a' + byte(i%26)
	}
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{ID: fmt.Sprintf("%s-%08d", prefix, i), Instance: "bench-instance", Event: "MESSAGES_UPSERT", Envelope: env}
	}
	return evs
}

func eventsPerSec(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkAppend(b *testing.B) {
	for _, sync := range []bool{true, false} {
		for _, batch := range []int{1, 10, 100} {
			name := fmt.Sprintf("batch=%d/sync=%v", batch, sync)
			b.Run(name, func(b *testing.B) {
				s := open(b, b.TempDir(), Options{NoSync: !sync})
				register(b, s, "a")
				evs := benchEvents("e", batch)
				b.SetBytes(int64(batch * len(evs[0].Envelope)))
				b.ResetTimer()
				for b.Loop() {
					if err := s.Append(context.Background(), evs); err != nil {
						b.Fatal(err)
					}
				}
				eventsPerSec(b, b.N*batch)
			})
		}
	}
}

// BenchmarkAppendConcurrent: many callers of one event each, as many
// engine requests at once; they share commits.
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, callers := range []int{4, 16, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := openSinks(b, b.TempDir(), "a")
			evs := benchEvents("e", 1)
			b.SetBytes(int64(len(evs[0].Envelope)))
			b.SetParallelism((callers + 1) / 2) // × GOMAXPROCS (2 here)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Append(context.Background(), evs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			eventsPerSec(b, b.N)
		})
	}
}

// BenchmarkAppendWhileSpare: one event appended at a time, while nothing
// else writes (spare=no) and while the next segment's zeros are written
// over and over (spare=yes), as the journal does in the background once
// a segment is half full. p99 and max are of each Append's latency: what
// a POST waits for its commit.
func BenchmarkAppendWhileSpare(b *testing.B) {
	for _, spare := range []string{"no", "yes"} {
		b.Run("spare="+spare, func(b *testing.B) {
			dir := b.TempDir()
			s := openSinks(b, dir, "a")
			evs := benchEvents("e", 1)
			stop := make(chan struct{})
			var making sync.WaitGroup
			if spare == "yes" {
				making.Go(func() {
					path := filepath.Join(dir, "bench.spare")
					for {
						select {
						case <-stop:
							return
						default:
						}
						if f := makeSpare(path, segmentBytes); f != nil {
							f.Close()
						}
					}
				})
			}
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				if err := s.Append(context.Background(), evs); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			close(stop)
			making.Wait()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(took[len(took)-1].Microseconds()), "max-µs")
		})
	}
}

// fill appends n events in batches, outside the timer.
func fill(b *testing.B, s *Embedded, n int) {
	b.Helper()
	for done := 0; done < n; {
		k := min(1000, n-done)
		if err := s.Append(context.Background(), benchEvents(fmt.Sprintf("f%d", done), k)); err != nil {
			b.Fatal(err)
		}
		done += k
	}
}

// BenchmarkLeaseResolve: one op is one event leased and resolved Done, in
// leases of batch events.
func BenchmarkLeaseResolve(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := openSinks(b, b.TempDir(), "a")
			fill(b, s, b.N)
			b.ResetTimer()
			for n := 0; n < b.N; {
				ds := poll(b, s, "a", min(batch, b.N-n))
				if err := s.Resolve("a", done(ds)); err != nil {
					b.Fatal(err)
				}
				n += len(ds)
			}
			eventsPerSec(b, b.N)
		})
	}
}

// BenchmarkRetry: one op is one delivery leased from the retry schedule
// and scheduled again, in batches of 100.
func BenchmarkRetry(b *testing.B) {
	s := openSinks(b, b.TempDir(), "a")
	fill(b, s, 100)
	retry := func(ds []Delivery) []Result {
		rs := make([]Result, len(ds))
		for i, d := range ds {
			rs[i] = Result{ID: d.ID, Outcome: Retry, Due: time.Now().Add(-time.Second), Reason: "503 Service Unavailable"}
		}
		return rs
	}
	resolve(b, s, "a", retry(poll(b, s, "a", 100))...)
	b.ResetTimer()
	for n := 0; n < b.N; {
		ds := poll(b, s, "a", min(100, b.N-n))
		if err := s.Resolve("a", retry(ds)); err != nil {
			b.Fatal(err)
		}
		n += len(ds)
	}
	eventsPerSec(b, b.N)
}

// BenchmarkDeadLetter: one op is one delivery replayed, leased and
// dead-lettered again, in batches of 100.
func BenchmarkDeadLetter(b *testing.B) {
	s := openSinks(b, b.TempDir(), "a")
	fill(b, s, 100)
	kill := func(ds []Delivery) []Result {
		rs := make([]Result, len(ds))
		for i, d := range ds {
			rs[i] = Result{ID: d.ID, Outcome: Dead, Reason: "410 Gone"}
		}
		return rs
	}
	resolve(b, s, "a", kill(poll(b, s, "a", 100))...)
	n := 0
	b.ResetTimer()
	for n < b.N {
		if _, err := s.Replay("a", "bench-instance", nil); err != nil {
			b.Fatal(err)
		}
		ds := poll(b, s, "a", 100)
		if err := s.Resolve("a", kill(ds)); err != nil {
			b.Fatal(err)
		}
		n += len(ds)
	}
	eventsPerSec(b, n)
}

// BenchmarkCodec compares the binary record encoding with JSON (the
// alternative weighed in doc.go).
func BenchmarkCodec(b *testing.B) {
	ev := benchEvents("e", 1)[0]
	b.Run("binary", func(b *testing.B) {
		b.SetBytes(int64(len(ev.Envelope)))
		for b.Loop() {
			if _, err := decodeEvent(encodeEvent(&ev)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(encodeEvent(&ev))), "record-bytes")
	})
	b.Run("json", func(b *testing.B) {
		b.SetBytes(int64(len(ev.Envelope)))
		var rec []byte
		for b.Loop() {
			var err error
			if rec, err = json.Marshal(&ev); err != nil {
				b.Fatal(err)
			}
			var back Event
			if err := json.Unmarshal(rec, &back); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(rec)), "record-bytes")
	})
}

// BenchmarkResolveWhileLeasing is the pattern of a dispatch worker: one
// goroutine leases batches of 100 while at most 1,000 deliveries are in
// flight, each delivery is acked on its own, and one resolver goroutine
// settles whatever acks piled up (Done) in one Resolve, so a slow Resolve
// means fewer, bigger calls. One op is one event leased and resolved;
// "prefilled" leases a full log, "appenders=16" leases while 16 callers
// append one event each (what the engine's requests do), so the acks and
// the appends share the writer. Besides events/s it reports the acks per
// Resolve call and the mean time of one Lease call (a Lease waits for a
// Resolve that holds the sink).
func BenchmarkResolveWhileLeasing(b *testing.B) {
	for _, appenders := range []int{0, 16} {
		name := "prefilled"
		if appenders > 0 {
			name = fmt.Sprintf("appenders=%d", appenders)
		}
		b.Run(name, func(b *testing.B) {
			s := openSinks(b, b.TempDir(), "a")
			if appenders == 0 {
				fill(b, s, b.N)
			}
			const window, batch = 1000, 100
			var (
				ctx, cancel = context.WithCancel(context.Background())
				room        = make(chan struct{}, window) // a token per delivery in flight
				acks        = make(chan string, window)
				leased      sync.WaitGroup
				leaseTime   time.Duration
				leaseCalls  int
			)
			defer cancel()
			b.ResetTimer()
			var appended sync.WaitGroup
			for w := range appenders {
				appended.Add(1)
				go func() {
					defer appended.Done()
					n := b.N / appenders
					if w < b.N%appenders {
						n++
					}
					for i := range n {
						ev := benchEvents(fmt.Sprintf("w%d-%d", w, i), 1)
						if err := s.Append(ctx, ev); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			leased.Add(1)
			go func() {
				defer leased.Done()
				for n := 0; n < b.N; {
					for range min(batch, b.N-n) {
						room <- struct{}{}
					}
					t := time.Now()
					ds, err := s.Lease(ctx, "a", min(batch, b.N-n))
					leaseTime += time.Since(t)
					leaseCalls++
					if err != nil {
						b.Error(err)
						return
					}
					for range min(batch, b.N-n) - len(ds) {
						<-room
					}
					for _, d := range ds {
						acks <- d.ID
					}
					n += len(ds)
				}
			}()
			calls := 0
			for n := 0; n < b.N; {
				rs := []Result{{ID: <-acks, Outcome: Done}}
			more:
				for {
					select {
					case id := <-acks:
						rs = append(rs, Result{ID: id, Outcome: Done})
					default:
						break more
					}
				}
				if err := s.Resolve("a", rs); err != nil {
					b.Fatal(err)
				}
				for range rs {
					<-room
				}
				calls++
				n += len(rs)
			}
			leased.Wait()
			appended.Wait()
			b.StopTimer()
			eventsPerSec(b, b.N)
			b.ReportMetric(float64(b.N)/float64(calls), "acks/resolve")
			b.ReportMetric(float64(leaseTime.Microseconds())/float64(leaseCalls), "µs/lease")
		})
	}
}

// backlogged opens a spool in dir that holds n events of about 1 KB for
// sink "a": with drained, "a" has resolved them all, so closing the spool
// commits its position and the next Open cuts the log.
func backlogged(b *testing.B, dir string, n int, drained bool) *Embedded {
	b.Helper()
	s := openSinks(b, dir, "a")
	fill(b, s, n)
	if !drained {
		return s
	}
	for got := 0; got < n; {
		ds := poll(b, s, "a", 1000)
		resolve(b, s, "a", done(ds)...)
		got += len(ds)
	}
	return s
}

// BenchmarkOpen: one op is Open and Close of a spool with 100,000 events
// of about 1 KB in its log ("backlog"), or after they were all resolved
// and cut ("drained"): what a restart costs before the host can serve.
func BenchmarkOpen(b *testing.B) {
	for _, drained := range []bool{false, true} {
		name := "backlog=100000"
		if drained {
			name = "drained=100000"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			if err := backlogged(b, dir, 100_000, drained).Close(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				s, err := Open(dir, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
