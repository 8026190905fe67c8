package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Keys Disable adds to the stored settings.
const (
	// DisabledReasonKey holds why the host disabled the settings.
	DisabledReasonKey = "disabled_reason"
	// DisabledAtKey holds when, as RFC 3339 UTC.
	DisabledAtKey = "disabled_at"
)

// Store is the settings of every sink's instances, held in memory in front
// of a Backend. It is safe for concurrent use.
type Store struct {
	backend Backend
	log     hclog.Logger

	// wmu serializes writes, local and remote, across the backend write
	// and the memory update, so both see them in the same order.
	wmu sync.Mutex
	// loading is true until Open has loaded the backend; remote changes
	// that arrive meanwhile wait in pending. Both are guarded by wmu.
	loading bool
	pending []change

	// mu guards m, which Get reads.
	mu   sync.RWMutex
	m    map[string]map[string]Settings // sink → instance → settings
	keys map[string]Key                 // id → instance-scoped API key
}

// change is a remote change; raw nil means deleted.
type change struct {
	sink, instance string
	raw            json.RawMessage
}

// Option configures a Store.
type Option func(*Store)

// WithLogger sets where the Store reports stored settings it cannot read
// (they are skipped); the default is hclog's default logger.
func WithLogger(l hclog.Logger) Option {
	return func(s *Store) { s.log = l }
}

