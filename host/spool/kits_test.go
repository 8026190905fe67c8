package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/evorelay/evorelay/host/internal/redistest"
)

// The Spool contract suite: the tests of spool_test.go run against every
// backend (the way Watermill runs one suite against each pubsub). The
// backends may differ only where a kit's features say so.

// spoolKit opens one backend's storage, as often as a test asks.
type spoolKit struct {
	name string
	// open opens the spool on the kit's storage, closed when the test
	// ends unless the test closed it: each call sees what the earlier
	// ones stored, like a restart of the process.
	open func(t testing.TB, o Options) Spool
	// redis is the kit's server, for the tests of what only Redis does.
	redis *redistest.Server
	// prefix is the kit's key prefix (redis).
	prefix string
}

var spoolKits = []struct {
	name string
	kit  func(t testing.TB) spoolKit
}{{
	name: "embedded",
	kit: func(t testing.TB) spoolKit {
		dir := t.TempDir()
		return spoolKit{name: "embedded", open: func(t testing.TB, o Options) Spool { return open(t, dir, o) }}
	},
}, {
	name: "redis",
	kit: func(t testing.TB) spoolKit {
		srv := redistest.Start(t)
		prefix := fmt.Sprintf("test%d:", rand.Int64())
		return spoolKit{name: "redis", redis: srv, prefix: prefix, open: func(t testing.TB, o Options) Spool {
			return openRedis(t, srv, RedisOptions{Prefix: prefix, Limits: o.Limits, TakeoverAfter: time.Second})
		}}
	},
}}

// openRedis opens a Redis spool (one host), closed when the test ends
// unless the test closed it.
func openRedis(t testing.TB, srv *redistest.Server, o RedisOptions) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := OpenRedis(ctx, srv.Client(), o)
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

// fresh is a kit of the same backend on new storage, for subtests.
func (k spoolKit) fresh(t testing.TB) spoolKit {
	for _, b := range spoolKits {
		if b.name == k.name {
			return b.kit(t)
		}
	}
	panic("no kit " + k.name)
}

// forEachSpool runs test against each backend, on fresh storage.
func forEachSpool(t *testing.T, test func(t *testing.T, k spoolKit)) {
	for _, b := range spoolKits {
		t.Run(b.name, func(t *testing.T) { test(t, b.kit(t)) })
	}
}

// setNow replaces a spool's clock.
func setNow(s Spool, now func() time.Time) {
	switch s := s.(type) {
	case *Embedded:
		s.now = now
	case *Redis:
		s.now = now
	}
}

// forget calls Forget, which both backends have beside the interface.
func forget(s Spool, name string) error {
	return s.(interface{ Forget(string) error }).Forget(name)
}
