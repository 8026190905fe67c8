package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk/sinktest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	if dir := os.Getenv(doneChildEnv); dir != "" {
		doneChild(dir)
		return
	}
	goleak.VerifyTestMain(m)
}

// open opens a spool in dir and closes it when the test ends, unless the
// test closed it.
func open(t testing.TB, dir string, opts Options) *Embedded {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Error(err)
		}
	})
	return s
}

// openSinks opens the spool in dir, with default options and sinks
// registered.
func openSinks(t testing.TB, dir string, sinks ...string) *Embedded {
	t.Helper()
	s := open(t, dir, Options{})
	register(t, s, sinks...)
	return s
}

func register(t testing.TB, s Spool, sinks ...string) {
	t.Helper()
	for _, name := range sinks {
		if err := s.Register(name); err != nil {
			t.Fatal(err)
		}
	}
}

// events makes n events with ids prefix-0000…, on instance "inst".
func events(prefix string, n int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		id := fmt.Sprintf("%s-%04d", prefix, i)
		evs[i] = Event{ID: id, Instance: "inst", Event: "MESSAGES_UPSERT", Envelope: []byte(`{"id":"` + id + `"}`)}
	}
	return evs
}

func appendT(t testing.TB, s Spool, evs ...Event) {
	t.Helper()
	if err := s.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// poll leases what is available now, without waiting.
func poll(t testing.TB, s Spool, sink string, max int) []Delivery {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ds, err := s.Lease(ctx, sink, max)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// wait leases, waiting for something to come (a minute at most, so that a
// bug fails the test instead of hanging it).
func wait(t testing.TB, s Spool, sink string, max int) []Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ds, err := s.Lease(ctx, sink, max)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func resolve(t testing.TB, s Spool, sink string, rs ...Result) {
	t.Helper()
	if err := s.Resolve(sink, rs); err != nil {
		t.Fatal(err)
	}
}

func done(ds []Delivery) []Result {
	rs := make([]Result, len(ds))
	for i, d := range ds {
		rs[i] = Result{ID: d.ID, Outcome: Done}
	}
	return rs
}

func ids(ds []Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func eventIDs(evs []Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func wantIDs(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func TestAppendThenLeaseInOrder(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		evs := events("e", 7)
		appendT(t, s, evs[:3]...)
		appendT(t, s, evs[3:4]...)
		appendT(t, s, evs[4:]...)

		got := wait(t, s, "a", 100)
		wantIDs(t, "lease", ids(got), eventIDs(evs))
		for i, d := range got {
			if d.Attempt != 1 || d.FirstTry.IsZero() || d.LastError != "" {
				t.Errorf("%s: attempt %d, first try %v, last error %q; want 1, set, none", d.ID, d.Attempt, d.FirstTry, d.LastError)
			}
			if d.Instance != "inst" || d.Event.Event != "MESSAGES_UPSERT" || string(d.Envelope) != string(evs[i].Envelope) {
				t.Errorf("%s: got %+v, want %+v", d.ID, d.Event, evs[i])
			}
		}
		if more := poll(t, s, "a", 100); len(more) != 0 {
			t.Fatalf("leased twice: %v", ids(more))
		}
	})
}

func TestLeaseMax(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		evs := events("e", 5)
		appendT(t, s, evs...)
		wantIDs(t, "first", ids(wait(t, s, "a", 2)), eventIDs(evs[:2]))
		wantIDs(t, "second", ids(wait(t, s, "a", 2)), eventIDs(evs[2:4]))
		wantIDs(t, "third", ids(wait(t, s, "a", 2)), eventIDs(evs[4:]))
		if _, err := s.Lease(context.Background(), "a", 0); err == nil {
			t.Fatal("Lease with max 0: no error")
		}
	})
}

func TestNewSinkStartsAtEnd(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		appendT(t, s, events("old", 2)...)
		register(t, s, "b")
		register(t, s, "b") // again: a no-op
		fresh := events("new", 2)
		appendT(t, s, fresh...)
		wantIDs(t, "b", ids(wait(t, s, "b", 10)), eventIDs(fresh))
		if got := wait(t, s, "a", 10); len(got) != 4 {
			t.Fatalf("a: got %v, want all 4", ids(got))
		}
	})
}

