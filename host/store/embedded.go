package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// EmbeddedFile is the name of the embedded backend's file in the data
// directory.
const EmbeddedFile = "settings.db"

// Embedded is the default Backend: one bbolt file in the data directory,
// with one bucket per sink, keyed by instance. bbolt commits are fsynced,
// so Put returns once the settings are on disk. The file is locked, so two
// processes cannot share it: Embedded is for a single evorelay.
type Embedded struct {
	db *bolt.DB
}

var _ Backend = (*Embedded)(nil)

// OpenEmbedded opens, or creates, dir/settings.db.
func OpenEmbedded(dir string) (*Embedded, error) {
	path := filepath.Join(dir, EmbeddedFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: it is locked by another process; is another evorelay using this data directory?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &Embedded{db: db}, nil
}

// Load calls fn for every stored setting.
func (e *Embedded) Load(ctx context.Context, fn func(sink, instance string, raw json.RawMessage) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(sink []byte, b *bolt.Bucket) error {
			return b.ForEach(func(instance, raw []byte) error {
				if raw == nil {
					return nil // a nested bucket: not ours
				}
				// bbolt's slices are valid only inside the transaction.
				return fn(string(sink), string(instance), append(json.RawMessage(nil), raw...))
			})
		})
	})
}

// Put stores raw for (sink, instance) and fsyncs.
func (e *Embedded) Put(ctx context.Context, sink, instance string, raw json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(sink))
		if err != nil {
			return err
		}
		return b.Put([]byte(instance), raw)
	})
}

// Delete removes (sink, instance) and fsyncs.
func (e *Embedded) Delete(ctx context.Context, sink, instance string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(sink))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(instance))
	})
}

// Watch does nothing: the file is locked to this process, so there are no
// other writers to hear from.
func (e *Embedded) Watch(func(sink, instance string, raw json.RawMessage)) {}

// Close closes the file.
func (e *Embedded) Close() error { return e.db.Close() }
