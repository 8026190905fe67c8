package main

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

var (
	backendName = flag.String("backend", "embedded", "spool and settings of every sidecar: embedded, or redis (at -redis-url)")
	redisURL    = flag.String("redis-url", "redis://127.0.0.1:6379/0", "the Redis of -backend redis; keys live under a prefix of the run's own, deleted at its end")
)

// rdb and prefix are the Redis of -backend redis and the run's prefix in it.
var (
	rdb    *redis.Client
	prefix string
)

// setUpBackend connects to the Redis of -backend redis.
func setUpBackend() error {
	switch *backendName {
	case "embedded":
		return nil
	case "redis":
	default:
		return fmt.Errorf("-backend %q: expected embedded or redis", *backendName)
	}
	opts, err := redis.ParseURL(*redisURL)
	if err != nil {
		return fmt.Errorf("-redis-url: %w", err)
	}
	rdb = redis.NewClient(opts)
	prefix = "evorelay-bench-" + runID() + ":"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("Redis at %s: %w", *redisURL, err)
	}
	return nil
}

// backendEnv is what makes a sidecar of scenario use -backend: a prefix of
// its own under the run's, so that no scenario sees another's spool.
func backendEnv(scenario string) []string {
	if rdb == nil {
		return nil
	}
	return []string{"EVORELAY_BACKEND=redis", "EVORELAY_REDIS_URL=" + *redisURL, "EVORELAY_REDIS_PREFIX=" + prefix + scenario + ":"}
}

// tearDownBackend deletes what the run stored in Redis.
func tearDownBackend() {
	if rdb == nil {
		return
	}
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
	rdb.Close()
}

// bareXADDLine prints, with -backend redis, what Redis alone takes in:
// the ingest ceiling of the redis spool.
func bareXADDLine(l load) error {
	if rdb == nil {
		return nil
	}
	xadd, err := bareXADD(l)
	if err != nil {
		return err
	}
	line("bare: pipelined XADD → Redis (ingest ceiling)", xadd, 0, "")
	return nil
}

// bareXADD appends the load's envelopes to one stream, from l.posters
// clients each pipelining 64 XADDs a round trip, and returns events/s.
func bareXADD(l load) (float64, error) {
	stream := prefix + "bare"
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	recs := make([][]byte, l.n)
	for i := range recs {
		recs[i] = l.envelope(i)
	}
	var next sync.Mutex
	done := 0
	take := func() (int, int) {
		next.Lock()
		defer next.Unlock()
		from := done
		done = min(done+64, l.n)
		return from, done
	}
	var g errgroup.Group
	start := time.Now()
	for range l.posters {
		g.Go(func() error {
			for from, to := take(); from < to; from, to = take() {
				pipe := rdb.Pipeline()
				for _, rec := range recs[from:to] {
					pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"e", rec}})
				}
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return rate(l.n, time.Since(start)), nil
}