func TestUnknownSink(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		if _, err := s.Lease(context.Background(), "nope", 1); !errors.Is(err, ErrUnknownSink) {
			t.Errorf("Lease: %v, want ErrUnknownSink", err)
		}
		if err := s.Resolve("nope", []Result{{ID: "x", Outcome: Done}}); !errors.Is(err, ErrUnknownSink) {
			t.Errorf("Resolve: %v, want ErrUnknownSink", err)
		}
		if _, err := s.DeadLetters("nope", "inst", 0, ""); !errors.Is(err, ErrUnknownSink) {
			t.Errorf("DeadLetters: %v, want ErrUnknownSink", err)
		}
		if _, err := s.Replay("nope", "inst", nil); !errors.Is(err, ErrUnknownSink) {
			t.Errorf("Replay: %v, want ErrUnknownSink", err)
		}
		if err := s.Register(""); err == nil {
			t.Error("Register(\"\"): no error")
		}
	})
}

// TestLeaseOrder checks the order of a Lease: released, then due retries
// (by due time), then the log; and what each outcome does to the attempt.
func TestLeaseOrder(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		evs := events("e", 6)
		appendT(t, s, evs...)
		first := wait(t, s, "a", 4) // e0..e3
		past := time.Now().Add(-time.Minute)
		resolve(t, s, "a",
			Result{ID: "e-0000", Outcome: Retry, Due: past.Add(time.Second), Reason: "503"},
			Result{ID: "e-0001", Outcome: Release},
			Result{ID: "e-0002", Outcome: Done},
			Result{ID: "e-0003", Outcome: Retry, Due: past, Reason: "timeout"},
		)
		got := wait(t, s, "a", 10)
		wantIDs(t, "order", ids(got), []string{"e-0001", "e-0003", "e-0000", "e-0004", "e-0005"})
		want := []struct {
			attempt int
			lastErr string
		}{{1, ""}, {2, "timeout"}, {2, "503"}, {1, ""}, {1, ""}}
		for i, d := range got {
			if d.Attempt != want[i].attempt || d.LastError != want[i].lastErr {
				t.Errorf("%s: attempt %d, last error %q; want %d, %q", d.ID, d.Attempt, d.LastError, want[i].attempt, want[i].lastErr)
			}
		}
		if !got[0].FirstTry.Equal(first[1].FirstTry) || !got[1].FirstTry.Equal(first[3].FirstTry) {
			t.Errorf("FirstTry changed: %v, %v; want %v, %v", got[0].FirstTry, got[1].FirstTry, first[1].FirstTry, first[3].FirstTry)
		}

		// A released retry keeps its attempt; retried again, it counts.
		resolve(t, s, "a", Result{ID: "e-0003", Outcome: Release})
		again := wait(t, s, "a", 1)
		if again[0].ID != "e-0003" || again[0].Attempt != 2 {
			t.Fatalf("released retry: got %s attempt %d, want e-0003 attempt 2", again[0].ID, again[0].Attempt)
		}
		resolve(t, s, "a", Result{ID: "e-0003", Outcome: Retry, Reason: "again"})
		third := wait(t, s, "a", 1)
		if third[0].ID != "e-0003" || third[0].Attempt != 3 || third[0].LastError != "again" {
			t.Fatalf("third try: got %+v", third[0])
		}
	})
}

func TestRetryNotDueIsNotLeased(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		appendT(t, s, events("e", 2)...)
		wait(t, s, "a", 1)
		resolve(t, s, "a", Result{ID: "e-0000", Outcome: Retry, Due: time.Now().Add(time.Hour)})
		// The retry does not hold back the event behind it.
		wantIDs(t, "lease", ids(wait(t, s, "a", 10)), []string{"e-0001"})
		resolve(t, s, "a", Result{ID: "e-0001", Outcome: Done})
		if got := poll(t, s, "a", 10); len(got) != 0 {
			t.Fatalf("leased %v before it was due", ids(got))
		}
		if st := s.Stats(); st.Backlog["a"] != 1 {
			t.Fatalf("backlog %d, want 1 (the retry)", st.Backlog["a"])
		}
	})
}

// Due retries take at most half a lease while the log has events, so a
// backlog of retries cannot starve the events behind them.
func TestRetriesDoNotStarveTheLog(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		appendT(t, s, events("r", 10)...)
		var rs []Result
		for _, d := range wait(t, s, "a", 10) {
			rs = append(rs, Result{ID: d.ID, Outcome: Retry})
		}
		resolve(t, s, "a", rs...)
		appendT(t, s, events("n", 10)...)
		wantIDs(t, "lease", ids(wait(t, s, "a", 10)), []string{
			"r-0000", "r-0001", "r-0002", "r-0003", "r-0004", "n-0000", "n-0001", "n-0002", "n-0003", "n-0004"})
		// With the log drained, retries fill the lease.
		wantIDs(t, "lease", ids(wait(t, s, "a", 4)), []string{"r-0005", "r-0006", "n-0005", "n-0006"})
		wantIDs(t, "lease", ids(wait(t, s, "a", 10)), []string{"r-0007", "r-0008", "r-0009", "n-0007", "n-0008", "n-0009"})
	})
}

