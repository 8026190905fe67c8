package main

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	backendName = flag.String("backend", "embedded", "spool and settings of the sidecar: embedded, or redis (at -redis-url; webhook only)")
	redisURL    = flag.String("redis-url", "redis://127.0.0.1:6379/0", "the Redis of -backend redis; keys live under a prefix of the run's own, deleted at its end")
)

// runWebhookRedis measures, against one receiver: the bare HTTP client,
// a bare pipelined XADD client (the ceiling of ingest into Redis), and
// the sidecar with the embedded and with the redis backend.
func runWebhookRedis(data string) error {
	opts, err := redis.ParseURL(*redisURL)
	if err != nil {
		return fmt.Errorf("-redis-url: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	prefix := "evorelay-bench-" + runID() + ":"
	defer deleteKeys(rdb, prefix)

	recv, err := newReceiver()
	if err != nil {
		return err
	}
	defer recv.Close()
	bare, err := runBareHTTP(recv, data)
	if err != nil {
		return err
	}
	report("bare client → receiver", bare, bare, "")
	xadd, err := bareXADD(rdb, prefix+"bare", data)
	if err != nil {
		return err
	}
	fmt.Printf("%-44s %9.0f events/s  (ingest ceiling: Redis alone)\n", "bare pipelined XADD → Redis", xadd)
	for _, sc := range []struct {
		name string
		env  []string
	}{
		{"sidecar → webhook (embedded, durable)", nil},
		{"sidecar → webhook (redis)", []string{"EVORELAY_BACKEND=redis", "EVORELAY_REDIS_URL=" + *redisURL, "EVORELAY_REDIS_PREFIX=" + prefix}},
	} {
		res, err := sidecarWebhook(recv, data, sc.env)
		if err != nil {
			return err
		}
		report(sc.name, res, bare, fmt.Sprintf("ingest %.0f events/s (%.2f× bare XADD)", res.ingest, res.ingest/xadd))
	}
	return nil
}

// bareXADD appends -events records the size of the sidecar's to one
// stream, from -posters clients each pipelining 64 XADDs a round trip,
// and returns events/s.
func bareXADD(rdb *redis.Client, stream, data string) (float64, error) {
	rec := envelope("bench0", data)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var next sync.Mutex
	left := *events
	take := func() int {
		next.Lock()
		defer next.Unlock()
		n := min(64, left)
		left -= n
		return n
	}
	var wg sync.WaitGroup
	errs := make(chan error, *posters)
	start := time.Now()
	for range *posters {
		wg.Go(func() {
			for n := take(); n > 0; n = take() {
				pipe := rdb.Pipeline()
				for range n {
					pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"e", rec}})
				}
				if _, err := pipe.Exec(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return rate(start), nil
}

// deleteKeys removes what the run stored in Redis.
func deleteKeys(rdb *redis.Client, prefix string) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
}
