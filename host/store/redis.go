package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
)

// Redis is the Backend that several evorelay processes share: one hash
// holds every setting, and every write publishes the change on a channel
// that each process's Watch applies to its own memory. A Store in front
// of it still serves every read from memory.
//
// Layout, under the prefix (default "evorelay:"):
//
//	<prefix>settings          hash: "<sink>\x00<instance>" → settings JSON
//	<prefix>settings:changes  pub/sub channel: {"s":sink,"i":instance,"r":JSON or null}
//
// A write is HSET (or HDEL) and PUBLISH in one MULTI, so the channel
// carries the changes in the order the hash took them, and every process
// that applies them in that order ends with what the hash holds (its own
// changes come back too, and change nothing). A process that was cut off
// misses messages: when its subscription is made again (go-redis
// reconnects by itself), it reads the whole hash and applies the
// difference, so it cannot stay stale.
type Redis struct {
	rdb     redis.UniversalClient
	hash    string
	channel string
	log     hclog.Logger

	mu         sync.Mutex
	fn         func(sink, instance string, raw json.RawMessage)
	known      map[string]string // field → JSON, as last applied or loaded
	subscribed chan struct{}     // closed once the first subscription is made
	stop       context.CancelFunc
	ps         *redis.PubSub
	done       chan struct{}
}

var _ Backend = (*Redis)(nil)

// NewRedis returns the Redis backend on rdb, with keys under prefix. It
// does not own rdb: Close leaves it open.
func NewRedis(rdb redis.UniversalClient, prefix string, logger hclog.Logger) *Redis {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Redis{
		rdb:        rdb,
		hash:       prefix + "settings",
		channel:    prefix + "settings:changes",
		log:        logger,
		known:      make(map[string]string),
		subscribed: make(chan struct{}),
	}
}

// change is a message on the channel; R nil means deleted.
type redisChange struct {
	S string          `json:"s"`
	I string          `json:"i"`
	R json.RawMessage `json:"r"`
}

func field(sink, instance string) string { return sink + "\x00" + instance }

func splitField(f string) (sink, instance string, ok bool) {
	return strings.Cut(f, "\x00")
}

// Watch subscribes to the changes of other processes; fn hears each
// change once, in the order Redis took them.
func (r *Redis) Watch(fn func(sink, instance string, raw json.RawMessage)) {
	ctx, cancel := context.WithCancel(context.Background())
	ps := r.rdb.Subscribe(ctx, r.channel)
	r.mu.Lock()
	r.fn, r.stop, r.ps, r.done = fn, cancel, ps, make(chan struct{})
	r.mu.Unlock()
	go r.listen(ctx, ps)
}

// listen applies the channel's messages until Close. Each subscription
// after the first (a reconnect) is followed by a full resync.
func (r *Redis) listen(ctx context.Context, ps *redis.PubSub) {
	defer close(r.done)
	first := true
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// go-redis reconnects on the next Receive.
			r.log.Warn("settings changes: connection to Redis lost; retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			if first {
				first = false
				close(r.subscribed)
				continue
			}
			if err := r.resync(ctx); err != nil {
				r.log.Warn("settings changes: resync failed; it is tried again at the next reconnect", "error", err)
				continue
			}
			r.log.Info("settings resynced from Redis after a reconnect")
		case *redis.Message:
			var c redisChange
			if err := json.Unmarshal([]byte(m.Payload), &c); err != nil {
				r.log.Error("settings changes: unreadable message ignored", "error", err)
				continue
			}
			raw := string(c.R)
			if raw == "null" {
				raw = ""
			}
			r.apply(field(c.S, c.I), raw)
		}
	}
}

// apply hands a change to fn unless it is what is known already; raw ""
// means deleted.
func (r *Redis) apply(f, raw string) {
	r.mu.Lock()
	old, had := r.known[f]
	if raw == "" {
		delete(r.known, f)
	} else {
		r.known[f] = raw
	}
	fn := r.fn
	r.mu.Unlock()
	if (raw == "" && !had) || (raw != "" && had && old == raw) || fn == nil {
		return
	}
	sink, instance, ok := splitField(f)
	if !ok {
		return
	}
	if raw == "" {
		fn(sink, instance, nil)
		return
	}
	fn(sink, instance, json.RawMessage(raw))
}

// resync reads the whole hash and applies what differs from what is known.
func (r *Redis) resync(ctx context.Context) error {
	all, err := r.rdb.HGetAll(ctx, r.hash).Result()
	if err != nil {
		return err
	}
	r.mu.Lock()
	var gone []string
	for f := range r.known {
		if _, ok := all[f]; !ok {
			gone = append(gone, f)
		}
	}
	r.mu.Unlock()
	for _, f := range gone {
		r.apply(f, "")
	}
	for f, raw := range all {
		r.apply(f, raw)
	}
	return nil
}

// Load calls fn for every stored setting. With Watch called, it first
// waits for the subscription, so no change made after the hash is read
// can be missed.
func (r *Redis) Load(ctx context.Context, fn func(sink, instance string, raw json.RawMessage) error) error {
	r.mu.Lock()
	watching := r.fn != nil
	r.mu.Unlock()
	if watching {
		select {
		case <-r.subscribed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for Redis: %w", ctx.Err())
		}
	}
	all, err := r.rdb.HGetAll(ctx, r.hash).Result()
	if err != nil {
		return err
	}
	r.mu.Lock()
	for f, raw := range all {
		r.known[f] = raw
	}
	r.mu.Unlock()
	for f, raw := range all {
		sink, instance, ok := splitField(f)
		if !ok {
			continue
		}
		if err := fn(sink, instance, json.RawMessage(raw)); err != nil {
			return err
		}
	}
	return nil
}

// Put stores raw and publishes the change, in one transaction.
func (r *Redis) Put(ctx context.Context, sink, instance string, raw json.RawMessage) error {
	return r.write(ctx, sink, instance, raw)
}

// Delete removes the settings and publishes the change.
func (r *Redis) Delete(ctx context.Context, sink, instance string) error {
	return r.write(ctx, sink, instance, nil)
}

func (r *Redis) write(ctx context.Context, sink, instance string, raw json.RawMessage) error {
	if strings.Contains(sink, "\x00") || strings.Contains(instance, "\x00") {
		return errors.New("names must not contain NUL")
	}
	msg, err := json.Marshal(redisChange{S: sink, I: instance, R: raw})
	if err != nil {
		return err
	}
	f := field(sink, instance)
	// Memory is not touched here: the change comes back on the channel
	// in Redis's order, and known follows that.
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if raw == nil {
			p.HDel(ctx, r.hash, f)
		} else {
			p.HSet(ctx, r.hash, f, []byte(raw))
		}
		p.Publish(ctx, r.channel, msg)
		return nil
	})
	return err
}

// Close stops listening for changes; the client stays open.
func (r *Redis) Close() error {
	r.mu.Lock()
	stop, ps, done := r.stop, r.ps, r.done
	r.stop = nil
	r.mu.Unlock()
	if stop != nil {
		stop()
		_ = ps.Close() // ends a Receive in progress
		<-done
	}
	return nil
}