// The events limit counts the retry schedule too: a destination that is
// down for long cannot grow the spool past it.
func TestLimitCountsRetries(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{Limits: Limits{Events: 10}})
		register(t, s, "a")
		appendT(t, s, events("r", 6)...)
		var rs []Result
		for _, d := range wait(t, s, "a", 6) {
			rs = append(rs, Result{ID: d.ID, Outcome: Retry, Due: time.Now().Add(time.Hour)})
		}
		resolve(t, s, "a", rs...)
		if st := s.Stats(); st.Scheduled != 6 {
			t.Fatalf("scheduled %d, want 6", st.Scheduled)
		}
		if err := s.Append(context.Background(), events("n", 5)); !errors.Is(err, ErrFull) {
			t.Fatalf("append past log + retries = %v, want ErrFull", err)
		}
		appendT(t, s, events("n", 4)...)
	})
}

// A deferred delivery comes back on the schedule with its attempt and last
// error as they were: deferring is not trying.
func TestDeferCountsNoAttempt(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		appendT(t, s, events("e", 1)...)
		wait(t, s, "a", 1)
		resolve(t, s, "a", Result{ID: "e-0000", Outcome: Retry, Reason: "HTTP 503"})
		d := wait(t, s, "a", 1)[0]
		if d.Attempt != 2 || d.LastError != "HTTP 503" {
			t.Fatalf("after a retry: attempt %d, last error %q", d.Attempt, d.LastError)
		}
		resolve(t, s, "a", Result{ID: "e-0000", Outcome: Defer})
		d = wait(t, s, "a", 1)[0]
		if d.Attempt != 2 || d.LastError != "HTTP 503" {
			t.Fatalf("after a defer: attempt %d, last error %q; want 2, HTTP 503", d.Attempt, d.LastError)
		}
		resolve(t, s, "a", Result{ID: "e-0000", Outcome: Defer, Due: time.Now().Add(time.Hour)})
		if got := poll(t, s, "a", 10); len(got) != 0 {
			t.Fatalf("leased %v before it was due", ids(got))
		}
	})
}

// A blocked Lease wakes up for a retry coming due, an append, a release
// and a replay.
func TestLeaseWakesUp(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		cases := []struct {
			name string
			prep func(t *testing.T, s Spool) // leaves nothing leasable
			poke func(t *testing.T, s Spool)
			want string
		}{{
			name: "retry comes due",
			prep: func(t *testing.T, s Spool) {
				appendT(t, s, events("e", 1)...)
				wait(t, s, "a", 1)
				resolve(t, s, "a", Result{ID: "e-0000", Outcome: Retry, Due: time.Now().Add(50 * time.Millisecond)})
			},
			poke: func(*testing.T, Spool) {},
			want: "e-0000",
		}, {
			name: "append",
			prep: func(*testing.T, Spool) {},
			poke: func(t *testing.T, s Spool) { appendT(t, s, events("e", 1)...) },
			want: "e-0000",
		}, {
			name: "release",
			prep: func(t *testing.T, s Spool) {
				appendT(t, s, events("e", 1)...)
				wait(t, s, "a", 1)
			},
			poke: func(t *testing.T, s Spool) { resolve(t, s, "a", Result{ID: "e-0000", Outcome: Release}) },
			want: "e-0000",
		}, {
			name: "replay",
			prep: func(t *testing.T, s Spool) {
				appendT(t, s, events("e", 1)...)
				wait(t, s, "a", 1)
				resolve(t, s, "a", Result{ID: "e-0000", Outcome: Dead, Reason: "410"})
			},
			poke: func(t *testing.T, s Spool) {
				if n, err := s.Replay("a", "inst", nil); err != nil || n != 1 {
					t.Errorf("Replay: %d, %v", n, err)
				}
			},
			want: "e-0000",
		}}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				s := k.fresh(t).open(t, Options{})
				register(t, s, "a")
				tc.prep(t, s)
				got := make(chan []Delivery, 1)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					ds, err := s.Lease(ctx, "a", 10)
					if err != nil {
						t.Error(err)
					}
					got <- ds
				}()
				tc.poke(t, s)
				wantIDs(t, "woken lease", ids(<-got), []string{tc.want})
			})
		}
	})
}

