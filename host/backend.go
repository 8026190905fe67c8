package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/evorelay/evorelay/host/config"
	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk"
)

// backends are the settings backend and the spool EVORELAY_BACKEND chose.
type backends struct {
	settings store.Backend
	spool    spool.Spool
	redis    redis.UniversalClient // nil for embedded
}

// openBackends opens the embedded backends in the data directory, or the
// redis ones (waiting for Redis as long as ctx allows). broadcast tells
// the redis spool which sinks every host needs all events of; it is asked
// only when a sink is registered.
func openBackends(ctx context.Context, cfg *config.Config, logger hclog.Logger, broadcast func(sink string) bool) (*backends, error) {
	limits := spool.Limits{Events: int(cfg.SpoolMaxEvents), Bytes: cfg.SpoolMaxBytes}
	if cfg.Backend != config.BackendRedis {
		settings, err := store.OpenEmbedded(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		sp, err := spool.Open(filepath.Join(cfg.DataDir, "spool"), spool.Options{
			Limits: limits, NoSync: cfg.SpoolNoSync, Logger: logger.Named("spool"),
		})
		if err != nil {
			settings.Close()
			return nil, err
		}
		return &backends{settings: settings, spool: sp}, nil
	}

	one, sentinel, err := config.ParseRedisURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("EVORELAY_REDIS_URL: %w", err)
	}
	if cfg.RedisTLSCA != "" {
		pool, err := sdk.LoadCA(cfg.RedisTLSCA)
		if err != nil {
			return nil, fmt.Errorf("EVORELAY_REDIS_TLS_CA: %w", err)
		}
		if one != nil && one.TLSConfig != nil { // rediss://, checked by config
			one.TLSConfig.RootCAs = pool
		}
		if sentinel != nil && sentinel.TLSConfig != nil {
			sentinel.TLSConfig.RootCAs = pool
		}
	}
	var rdb *redis.Client
	if sentinel != nil {
		rdb = redis.NewFailoverClient(sentinel)
	} else {
		rdb = redis.NewClient(one)
	}
	sp, err := spool.OpenRedis(ctx, rdb, spool.RedisOptions{
		Prefix: cfg.RedisPrefix, Limits: limits, TakeoverAfter: cfg.RedisTakeoverAfter,
		Broadcast: broadcast, Logger: logger.Named("spool"),
	})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &backends{
		settings: store.NewRedis(rdb, cfg.RedisPrefix, logger.Named("store")),
		spool:    sp,
		redis:    rdb,
	}, nil
}

// Close closes the spool, then the Redis client; the settings backend is
// closed by the Store that owns it. A spool that could not commit its
// last acknowledgements returns an error: those deliveries are sent again
// after the next start.
func (b *backends) Close() error {
	err := b.spool.Close()
	if b.redis != nil {
		b.redis.Close()
	}
	return err
}

// pinger is a spool whose backend can be unreachable (redis).
type pinger interface {
	Ping(ctx context.Context) error
}
