package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/evorelay/evorelay/host/internal/redistest"
)

// What only the redis spool does: several hosts on one Redis.

// crash stops a host as SIGKILL would: its loops stop, and it neither
// resolves nor releases what it leased, nor gives up its partitions.
func (r *Redis) crash() {
	r.mu.Lock()
	r.closed = true
	close(r.done)
	r.mu.Unlock()
	r.calls.Wait()
	r.loops.Wait()
}

func redisOpts(prefix string) RedisOptions {
	return RedisOptions{Prefix: prefix, TakeoverAfter: 600 * time.Millisecond, Partitions: 4}
}

func newPrefix() string { return fmt.Sprintf("test%d:", rand.Int64()) }

// A host killed with deliveries leased: another takes its partitions over
// once their leases lapse, and delivers what it had leased first, then the
// rest, in order.
func TestRedisTakeover(t *testing.T) {
	srv := redistest.Start(t)
	o := redisOpts(newPrefix())
	a := openRedis(t, srv, o)
	register(t, a, "s")
	evs := events("e", 20)
	appendT(t, a, evs...)
	leased := wait(t, a, "s", 5)
	wantIDs(t, "a leased", ids(leased), eventIDs(evs[:5]))

	b := openRedis(t, srv, o)
	register(t, b, "s")
	killed := time.Now()
	a.crash()
	var got []string
	for len(got) < len(evs) {
		ds := wait(t, b, "s", 100)
		if len(got) == 0 {
			t.Logf("takeover after %v", time.Since(killed).Round(time.Millisecond))
		}
		got = append(got, ids(ds)...)
		resolve(t, b, "s", done(ds)...)
	}
	wantIDs(t, "b delivered", got, eventIDs(evs))
	if st := b.Stats(); st.Backlog["s"] != 0 {
		t.Fatalf("backlog %d after all resolved", st.Backlog["s"])
	}
}