func TestLeaseEnds(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := s.Lease(ctx, "a", 1)
			errc <- err
		}()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled Lease: %v, want context.Canceled", err)
		}

		go func() {
			_, err := s.Lease(context.Background(), "a", 1)
			errc <- err
		}()
		// Close waits for the Lease, which returns ErrClosed.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("Lease at Close: %v, want ErrClosed", err)
		}
		if err := s.Append(context.Background(), events("e", 1)); !errors.Is(err, ErrClosed) {
			t.Errorf("Append after Close: %v", err)
		}
		if _, err := s.Lease(context.Background(), "a", 1); !errors.Is(err, ErrClosed) {
			t.Errorf("Lease after Close: %v", err)
		}
		if err := s.Close(); !errors.Is(err, ErrClosed) {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestResolveErrors(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		appendT(t, s, events("e", 3)...)
		wait(t, s, "a", 3)

		// A bad outcome rejects the whole call.
		err := s.Resolve("a", []Result{{ID: "e-0000", Outcome: Done}, {ID: "e-0001", Outcome: 0}})
		if err == nil {
			t.Fatal("outcome 0: no error")
		}
		// Unknown ids are reported; the others are resolved.
		err = s.Resolve("a", []Result{{ID: "e-0000", Outcome: Done}, {ID: "ghost", Outcome: Done}})
		if !errors.Is(err, ErrNotLeased) || !strings.Contains(err.Error(), "ghost") {
			t.Fatalf("unknown id: %v, want ErrNotLeased naming ghost", err)
		}
		if err := s.Resolve("a", []Result{{ID: "e-0000", Outcome: Done}}); !errors.Is(err, ErrNotLeased) {
			t.Fatalf("resolved twice: %v, want ErrNotLeased", err)
		}
		resolve(t, s, "a", Result{ID: "e-0001", Outcome: Done}, Result{ID: "e-0002", Outcome: Done})
		if st := s.Stats(); st.Backlog["a"] != 0 {
			t.Fatalf("backlog %d, want 0", st.Backlog["a"])
		}
	})
}

func TestAppendErrors(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{Limits: Limits{Events: 3, Bytes: 1 << 20}})
		register(t, s, "a")
		if err := s.Append(context.Background(), nil); err != nil {
			t.Errorf("no events: %v", err)
		}
		if err := s.Append(context.Background(), []Event{{Instance: "inst"}}); err == nil {
			t.Error("no id: no error")
		}
		if err := s.Append(context.Background(), events("e", 4)); !errors.Is(err, ErrTooLarge) {
			t.Errorf("4 events, limit 3: %v, want ErrTooLarge", err)
		}
		big := []Event{{ID: "big", Envelope: make([]byte, 2<<20)}}
		if err := s.Append(context.Background(), big); !errors.Is(err, ErrTooLarge) {
			t.Errorf("2 MiB, limit 1 MiB: %v, want ErrTooLarge", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Append(ctx, events("e", 1)); !errors.Is(err, context.Canceled) {
			t.Errorf("canceled: %v", err)
		}
		if st := s.Stats(); st.Events != 0 {
			t.Errorf("%d events accepted by failed appends", st.Events)
		}
	})
}

// Two leases of one id (ids should be unique, but the spool survives
// when they are not).
func TestDuplicateIDs(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		ev := events("e", 1)[0]
		appendT(t, s, ev, ev)
		wantIDs(t, "lease", ids(wait(t, s, "a", 2)), []string{"e-0000", "e-0000"})
		resolve(t, s, "a", Result{ID: "e-0000", Outcome: Done}, Result{ID: "e-0000", Outcome: Done})
		if st := s.Stats(); st.Backlog["a"] != 0 {
			t.Fatalf("backlog %d, want 0", st.Backlog["a"])
		}
	})
}