// Open loads every stored setting from b into memory and returns a Store
// that owns b: Store.Close closes it. When Open fails, b is the caller's
// to close. A stored setting that does not parse is logged and skipped, so
// one bad record does not keep every instance from starting.
func Open(ctx context.Context, b Backend, opts ...Option) (*Store, error) {
	s := &Store{
		backend: b,
		log:     hclog.L().Named("store"),
		loading: true,
		m:       make(map[string]map[string]Settings),
		keys:    make(map[string]Key),
	}
	for _, o := range opts {
		o(s)
	}
	b.Watch(s.remote)
	err := b.Load(ctx, func(sink, instance string, raw json.RawMessage) error {
		if sink == KeysSink {
			s.loadKey(instance, raw)
			return nil
		}
		st, err := Parse(raw)
		if err != nil {
			s.log.Error("stored settings skipped", "sink", sink, "instance", instance, "error", err)
			return nil
		}
		s.put(sink, instance, st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
	s.wmu.Lock()
	s.loading = false
	for _, c := range s.pending {
		s.apply(c)
	}
	s.pending = nil
	s.wmu.Unlock()
	return s, nil
}

// Get returns the settings of (sink, instance) from memory. The Settings
// share memory with the Store: do not modify Raw or Events.
func (s *Store) Get(sink, instance string) (Settings, bool) {
	s.mu.RLock()
	st, ok := s.m[sink][instance]
	s.mu.RUnlock()
	return st, ok
}

// AnyEnabled reports whether some instance has enabled settings for sink:
// when none has, the sink wants no event at all.
func (s *Store) AnyEnabled(sink string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, st := range s.m[sink] {
		if st.Enabled {
			return true
		}
	}
	return false
}

// Instances returns, sorted, the instances that have settings for sink,
// enabled or not.
func (s *Store) Instances(sink string) []string {
	s.mu.RLock()
	out := make([]string, 0, len(s.m[sink]))
	for i := range s.m[sink] {
		out = append(out, i)
	}
	s.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Set stores raw, a JSON object, as the settings of (sink, instance) and
// returns them as stored. The backend is written first; memory only once
// that has succeeded. When the new settings are enabled, the keys Disable
// adds (DisabledReasonKey, DisabledAtKey) are dropped: they would be
// stale. raw is copied.
func (s *Store) Set(ctx context.Context, sink, instance string, raw json.RawMessage) (Settings, error) {
	if sink == KeysSink {
		return Settings{}, fmt.Errorf("store: set: sink name %q is reserved for API keys", sink)
	}
	if err := checkNames(sink, instance); err != nil {
		return Settings{}, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return Settings{}, fmt.Errorf("store: set %s/%s: %w", sink, instance, err)
	}
	st, err := Parse(buf.Bytes())
	if err != nil {
		return Settings{}, fmt.Errorf("store: set %s/%s: %w", sink, instance, err)
	}
	if st.Enabled {
		if st, err = dropDisabledKeys(st); err != nil {
			return Settings{}, fmt.Errorf("store: set %s/%s: %w", sink, instance, err)
		}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.backend.Put(ctx, sink, instance, st.Raw); err != nil {
		return Settings{}, fmt.Errorf("store: set %s/%s: %w", sink, instance, err)
	}
	s.put(sink, instance, st)
	return st, nil
}

// Disable turns the settings of (sink, instance) off, recording reason and
// the time in the stored JSON (DisabledReasonKey, DisabledAtKey), for
// example when the plugin rejects them for good. It returns an error
// wrapping ErrNotFound when there are none.
func (s *Store) Disable(ctx context.Context, sink, instance, reason string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	cur, ok := s.Get(sink, instance)
	if !ok {
		return fmt.Errorf("store: disable %s/%s: %w", sink, instance, ErrNotFound)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(cur.Raw, &obj); err != nil {
		return fmt.Errorf("store: disable %s/%s: %w", sink, instance, err)
	}
	reasonJSON, err := json.Marshal(reason)
	if err != nil {
		return fmt.Errorf("store: disable %s/%s: %w", sink, instance, err)
	}
	obj["enabled"] = json.RawMessage("false")
	obj[DisabledReasonKey] = reasonJSON
	obj[DisabledAtKey] = json.RawMessage(`"` + time.Now().UTC().Format(time.RFC3339) + `"`)
	raw, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("store: disable %s/%s: %w", sink, instance, err)
	}
	st, err := Parse(raw)
	if err != nil {
		return fmt.Errorf("store: disable %s/%s: %w", sink, instance, err)
	}
	if err := s.backend.Put(ctx, sink, instance, st.Raw); err != nil {
		return fmt.Errorf("store: disable %s/%s: %w", sink, instance, err)
	}
	s.put(sink, instance, st)
	return nil
}

// Delete removes the settings of (sink, instance), from the backend first.
// It is not an error when there are none.
func (s *Store) Delete(ctx context.Context, sink, instance string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.backend.Delete(ctx, sink, instance); err != nil {
		return fmt.Errorf("store: delete %s/%s: %w", sink, instance, err)
	}
	s.del(sink, instance)
	return nil
}

// Close closes the backend.
func (s *Store) Close() error {
	if err := s.backend.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// remote is the Backend's Watch callback: another replica changed
// (sink, instance).
func (s *Store) remote(sink, instance string, raw json.RawMessage) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	c := change{sink, instance, raw}
	if s.loading {
		s.pending = append(s.pending, c)
		return
	}
	s.apply(c)
}

// apply puts a remote change into memory; wmu is held.
func (s *Store) apply(c change) {
	if c.sink == KeysSink {
		s.loadKey(c.instance, c.raw)
		return
	}
	if c.raw == nil {
		s.del(c.sink, c.instance)
		return
	}
	st, err := Parse(c.raw)
	if err != nil {
		// Keep what we had: the previous settings were valid.
		s.log.Error("changed settings ignored", "sink", c.sink, "instance", c.instance, "error", err)
		return
	}
	s.put(c.sink, c.instance, st)
}

func (s *Store) put(sink, instance string, st Settings) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.m[sink]
	if in == nil {
		in = make(map[string]Settings)
		s.m[sink] = in
	}
	in[instance] = st
}

func (s *Store) del(sink, instance string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m[sink], instance)
	if len(s.m[sink]) == 0 {
		delete(s.m, sink)
	}
}

// checkNames refuses names the backends cannot key by.
func checkNames(sink, instance string) error {
	if sink == "" || instance == "" {
		return errors.New("store: set: sink and instance names must not be empty")
	}
	return nil
}

// dropDisabledKeys removes the keys Disable adds, if st has any.
func dropDisabledKeys(st Settings) (Settings, error) {
	if !bytes.Contains(st.Raw, []byte(`"disabled_`)) {
		return st, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(st.Raw, &obj); err != nil {
		return st, err
	}
	_, a := obj[DisabledReasonKey]
	_, b := obj[DisabledAtKey]
	if !a && !b {
		return st, nil
	}
	delete(obj, DisabledReasonKey)
	delete(obj, DisabledAtKey)
	raw, err := json.Marshal(obj)
	if err != nil {
		return st, err
	}
	return Parse(raw)
}
