package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/evorelay/evorelay/host/internal/redistest"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// The Backend contract suite: every test here runs against every backend
// (the way Watermill runs one suite against each pubsub), with features
// for what a backend may legitimately differ in.

// backendKit opens one backend's storage, as often as a test asks.
type backendKit struct {
	name string
	// open opens the backend on the kit's storage: each call sees what
	// the earlier ones stored. The test closes what it opens.
	open func(t *testing.T) Backend
	// shared: backends opened at once share the storage, and each hears
	// the others' changes through Watch.
	shared bool
	// redis is the kit's server, for tests of what only Redis does.
	redis *redistest.Server
}

var backendKits = []struct {
	name string
	kit  func(t *testing.T) backendKit
}{{
	name: "embedded",
	kit: func(t *testing.T) backendKit {
		dir := t.TempDir()
		return backendKit{name: "embedded", open: func(t *testing.T) Backend { return openEmbedded(t, dir) }}
	},
}, {
	name: "redis",
	kit: func(t *testing.T) backendKit {
		srv := redistest.Start(t)
		prefix := fmt.Sprintf("test%d:", rand.Int64())
		return backendKit{name: "redis", shared: true, redis: srv,
			open: func(t *testing.T) Backend { return NewRedis(srv.Client(), prefix, nil) }}
	},
}}

// forEachBackend runs test against each backend, on fresh storage.
func forEachBackend(t *testing.T, test func(t *testing.T, k backendKit)) {
	for _, b := range backendKits {
		t.Run(b.name, func(t *testing.T) { test(t, b.kit(t)) })
	}
}

// eventually waits for cond, failing the test after ten seconds: a
// change that never arrives fails instead of hanging.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	sinktest.Eventually(t, what, 10*time.Second, cond)
}

func TestBackendSetReopenPersists(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k backendKit) {
		s := mustOpen(t, k.open(t))
		mustSet(t, s, "webhook", "inst1", `{"url":"https://x","enabled":true,"events":["MESSAGES_UPSERT"]}`)
		mustSet(t, s, "webhook", "inst2", `{"enabled":false}`)
		mustSet(t, s, "rabbitmq", "inst1", `{"enabled":true}`)
		mustSet(t, s, "nats", "gone", `{"enabled":true}`)
		if err := s.Disable(context.Background(), "webhook", "inst1", "rejected by plugin"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(context.Background(), "nats", "gone"); err != nil {
			t.Fatal(err)
		}
		want := map[[2]string]Settings{}
		for _, k := range [][2]string{{"webhook", "inst1"}, {"webhook", "inst2"}, {"rabbitmq", "inst1"}} {
			st, _ := s.Get(k[0], k[1])
			want[k] = st
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s2 := mustOpen(t, k.open(t))
		defer s2.Close()
		for k, w := range want {
			got, ok := s2.Get(k[0], k[1])
			if !ok || !reflect.DeepEqual(got, w) {
				t.Errorf("%v after reopen = %+v, want %+v", k, got, w)
			}
		}
		if got, _ := s2.Get("webhook", "inst1"); got.Enabled || !strings.Contains(string(got.Raw), `"disabled_reason":"rejected by plugin"`) {
			t.Errorf("Disable not persisted: %s", got.Raw)
		}
		if _, ok := s2.Get("nats", "gone"); ok {
			t.Error("Delete not persisted")
		}
		if got := s2.Instances("webhook"); !reflect.DeepEqual(got, []string{"inst1", "inst2"}) {
			t.Errorf("Instances = %v", got)
		}
	})
}

func TestBackendCancelledContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k backendKit) {
		s := mustOpen(t, k.open(t))
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Set(ctx, "webhook", "i", json.RawMessage(`{"enabled":true}`)); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
		if _, ok := s.Get("webhook", "i"); ok {
			t.Error("memory shows settings that were not stored")
		}
	})
}

// Two Stores on one shared backend: what one sets, deletes or disables,
// the other serves from memory.
func TestBackendSharedChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k backendKit) {
		if !k.shared {
			t.Skipf("%s is one process's: nothing to share", k.name)
		}
		a, b := mustOpen(t, k.open(t)), mustOpen(t, k.open(t))
		defer a.Close()
		defer b.Close()
		mustSet(t, a, "webhook", "i", `{"enabled":true,"events":["CALL"]}`)
		eventually(t, "set on a, found on b", func() bool { st, ok := b.Get("webhook", "i"); return ok && st.Wants("CALL") })
		if err := b.Disable(context.Background(), "webhook", "i", "gone"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "disabled on b, off on a", func() bool { st, ok := a.Get("webhook", "i"); return ok && !st.Enabled })
		if err := a.Delete(context.Background(), "webhook", "i"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "deleted on a, gone on b", func() bool { _, ok := b.Get("webhook", "i"); return !ok })
		// Many quick writes from both sides end the same on both.
		for n := range 20 {
			mustSet(t, []*Store{a, b}[n%2], "nats", "i", fmt.Sprintf(`{"enabled":true,"events":["CALL"],"n":%d}`, n))
		}
		eventually(t, "both on the last write", func() bool {
			x, _ := a.Get("nats", "i")
			y, _ := b.Get("nats", "i")
			return string(x.Raw) == `{"enabled":true,"events":["CALL"],"n":19}` && string(y.Raw) == string(x.Raw)
		})
	})
}

// A Store that missed changes (its connection was cut) catches up when it
// reconnects: here the changes are written behind its back, without a
// message, and its subscription is killed.
func TestRedisResyncAfterReconnect(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k backendKit) {
		if k.redis == nil {
			t.Skipf("%s has no connection to lose", k.name)
		}
		s := mustOpen(t, k.open(t))
		defer s.Close()
		mustSet(t, s, "webhook", "stale", `{"enabled":true}`)
		eventually(t, "own change applied", func() bool { _, ok := s.Get("webhook", "stale"); return ok })
		be := s.backend.(*Redis)
		ctx := context.Background()
		c := k.redis.Client()
		if err := c.HDel(ctx, be.hash, field("webhook", "stale")).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.HSet(ctx, be.hash, field("webhook", "new"), `{"enabled":true,"events":["CALL"]}`).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "resync after reconnect", func() bool {
			_, stale := s.Get("webhook", "stale")
			st, ok := s.Get("webhook", "new")
			return !stale && ok && st.Wants("CALL")
		})
	})
}

// With Redis down, a write fails and memory keeps what was stored; once
// Redis is back, writes succeed again.
func TestRedisDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k backendKit) {
		if k.redis == nil {
			t.Skipf("%s cannot be down", k.name)
		}
		s := mustOpen(t, k.open(t))
		defer s.Close()
		mustSet(t, s, "webhook", "i", `{"enabled":true}`)
		k.redis.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := s.Set(ctx, "webhook", "i", json.RawMessage(`{"enabled":false}`)); err == nil {
			t.Fatal("Set with Redis down: no error")
		}
		if st, ok := s.Get("webhook", "i"); !ok || !st.Enabled {
			t.Fatalf("memory changed by a failed write: %+v", st)
		}
		k.redis.Restart()
		mustSet(t, s, "webhook", "i", `{"enabled":false}`)
		eventually(t, "write after restart", func() bool { st, _ := s.Get("webhook", "i"); return !st.Enabled })
	})
}