func TestLimits(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		ev := events("e", 1)[0]
		size := int64(len(encodeEvent(&ev)))
		cases := []struct {
			name   string
			limits Limits
		}{
			{"events", Limits{Events: 4}},
			{"bytes", Limits{Bytes: 4 * size}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				s := k.fresh(t).open(t, Options{Limits: tc.limits})
				register(t, s, "a", "b")
				appendT(t, s, events("e", 4)...)
				if err := s.Append(context.Background(), events("x", 1)); !errors.Is(err, ErrFull) {
					t.Fatalf("append past the limit: %v, want ErrFull", err)
				}
				st := s.Stats()
				if st.Events != 4 || st.Bytes != 4*size || st.Limit != tc.limits {
					t.Fatalf("stats: %+v", st)
				}
				// One sink catching up is not enough: b still needs them.
				resolve(t, s, "a", done(wait(t, s, "a", 10))...)
				if err := s.Append(context.Background(), events("x", 1)); !errors.Is(err, ErrFull) {
					t.Fatalf("append with b behind: %v, want ErrFull", err)
				}
				// b resolves 3 of 4: room for 3, not for 4.
				bs := wait(t, s, "b", 10)
				resolve(t, s, "b", done(bs[:3])...)
				if err := s.Append(context.Background(), events("y", 4)); !errors.Is(err, ErrFull) {
					t.Fatalf("4 more with room for 3: %v, want ErrFull", err)
				}
				appendT(t, s, events("y", 3)...)
				if st := s.Stats(); st.Events != 4 {
					t.Fatalf("after truncation: %d events, want 4", st.Events)
				}
				resolve(t, s, "b", done(bs[3:])...)
				wantIDs(t, "b after truncation", ids(wait(t, s, "b", 10)), eventIDs(events("y", 3)))
			})
		}
	})
}

// With no sink the log keeps everything; a sink registered later starts
// at the end and lets the log be truncated.
func TestNoSinkKeepsEverything(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{Limits: Limits{Events: 3}})
		appendT(t, s, events("e", 3)...)
		if err := s.Append(context.Background(), events("x", 1)); !errors.Is(err, ErrFull) {
			t.Fatalf("no sink, full: %v, want ErrFull", err)
		}
		register(t, s, "a")
		appendT(t, s, events("x", 1)...)
		wantIDs(t, "a", ids(wait(t, s, "a", 10)), []string{"x-0000"})
	})
}

func TestTruncation(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a")
		n := 2 * truncateAfter
		appendT(t, s, events("e", n)...)
		for got := 0; got < n; {
			ds := wait(t, s, "a", 64)
			resolve(t, s, "a", done(ds)...)
			got += len(ds)
		}
		appendT(t, s, events("x", 1)...)
		// The resolves truncate the log as they go (the embedded spool
		// once their marks are committed, within AckDelay), leaving fewer
		// than truncateAfter resolved events.
		sinktest.Eventually(t, "the log truncated", 10*time.Second, func() bool {
			st := s.Stats()
			return st.Events <= truncateAfter && st.Backlog["a"] == 1
		})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = k.open(t, Options{})
		register(t, s, "a")
		wantIDs(t, "after reopen", ids(wait(t, s, "a", 10)), []string{"x-0000"})
		// Sequences go on from where they were, not from 1.
		appendT(t, s, events("y", 1)...)
		wantIDs(t, "new append", ids(wait(t, s, "a", 10)), []string{"y-0000"})
	})
}

// clock is a fake e.now; tests set it before the spool is used
// concurrently.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// deadLetters makes dead letters: the ids of evs, one second apart.
func deadLetters(t *testing.T, s Spool, c *clock, sink string, evs []Event) {
	t.Helper()
	appendT(t, s, evs...)
	for range evs {
		d := wait(t, s, sink, 1)[0]
		resolve(t, s, sink, Result{ID: d.ID, Outcome: Dead, Reason: "rejected " + d.ID})
		c.add(time.Second)
	}
}