// Hosts that share one Redis share the work, and an instance's events
// are never leased by two hosts at once: every instance's deliveries
// reach the consumers in the order they were appended, while partitions
// move between hosts as they join.
func TestRedisOrderAcrossHosts(t *testing.T) {
	srv := redistest.Start(t)
	o := redisOpts(newPrefix())
	hosts := []*Redis{openRedis(t, srv, o)}
	register(t, hosts[0], "s")
	const instances, per = 12, 40
	var evs []Event
	for n := range per {
		for i := range instances {
			id := fmt.Sprintf("i%02d-%04d", i, n)
			evs = append(evs, Event{ID: id, Instance: fmt.Sprintf("i%02d", i), Event: "CALL", Envelope: []byte(`{}`)})
		}
	}
	appendT(t, hosts[0], evs[:len(evs)/2]...)
	for range 2 {
		h := openRedis(t, srv, o)
		register(t, h, "s")
		hosts = append(hosts, h)
	}

	var mu sync.Mutex
	var order []string // ids as leased, by any host
	holder := map[string]int{}
	inflight := map[string]int{} // instance → deliveries leased and not resolved
	delivered := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for n, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				ds, err := h.Lease(ctx, "s", 7)
				if err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					return
				}
				mu.Lock()
				for _, d := range ds {
					if inflight[d.Instance] > 0 && holder[d.Instance] != n {
						t.Errorf("%s leased by host %d while host %d has its events leased", d.ID, n, holder[d.Instance])
					}
					holder[d.Instance] = n
					inflight[d.Instance]++
					order = append(order, d.ID)
				}
				mu.Unlock()
				time.Sleep(time.Millisecond) // deliveries take time
				mu.Lock()
				for _, d := range ds {
					inflight[d.Instance]--
					delivered[d.ID]++
				}
				mu.Unlock()
				if err := h.Resolve("s", done(ds)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	appendT(t, hosts[1], evs[len(evs)/2:]...)
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		if n == len(evs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered", n, len(evs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	last := map[string]string{}
	used := map[int]bool{}
	for _, id := range order {
		inst := id[:3]
		if id <= last[inst] {
			t.Errorf("%s leased after %s", id, last[inst])
		}
		last[inst] = id
	}
	for id, n := range delivered {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	for _, n := range holder {
		used[n] = true
	}
	t.Logf("%d events over %d hosts; hosts that delivered: %v", len(evs), len(hosts), used)
}

// A broadcast sink gets every event on every host; a partitioned one gets
// each once, on one of them.
func TestRedisBroadcast(t *testing.T) {
	srv := redistest.Start(t)
	o := redisOpts(newPrefix())
	o.Broadcast = func(sink string) bool { return sink == "ws" }
	a, b := openRedis(t, srv, o), openRedis(t, srv, o)
	for _, h := range []*Redis{a, b} {
		register(t, h, "ws", "hook")
	}
	var evs []Event
	for i := range 8 {
		evs = append(evs, Event{ID: fmt.Sprintf("e-%d", i), Instance: fmt.Sprintf("inst%d", i), Event: "CALL", Envelope: []byte(`{}`)})
	}
	appendT(t, a, evs...)
	for name, h := range map[string]*Redis{"a": a, "b": b} {
		var got []string
		for len(got) < len(evs) {
			ds := wait(t, h, "ws", 100)
			got = append(got, ids(ds)...)
			resolve(t, h, "ws", done(ds)...)
		}
		if len(got) != len(evs) {
			t.Errorf("host %s: websocket got %v", name, got)
		}
	}
	hooks := map[string]int{}
	for len(hooks) < len(evs) {
		for _, h := range []*Redis{a, b} {
			ds := poll(t, h, "hook", 100)
			for _, d := range ds {
				hooks[d.ID]++
			}
			resolve(t, h, "hook", done(ds)...)
		}
	}
	for id, n := range hooks {
		if n != 1 {
			t.Errorf("hook: %s leased %d times", id, n)
		}
	}
}

// Redis down: Append and Lease fail (the API answers 503), nothing is
// lost, and both work again once Redis is back.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	s := openRedis(t, srv, redisOpts(newPrefix()))
	register(t, s, "s")
	before := events("b", 5)
	appendT(t, s, before...)
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Append(ctx, events("x", 1)); err == nil || errors.Is(err, ErrFull) {
		t.Fatalf("Append with Redis down: %v, want an error that is not ErrFull", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping with Redis down: no error")
	}
	srv.Restart()
	after := events("a", 5)
	appendT(t, s, after...)
	var got []string
	for len(got) < 10 {
		ds := wait(t, s, "s", 100)
		got = append(got, ids(ds)...)
		resolve(t, s, "s", done(ds)...)
	}
	wantIDs(t, "after the outage", got, append(eventIDs(before), eventIDs(after)...))
}

// A spool on a Redis that would lose what it acknowledged says so, naming
// the setting; hosts with another number of partitions are refused.
func TestRedisChecksAtOpen(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	if err := c.ConfigSet(ctx, "appendonly", "no").Err(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	o := redisOpts(newPrefix())
	o.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs})
	openRedis(t, srv, o)
	if !strings.Contains(logs.String(), "appendonly no") {
		t.Errorf("no warning about appendonly; logs:\n%s", logs.String())
	}
	o.Partitions = 8
	if s, err := OpenRedis(ctx, c, o); err == nil {
		s.Close()
		t.Fatal("another number of partitions: no error")
	} else if !strings.Contains(err.Error(), "has 4 partitions, this host is set to 8") {
		t.Fatalf("partitions mismatch: %v", err)
	}
}

// Entries left pending at a consumer that no longer holds their partition
// (a host that lost it while Redis was unreachable) are claimed by the
// holder once they have been idle for a takeover, and delivered.
func TestRedisSweepsStrandedEntries(t *testing.T) {
	srv := redistest.Start(t)
	s := openRedis(t, srv, redisOpts(newPrefix()))
	register(t, s, "s")
	evs := events("e", 5)
	appendT(t, s, evs...)
	stream := s.kLog(s.partition("inst"))
	// Another consumer reads two and is gone.
	if err := srv.Client().XReadGroup(context.Background(), &redis.XReadGroupArgs{
		Group: "s", Consumer: "gone", Streams: []string{stream, ">"}, Count: 2, Block: -1,
	}).Err(); err != nil {
		t.Fatal(err)
	}
	got := ids(wait(t, s, "s", 10))
	wantIDs(t, "first lease", got, eventIDs(evs[2:]))
	got = ids(wait(t, s, "s", 10))
	wantIDs(t, "after the sweep", got, eventIDs(evs[:2]))
}
