package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// streamCache remembers, for a short while, which stream covers a subject
// ("" for none), so that a publish does not ask the server every time and
// a stream created or deleted is noticed within the TTL.
type streamCache struct {
	js  jetstream.JetStream
	ttl time.Duration

	mu sync.Mutex
	m  map[string]streamEntry
}

type streamEntry struct {
	stream  string
	expires time.Time
}

// maxCached bounds the cache: past it, expired entries are dropped.
const maxCached = 10000

// newStreamCache returns an empty cache; set js before the first lookup.
func newStreamCache(ttl time.Duration) *streamCache {
	return &streamCache{ttl: ttl, m: map[string]streamEntry{}}
}

// lookup returns the stream that covers subject, or "" when none does
// (or the server has no JetStream). Any other failure is an error: the
// delivery is retried rather than sent without an acknowledgement.
func (c *streamCache) lookup(ctx context.Context, subject string) (string, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[subject]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.stream, nil
	}
	stream, err := c.js.StreamNameBySubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		stream = ""
	case err != nil:
		return "", fmt.Errorf("nats: ask which stream covers %s: %w", subject, err)
	}
	c.mu.Lock()
	if len(c.m) >= maxCached {
		for k, v := range c.m {
			if now.After(v.expires) {
				delete(c.m, k)
			}
		}
	}
	c.m[subject] = streamEntry{stream: stream, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return stream, nil
}

// forget drops what is known of subject.
func (c *streamCache) forget(subject string) {
	c.mu.Lock()
	delete(c.m, subject)
	c.mu.Unlock()
}

// clear drops everything, after a reconnect.
func (c *streamCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