func TestDeadLetters(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		c := &clock{t: time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)}
		setNow(s, c.now)
		register(t, s, "a", "b")
		evs := events("e", 5)
		other := Event{ID: "o-0000", Instance: "other", Event: "CALL", Envelope: []byte(`{}`)}
		// Apart: the order of different instances' events may differ
		// between backends (the redis spool partitions the log).
		deadLetters(t, s, c, "a", evs)
		deadLetters(t, s, c, "a", []Event{other})
		resolve(t, s, "b", done(wait(t, s, "b", 10))...)

		all, err := s.DeadLetters("a", "inst", 0, "")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"e-0004", "e-0003", "e-0002", "e-0001", "e-0000"}
		got := make([]string, len(all))
		for i, dl := range all {
			got[i] = dl.ID
		}
		wantIDs(t, "all, newest first", got, want)
		dl := all[0]
		wantFailed := time.Date(2024, 1, 1, 12, 0, 4, 0, time.UTC)
		if dl.Sink != "a" || dl.Instance != "inst" || dl.Event != "MESSAGES_UPSERT" || dl.Attempts != 1 ||
			dl.Reason != "rejected e-0004" || !dl.FailedAt.Equal(wantFailed) || !dl.FirstTry.Equal(wantFailed) ||
			string(dl.Envelope) != string(evs[4].Envelope) {
			t.Errorf("dead letter: %+v", dl)
		}
		if st := s.Stats(); st.Dead["a"] != 6 || st.Dead["b"] != 0 || st.Backlog["a"] != 0 {
			t.Errorf("stats: dead %v, backlog %v", st.Dead, st.Backlog)
		}

		pages := []struct {
			limit  int
			before string
			want   []string
		}{
			{2, "", want[:2]},
			{2, "e-0003", want[2:4]},
			{2, "e-0001", want[4:]},
			{2, "e-0000", nil},
			{0, wantFailed.Add(-time.Second).Format(time.RFC3339Nano), want[2:]},
			{1, wantFailed.Format(time.RFC3339), want[1:2]},
		}
		for _, p := range pages {
			dls, err := s.DeadLetters("a", "inst", p.limit, p.before)
			if err != nil {
				t.Fatal(err)
			}
			got := []string(nil)
			for _, dl := range dls {
				got = append(got, dl.ID)
			}
			wantIDs(t, fmt.Sprintf("limit %d before %q", p.limit, p.before), got, p.want)
		}
		if _, err := s.DeadLetters("a", "inst", 2, "nonsense"); !errors.Is(err, ErrBadCursor) {
			t.Error("bad cursor: no error")
		}
		if dls, err := s.DeadLetters("a", "other", 0, ""); err != nil || len(dls) != 1 || dls[0].ID != "o-0000" {
			t.Errorf("other instance: %v, %v", dls, err)
		}
		if dls, err := s.DeadLetters("b", "inst", 0, ""); err != nil || len(dls) != 0 {
			t.Errorf("sink b: %v, %v", dls, err)
		}
	})
}

func TestReplayAndDiscard(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		c := &clock{t: time.Now()}
		setNow(s, c.now)
		register(t, s, "a")
		other := Event{ID: "o-0000", Instance: "other", Event: "CALL", Envelope: []byte(`{}`)}
		deadLetters(t, s, c, "a", events("e", 4))
		deadLetters(t, s, c, "a", []Event{other})

		// Replay by id keeps the id and starts the attempts over.
		n, err := s.Replay("a", "inst", []string{"e-0001", "e-0001", "ghost", "o-0000"})
		if err != nil || n != 1 {
			t.Fatalf("Replay: %d, %v; want 1 (ghost unknown, o-0000 another instance's)", n, err)
		}
		d := wait(t, s, "a", 10)
		if len(d) != 1 || d[0].ID != "e-0001" || d[0].Attempt != 1 || d[0].LastError != "rejected e-0001" ||
			string(d[0].Envelope) != `{"id":"e-0001"}` {
			t.Fatalf("replayed: %+v", d)
		}
		if st := s.Stats(); st.Dead["a"] != 4 || st.Backlog["a"] != 1 {
			t.Fatalf("stats after replay: %+v", st)
		}
		// It can die again, and is listed once.
		resolve(t, s, "a", Result{ID: "e-0001", Outcome: Dead, Reason: "again"})
		dls, _ := s.DeadLetters("a", "inst", 0, "")
		if len(dls) != 4 || dls[0].ID != "e-0001" || dls[0].Reason != "again" {
			t.Fatalf("after dying again: %+v", dls)
		}

		// Discard by id, then all of an instance.
		if n, err := s.Discard("a", "inst", []string{"e-0000", "ghost"}); err != nil || n != 1 {
			t.Fatalf("Discard: %d, %v; want 1", n, err)
		}
		if n, err := s.Discard("a", "inst", nil); err != nil || n != 3 {
			t.Fatalf("Discard all: %d, %v; want 3", n, err)
		}
		if dls, _ := s.DeadLetters("a", "inst", 0, ""); len(dls) != 0 {
			t.Fatalf("left after Discard: %+v", dls)
		}
		// Replay all of the other instance.
		if n, err := s.Replay("a", "other", nil); err != nil || n != 1 {
			t.Fatalf("Replay all: %d, %v", n, err)
		}
		wantIDs(t, "replayed other", ids(wait(t, s, "a", 10)), []string{"o-0000"})
		if st := s.Stats(); st.Dead["a"] != 0 {
			t.Fatalf("dead %d, want 0", st.Dead["a"])
		}
	})
}

