package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// KeysSink is the reserved sink name under which the Backend keeps the
// instance-scoped API keys, one record per key id. No plugin can take it:
// a sink name starts with a letter (sinkv1.CheckName).
const KeysSink = "_keys"

// Key is one instance-scoped API key as stored: never the key itself, only
// its SHA-256.
type Key struct {
	ID       string    `json:"-"`
	Instance string    `json:"instance"`
	Hash     []byte    `json:"hash"` // SHA-256 of the key
	Created  time.Time `json:"created"`
}

// PutKey stores k (a new key, or one replacing the record of its id).
func (s *Store) PutKey(ctx context.Context, k Key) error {
	if k.ID == "" || k.Instance == "" || len(k.Hash) == 0 {
		return fmt.Errorf("store: put key: id, instance and hash are required")
	}
	raw, err := json.Marshal(k)
	if err != nil {
		return fmt.Errorf("store: put key %s: %w", k.ID, err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.backend.Put(ctx, KeysSink, k.ID, raw); err != nil {
		return fmt.Errorf("store: put key %s: %w", k.ID, err)
	}
	s.putKey(k)
	return nil
}

// DeleteKey revokes instance's key id. It returns an error wrapping
// ErrNotFound when instance has no such key.
func (s *Store) DeleteKey(ctx context.Context, instance, id string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if k, ok := s.Key(id); !ok || k.Instance != instance {
		return fmt.Errorf("store: delete key %s: %w", id, ErrNotFound)
	}
	if err := s.backend.Delete(ctx, KeysSink, id); err != nil {
		return fmt.Errorf("store: delete key %s: %w", id, err)
	}
	s.delKey(id)
	return nil
}

// Key returns the key with id, if there is one.
func (s *Store) Key(id string) (Key, bool) {
	s.mu.RLock()
	k, ok := s.keys[id]
	s.mu.RUnlock()
	return k, ok
}

// Keys returns instance's keys, oldest first.
func (s *Store) Keys(instance string) []Key {
	s.mu.RLock()
	out := []Key{}
	for _, k := range s.keys {
		if k.Instance == instance {
			out = append(out, k)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// loadKey indexes a stored key record; raw nil means it was deleted.
func (s *Store) loadKey(id string, raw json.RawMessage) {
	if raw == nil {
		s.delKey(id)
		return
	}
	var k Key
	if err := json.Unmarshal(raw, &k); err != nil || k.Instance == "" || len(k.Hash) == 0 {
		s.log.Error("stored API key skipped", "id", id, "error", err)
		return
	}
	k.ID = id
	s.putKey(k)
}

func (s *Store) putKey(k Key) {
	s.mu.Lock()
	s.keys[k.ID] = k
	s.mu.Unlock()
}

func (s *Store) delKey(id string) {
	s.mu.Lock()
	delete(s.keys, id)
	s.mu.Unlock()
}
