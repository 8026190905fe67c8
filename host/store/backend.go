package store

import (
	"context"
	"encoding/json"
)

// Backend persists settings for a Store. It holds one JSON object per
// (sink, instance); the Store does all parsing and caching.
//
// Put and Delete return once the change is durable. A Backend is used by
// one Store, and the Store serializes its writes.
type Backend interface {
	// Load calls fn for every stored setting; raw is fn's to keep. An
	// error from fn stops Load and is returned.
	Load(ctx context.Context, fn func(sink, instance string, raw json.RawMessage) error) error
	// Put stores raw as the settings of (sink, instance), replacing any.
	Put(ctx context.Context, sink, instance string, raw json.RawMessage) error
	// Delete removes the settings of (sink, instance); it is not an error
	// when there are none.
	Delete(ctx context.Context, sink, instance string) error
	// Watch registers fn to be told of changes made by other processes
	// sharing the backend (replicas): raw is the new settings, or nil when
	// they were deleted; raw is fn's to keep. It is called once, before
	// Load. A backend that has no other writers (Embedded) never calls fn.
	// fn must not be called from inside Put or Delete on the caller's
	// goroutine: the Store holds its write lock there.
	Watch(fn func(sink, instance string, raw json.RawMessage))
	// Close releases the backend.
	Close() error
}
