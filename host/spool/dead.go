package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DeadLetters lists sink's dead letters for instance, newest first (ties
// by id, descending). limit 0 means all. before is "" for the newest, the
// id of a dead letter to list those after it (the last id of the previous
// page), or an RFC 3339 time to list those that failed before it.
func (e *Embedded) DeadLetters(name, instance string, limit int, before string) ([]DeadLetter, error) {
	if limit < 0 {
		return nil, fmt.Errorf("spool: dead letters: negative limit %d", limit)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.calls.Done()
	s, err := e.sink(name, false)
	if err != nil {
		return nil, err
	}
	prefix := instancePrefix(instance)
	var out []DeadLetter
	err = e.db.View(func(tx *bolt.Tx) error {
		sb, err := s.bucket(tx)
		if err != nil {
			return err
		}
		// upper is the first key not to list.
		upper := binary.BigEndian.AppendUint64(bytes.Clone(prefix), math.MaxUint64)
		if before != "" {
			if f := sb.Bucket(bucketDeadIndex).Get(deadIndexKey(instance, before)); f != nil {
				upper = deadKey(instance, keySeq(f), before)
			} else if t, err := time.Parse(time.RFC3339Nano, before); err == nil {
				upper = binary.BigEndian.AppendUint64(bytes.Clone(prefix), timeBytes(t))
			} else {
				return fmt.Errorf("%w: %q is neither a dead letter of %q nor an RFC 3339 time", ErrBadCursor, before, instance)
			}
		}
		c := sb.Bucket(bucketDead).Cursor()
		k, v := c.Seek(upper)
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && (limit == 0 || len(out) < limit); k, v = c.Prev() {
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("dead letter %x: %w", k, err)
			}
			out = append(out, DeadLetter{
				Sink:     name,
				ID:       r.ID,
				Instance: r.Instance,
				Event:    r.Event.Event,
				Attempts: r.Attempts,
				Reason:   r.Reason,
				FirstTry: r.FirstTry,
				FailedAt: r.FailedAt,
				Envelope: r.Envelope,
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: dead letters: %w", err)
	}
	return out, nil
}

// Replay moves dead letters back to the retry schedule, due now, keeping
// their ids; no ids means all of instance's. A replayed delivery starts
// over: its next Attempt is 1, and its LastError is the reason it died.
func (e *Embedded) Replay(name, instance string, ids []string) (int, error) {
	n, err := e.moveDead(name, instance, ids, true)
	if err != nil {
		return 0, fmt.Errorf("spool: replay: %w", err)
	}
	return n, nil
}

// Discard deletes dead letters; no ids means all of instance's.
func (e *Embedded) Discard(name, instance string, ids []string) (int, error) {
	n, err := e.moveDead(name, instance, ids, false)
	if err != nil {
		return 0, fmt.Errorf("spool: discard: %w", err)
	}
	return n, nil
}

// moveDead deletes dead letters, and with replay schedules them again.
func (e *Embedded) moveDead(name, instance string, ids []string, replay bool) (int, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.calls.Done()
	s, err := e.sink(name, false)
	if err != nil {
		return 0, err
	}
	now := e.now()
	var moved int
	o := &op{}
	o.apply = func(w *wtx) error {
		moved = 0
		sb, err := s.bucket(w.tx)
		if err != nil {
			return err
		}
		db, ib, rb := sb.Bucket(bucketDead), sb.Bucket(bucketDeadIndex), sb.Bucket(bucketRetry)
		var keys [][]byte // dead keys to move
		if len(ids) == 0 {
			prefix := instancePrefix(instance)
			c := db.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
		} else {
			seen := make(map[string]bool, len(ids))
			for _, id := range ids {
				if seen[id] {
					continue
				}
				seen[id] = true
				if f := ib.Get(deadIndexKey(instance, id)); f != nil {
					keys = append(keys, deadKey(instance, keySeq(f), id))
				}
			}
		}
		for _, k := range keys {
			v := db.Get(k)
			if v == nil {
				continue
			}
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("dead letter %x: %w", k, err)
			}
			if replay {
				r.Attempts, r.FirstTry, r.FailedAt = 0, time.Time{}, time.Time{}
				if err := rb.Put(retryKey(now, r.ID), encodeRecord(&r)); err != nil {
					return err
				}
			}
			if err := db.Delete(k); err != nil {
				return err
			}
			if err := ib.Delete(deadIndexKey(instance, r.ID)); err != nil {
				return err
			}
			moved++
		}
		return nil
	}
	if err := e.submit(context.Background(), o); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead -= moved
	if replay && moved > 0 {
		s.retries += moved
		e.scheduled.Add(int64(moved))
		s.signal()
	}
	return moved, nil
}