// TestRestart closes the spool with deliveries leased and resolved out of
// order, as a crash would leave it, and checks what comes back.
func TestRestart(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a", "b")
		evs := events("e", 8)
		appendT(t, s, evs...)
		wait(t, s, "a", 6) // e0..e5
		resolve(t, s, "a",
			Result{ID: "e-0001", Outcome: Done},
			Result{ID: "e-0002", Outcome: Retry, Due: time.Now().Add(-time.Second), Reason: "503"},
			Result{ID: "e-0003", Outcome: Dead, Reason: "400"},
			Result{ID: "e-0004", Outcome: Release},
		)
		// e0 and e5 stay leased; e4 released; b leased nothing.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s = k.open(t, Options{})
		if st := s.Stats(); st.Backlog["a"] != 6 || st.Backlog["b"] != 8 || st.Dead["a"] != 1 {
			t.Fatalf("stats after reopen: %+v", st)
		}
		if _, err := s.Lease(context.Background(), "a", 1); !errors.Is(err, ErrUnknownSink) {
			t.Fatalf("Lease before Register: %v, want ErrUnknownSink", err)
		}
		register(t, s, "a", "b")
		got := wait(t, s, "a", 10)
		// The retry (attempt 2), then the log without e1 (done), e2 (in the
		// schedule) and e3 (dead).
		wantIDs(t, "a after restart", ids(got), []string{"e-0002", "e-0000", "e-0004", "e-0005", "e-0006", "e-0007"})
		if got[0].Attempt != 2 || got[0].LastError != "503" {
			t.Errorf("retry after restart: %+v", got[0])
		}
		if dls, _ := s.DeadLetters("a", "inst", 0, ""); len(dls) != 1 || dls[0].ID != "e-0003" {
			t.Errorf("dead letters after restart: %+v", dls)
		}
		wantIDs(t, "b after restart", ids(wait(t, s, "b", 10)), eventIDs(evs))

		// Resolving everything moves the position past the acked entries.
		resolve(t, s, "a", done(got)...)
		if st := s.Stats(); st.Backlog["a"] != 0 {
			t.Fatalf("backlog after resolving all: %d", st.Backlog["a"])
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = k.open(t, Options{})
		register(t, s, "a")
		if got := poll(t, s, "a", 10); len(got) != 0 {
			t.Fatalf("leased again after all resolved: %v", ids(got))
		}
	})
}

// TestDoneDurableAfterClose: Done outcomes, out of order, hold across
// Close and Open even when they would wait an hour for a commit of their
// own.
func TestDoneDurableAfterClose(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		opts := Options{AckDelay: time.Hour}
		s := k.open(t, opts)
		register(t, s, "a")
		appendT(t, s, events("e", 5)...)
		wait(t, s, "a", 5)
		resolve(t, s, "a", Result{ID: "e-0003", Outcome: Done}, Result{ID: "e-0000", Outcome: Done}, Result{ID: "e-0002", Outcome: Done})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s = k.open(t, opts)
		register(t, s, "a")
		got := wait(t, s, "a", 10)
		wantIDs(t, "after reopen", ids(got), []string{"e-0001", "e-0004"})
		resolve(t, s, "a", done(got)...)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s = k.open(t, opts)
		register(t, s, "a")
		if got := poll(t, s, "a", 10); len(got) != 0 {
			t.Fatalf("leased again after all resolved and closed: %v", ids(got))
		}
	})
}

func TestForget(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{Limits: Limits{Events: 2}})
		register(t, s, "gone", "a")
		appendT(t, s, events("e", 2)...)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s = k.open(t, Options{Limits: Limits{Events: 2}})
		register(t, s, "a")
		resolve(t, s, "a", done(wait(t, s, "a", 10))...)
		// "gone" is behind: the log cannot be truncated.
		if err := s.Append(context.Background(), events("x", 1)); !errors.Is(err, ErrFull) {
			t.Fatalf("append with an old sink behind: %v, want ErrFull", err)
		}
		if err := forget(s, "a"); err == nil {
			t.Fatal("Forget of a registered sink: no error")
		}
		if err := forget(s, "nope"); !errors.Is(err, ErrUnknownSink) {
			t.Fatalf("Forget unknown: %v", err)
		}
		if err := forget(s, "gone"); err != nil {
			t.Fatal(err)
		}
		appendT(t, s, events("x", 1)...)
		if _, ok := s.Stats().Backlog["gone"]; ok {
			t.Fatal("forgotten sink still in Stats")
		}
		// Registered again, it is new: it starts at the end.
		register(t, s, "gone")
		appendT(t, s, events("y", 1)...)
		wantIDs(t, "re-registered", ids(wait(t, s, "gone", 10)), []string{"y-0000"})
	})
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Options{})
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("second Open of a locked spool: no error")
	} else if !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Open: %v, want it to say the file is locked", err)
	}
}

