package spool

import (
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// Oldest returns, for each sink with something pending, when the oldest
// event it has not settled was accepted: the first unresolved event of
// the log at its position, or an event in its retry schedule, whichever
// is older (leased ones included). It is what an operator alerts on: a
// sink that fails everything keeps its log position moving, but its
// retries age.
//
// The time is the one an event's id carries: a ULID, as the host assigns
// on ingest; events whose id is not a ULID are not counted. It reads the
// retry schedule's keys (not their records), so it costs a scan of every
// sink's schedule: call it per scrape, not per delivery.
func (e *Embedded) Oldest() (map[string]time.Time, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.calls.Done()
	e.mu.RLock()
	sinks := make([]*sink, 0, len(e.sinks))
	for _, s := range e.sinks {
		sinks = append(sinks, s)
	}
	e.mu.RUnlock()
	out := make(map[string]time.Time, len(sinks))
	err := e.db.View(func(tx *bolt.Tx) error {
		for _, s := range sinks {
			s.ackMu.Lock()
			pos := s.pos
			acked := make(map[uint64]struct{}, len(s.acked))
			for seq := range s.acked {
				acked[seq] = struct{}{}
			}
			s.ackMu.Unlock()

			var oldest time.Time
			older := func(id string) {
				u, err := ulid.ParseStrict(id)
				if err != nil {
					return
				}
				if t := ulid.Time(u.Time()); oldest.IsZero() || t.Before(oldest) {
					oldest = t
				}
			}
			// The log: the first sequence above the position not resolved.
			seq := pos + 1
			for {
				if _, done := acked[seq]; done {
					seq++
					continue
				}
				recs, err := e.log.read(seq, 1, 0)
				if err != nil {
					return err
				}
				if len(recs) > 0 {
					if ev, err := decodeEvent(recs[0]); err == nil {
						older(ev.ID)
					}
				}
				break
			}
			// The retry schedule: keys are due time + id.
			if sb := tx.Bucket(bucketSinks).Bucket([]byte(s.name)); sb != nil {
				if rb := sb.Bucket(bucketRetry); rb != nil {
					rc := rb.Cursor()
					for k, _ := rc.First(); k != nil; k, _ = rc.Next() {
						if len(k) > 8 {
							older(string(k[8:]))
						}
					}
				}
			}
			if !oldest.IsZero() {
				out[s.name] = oldest
			}
		}
		return nil
	})
	return out, err
}