// TestConcurrent runs many appenders and, per sink, one leaser: sink a
// resolves everything at once; sink b retries, releases and kills some.
// Each must end with every event resolved exactly once, and each
// appender's events leased in the order they were appended.
func TestConcurrent(t *testing.T) {
	forEachSpool(t, func(t *testing.T, k spoolKit) {
		s := k.open(t, Options{})
		register(t, s, "a", "b")
		const appenders, batches = 8, 30
		var total int
		var wg sync.WaitGroup
		sizes := make([][]int, appenders)
		for w := range appenders {
			for b := range batches {
				n := 1 + (w*7+b*3)%10
				sizes[w] = append(sizes[w], n)
				total += n
			}
		}
		for w := range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seq := 0
				for _, n := range sizes[w] {
					evs := make([]Event, n)
					for i := range evs {
						evs[i] = Event{ID: fmt.Sprintf("w%d-%05d", w, seq), Instance: "inst", Envelope: []byte("{}")}
						seq++
					}
					if err := s.Append(context.Background(), evs); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}

		type result struct {
			done  map[string]int
			order []string // first leases, in order
			dead  int
		}
		consume := func(sink string, decide func(d Delivery) Result) result {
			r := result{done: make(map[string]int)}
			seen := make(map[string]bool)
			for len(r.done)+r.dead < total {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				ds, err := s.Lease(ctx, sink, 32)
				cancel()
				if err != nil {
					t.Errorf("%s: %v", sink, err)
					return r
				}
				rs := make([]Result, len(ds))
				for i, d := range ds {
					if !seen[d.ID] {
						seen[d.ID] = true
						r.order = append(r.order, d.ID)
					}
					rs[i] = decide(d)
					switch rs[i].Outcome {
					case Done:
						r.done[d.ID]++
					case Dead:
						r.dead++
					}
				}
				if err := s.Resolve(sink, rs); err != nil {
					t.Errorf("%s: %v", sink, err)
					return r
				}
			}
			return r
		}
		results := make(map[string]result)
		var mu sync.Mutex
		var cw sync.WaitGroup
		for _, sink := range []string{"a", "b"} {
			cw.Add(1)
			go func() {
				defer cw.Done()
				var n int
				r := consume(sink, func(d Delivery) Result {
					n++
					if sink == "a" {
						return Result{ID: d.ID, Outcome: Done}
					}
					switch {
					case n%13 == 0:
						return Result{ID: d.ID, Outcome: Dead, Reason: "no"}
					case n%5 == 0 && d.Attempt < 3:
						return Result{ID: d.ID, Outcome: Retry, Reason: "later"}
					case n%7 == 0:
						return Result{ID: d.ID, Outcome: Release}
					}
					return Result{ID: d.ID, Outcome: Done}
				})
				mu.Lock()
				results[sink] = r
				mu.Unlock()
			}()
		}
		wg.Wait()
		cw.Wait()

		for sink, r := range results {
			for id, n := range r.done {
				if n != 1 {
					t.Errorf("%s: %s done %d times", sink, id, n)
				}
			}
			if len(r.order) != total {
				t.Errorf("%s: %d distinct events leased, want %d", sink, len(r.order), total)
			}
			if sink == "a" {
				last := make(map[string]string)
				for _, id := range r.order {
					w := id[:strings.IndexByte(id, '-')]
					if id < last[w] {
						t.Errorf("a: %s leased after %s", id, last[w])
					}
					last[w] = id
				}
			}
			st := s.Stats()
			if st.Backlog[sink] != 0 || st.Dead[sink] != r.dead {
				t.Errorf("%s: backlog %d, dead %d; want 0, %d", sink, st.Backlog[sink], st.Dead[sink], r.dead)
			}
		}
		if dls, _ := s.DeadLetters("b", "inst", 0, ""); len(dls) != results["b"].dead {
			t.Errorf("b: %d dead letters listed, want %d", len(dls), results["b"].dead)
		}
	})
}
