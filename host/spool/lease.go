package spool

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// leaseMaxBytes stops a Lease from gathering more envelopes once it holds
// this many bytes (it always returns at least one delivery).
const leaseMaxBytes = 32 << 20

// maxSkip bounds the events one pass of LeaseWhere settles unwanted, so
// that a sink that wants none of a long backlog does not hold its lock
// through all of it (the next pass goes on at once).
const maxSkip = 4096

// sink is one consumer's state. On disk: its position (every log sequence
// up to it is resolved), acked (sequences above the position already
// resolved, so a restart does not lease them again), the retry schedule
// and the dead letters. In memory only: what is leased, and what is
// resolved Done but not yet committed (see flush in writer.go).
//
// Two locks, never held across a commit: mu guards the leases, ackMu what
// is resolved. ackMu is taken under mu (by Resolve) or alone (by the
// writer), never the other way round, so the writer never waits for a
// Lease reading the log.
type sink struct {
	name       string
	wake       chan struct{} // one pending signal: something may be leasable
	durable    atomic.Uint64 // the position on disk; stored by the writer once committed
	registered bool          // guarded by Embedded.mu

	mu          sync.Mutex
	next        uint64              // next log sequence to look at
	skip        map[uint64]struct{} // sequences from next on that were acked on disk at Open
	open        map[uint64]struct{} // leased or released log sequences
	order       []uint64            // those sequences (and some resolved ones) in lease order, ascending
	leases      map[string][]*lease // by delivery id; more than one only if ids repeat
	released    []*lease            // handed back, leased again first
	leasedRetry map[string]struct{} // retry keys leased, released or being resolved
	retries     int                 // entries in the retry schedule
	dead        int                 // dead letters

	ackMu   sync.Mutex
	pos     uint64              // every log sequence up to it is resolved; durable ≤ pos
	acked   map[uint64]struct{} // resolved log sequences above pos
	unsaved []uint64            // resolved Done, not yet committed (some may be ≤ pos by now)
	saved   map[uint64]struct{} // the sequences in the acked bucket, all above durable
}

// lease is one leased delivery and where it came from: a log sequence, or
// a key of the retry schedule.
type lease struct {
	d        Delivery
	seq      uint64
	retryKey string
}

// newSink makes the state of a sink at pos, with the sequences above it
// that are acked on disk.
func newSink(name string, pos uint64, acked map[uint64]struct{}) *sink {
	s := &sink{
		name:        name,
		wake:        make(chan struct{}, 1),
		next:        pos + 1,
		skip:        make(map[uint64]struct{}, len(acked)),
		open:        make(map[uint64]struct{}),
		leases:      make(map[string][]*lease),
		leasedRetry: make(map[string]struct{}),
		pos:         pos,
		acked:       make(map[uint64]struct{}, len(acked)),
		saved:       make(map[uint64]struct{}, len(acked)),
	}
	for seq := range acked {
		s.skip[seq] = struct{}{}
		s.acked[seq] = struct{}{}
		s.saved[seq] = struct{}{}
	}
	s.durable.Store(pos)
	return s
}

func (s *sink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sink) bucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	b := tx.Bucket(bucketSinks).Bucket([]byte(s.name))
	if b == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownSink, s.name)
	}
	return b, nil
}

// Lease returns up to max deliveries for sink: first those released, then
// retries that are due, then the log in append order (a new event has
// Attempt 1). It blocks until there is at least one, ctx is done or the
// spool is closed; with a ctx already done it only polls. It stops early
// once the deliveries hold 32 MiB of envelopes.
func (e *Embedded) Lease(ctx context.Context, name string, max int) ([]Delivery, error) {
	ds, _, err := e.LeaseWhere(ctx, name, max, nil)
	return ds, err
}

// Want says which events of the log a sink wants, for LeaseWhere.
type Want interface {
	// Any is false when the sink wants no event at all (no instance has
	// enabled it): the log is then settled up to its end without being
	// read.
	Any() bool
	// Wants reports whether the sink wants instance's event.
	Wants(instance, event string) bool
}

// LeaseWhere is Lease, but an event of the log that want refuses (by its
// instance and event name) is settled Done on the spot instead of leased:
// it never leaves the spool, and it is counted in skipped. It costs a
// fraction of a lease and its Resolve, which is what a sink pays for
// every event of an instance that has not set it, and nothing at all
// while want wants no event. Nothing is delivered for those, so a crash
// before the position moves past them only has want asked again. It
// returns once it has leased or skipped something (or as Lease does). A
// nil want wants everything; retries are always leased.
func (e *Embedded) LeaseWhere(ctx context.Context, name string, max int, want Want) (ds []Delivery, skipped int, err error) {
	if max < 1 {
		return nil, 0, fmt.Errorf("spool: lease: max %d, want at least 1", max)
	}
	if err := e.enter(); err != nil {
		return nil, 0, err
	}
	defer e.calls.Done()
	s, err := e.sink(name, true)
	if err != nil {
		return nil, 0, err
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		out, due, n, err := e.take(s, max, want)
		skipped += n
		if err != nil {
			return nil, skipped, fmt.Errorf("spool: lease: %w", err)
		}
		if len(out) > 0 || skipped > 0 {
			return out, skipped, nil
		}
		var fire <-chan time.Time
		if !due.IsZero() {
			if timer == nil {
				timer = time.NewTimer(due.Sub(e.now()))
			} else {
				timer.Reset(due.Sub(e.now()))
			}
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, skipped, fmt.Errorf("spool: lease: %w", ctx.Err())
		case <-e.done:
			return nil, skipped, ErrClosed
		case <-s.wake:
		case <-fire:
		}
	}
}

// take leases what is available now, settling what want refuses (see
// LeaseWhere). With nothing, it returns when the earliest retry not leased
// comes due (zero if there is none).
func (e *Embedded) take(s *sink, max int, want Want) (out []Delivery, due time.Time, skipped int, err error) {
	// The end is read before want is asked: an event appended after
	// settings enabled the sink is above it, and is read.
	end := e.log.next() - 1
	none := want != nil && !want.Any()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := e.now()
	var bytes int
	full := func() bool { return len(out) >= max || bytes >= leaseMaxBytes }

	// Released first; taken for good only once the read below succeeds.
	nrel := 0
	for nrel < len(s.released) && !full() {
		d := s.released[nrel].d
		out = append(out, d)
		bytes += len(d.Envelope)
		nrel++
	}

	var fresh []*lease
	next := s.next
	read := func(tx *bolt.Tx) error {
		sb, err := s.bucket(tx)
		if err != nil {
			return err
		}
		// Due retries take at most half a lease before the log gets its
		// turn, so a backlog of retries never starves the events behind
		// them; what room the log leaves goes to more retries.
		rc := sb.Bucket(bucketRetry).Cursor()
		rk, rv := rc.First()
		retries := func(limit int) error {
			for n := 0; rk != nil && !full() && n < limit; rk, rv = rc.Next() {
				if _, leased := s.leasedRetry[string(rk)]; leased {
					continue
				}
				if d := retryDue(rk); d.After(now) {
					due = d
					rk = nil
					break
				}
				r, err := decodeRecord(rv)
				if err != nil {
					return fmt.Errorf("retry %x: %w", rk, err)
				}
				first := r.FirstTry
				if first.IsZero() {
					first = now
				}
				fresh = append(fresh, &lease{
					d:        Delivery{Event: r.Event, Attempt: r.Attempts + 1, FirstTry: first, LastError: r.Reason},
					retryKey: string(rk),
				})
				out = append(out, fresh[len(fresh)-1].d)
				bytes += len(r.Envelope)
				n++
			}
			return nil
		}
		if err := retries(max - max/2); err != nil {
			return err
		}
		if none && next <= end {
			skipped = int(end-next+1) - len(inRange(s.skip, next-1, end))
			next = end + 1
		}
		for !none && !full() && skipped < maxSkip {
			recs, err := e.log.read(next, max-len(out), int64(leaseMaxBytes-bytes))
			if err != nil {
				return err
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				seq := next
				next++
				if _, done := s.skip[seq]; done {
					continue
				}
				ev, err := decodeEvent(r)
				if err != nil {
					return fmt.Errorf("log entry %d: %w", seq, err)
				}
				if want != nil && !want.Wants(ev.Instance, ev.Event) {
					skipped++
					continue
				}
				fresh = append(fresh, &lease{d: Delivery{Event: ev, Attempt: 1, FirstTry: now}, seq: seq})
				out = append(out, fresh[len(fresh)-1].d)
				bytes += len(ev.Envelope)
			}
		}
		return retries(max)
	}
	if !full() {
		if err := e.db.View(read); err != nil {
			return nil, time.Time{}, 0, err
		}
	}
	for i, l := range s.released[:nrel] {
		s.leases[l.d.ID] = append(s.leases[l.d.ID], l)
		s.released[i] = nil
	}
	s.released = s.released[nrel:]
	forgetRange(s.skip, s.next-1, next-1)
	s.next = next
	for _, l := range fresh {
		s.leases[l.d.ID] = append(s.leases[l.d.ID], l)
		if l.retryKey != "" {
			s.leasedRetry[l.retryKey] = struct{}{}
		} else {
			s.open[l.seq] = struct{}{}
			s.order = append(s.order, l.seq)
		}
	}
	if skipped > 0 {
		// Nothing is open for what was skipped: the position may pass it.
		s.advance()
		e.ackSoon()
	}
	if full() || skipped >= maxSkip {
		s.signal() // there may be more, for a concurrent Lease
	}
	if len(out) > 0 {
		due = time.Time{}
	}
	return out, due, skipped, nil
}

func (s *sink) dropLease(id string, l *lease) {
	ls := s.leases[id]
	for i, x := range ls {
		if x == l {
			ls = append(ls[:i], ls[i+1:]...)
			break
		}
	}
	if len(ls) == 0 {
		delete(s.leases, id)
	} else {
		s.leases[id] = ls
	}
}

// Resolve settles leased deliveries. A result whose Outcome is not one of
// the five is an error, and nothing is resolved; ids not leased are
// skipped and reported with ErrNotLeased. A Retry (or Defer) with a zero
// Due is due at once. When one id is leased more than once, each result
// resolves the oldest lease left.
//
// Done for a delivery from the log, the outcome of nearly every result,
// is settled in memory at once (it is never leased again by this process)
// and committed by the writer with its next transaction, or on its own
// within AckDelay: Resolve does not wait for it. Release changes only
// memory. The other outcomes (Retry, Defer, Dead, and any outcome of a
// delivery leased from the retry schedule) are committed before Resolve
// returns; if that commit fails, those deliveries stay leased and the
// error says so, while the Done and Release among the results hold.
func (e *Embedded) Resolve(name string, results []Result) error {
	for _, r := range results {
		if r.Outcome < Done || r.Outcome > Defer {
			return fmt.Errorf("spool: resolve %s: unknown outcome %d", r.ID, r.Outcome)
		}
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.calls.Done()
	s, err := e.sink(name, true)
	if err != nil {
		return err
	}

	s.mu.Lock()
	now := e.now()
	var (
		settle  []settling // committed before returning
		unknown []string
		wake    bool
		lazy    bool
	)
	for _, r := range results {
		ls := s.leases[r.ID]
		if len(ls) == 0 {
			unknown = append(unknown, r.ID)
			continue
		}
		// Taken out at once: a concurrent Resolve of the same id finds
		// it gone, not half settled.
		l := ls[0]
		s.dropLease(r.ID, l)
		switch {
		case r.Outcome == Release:
			s.released = append(s.released, l)
			wake = true
		case r.Outcome == Done && l.retryKey == "":
			delete(s.open, l.seq)
			s.ackMu.Lock()
			s.acked[l.seq] = struct{}{}
			s.unsaved = append(s.unsaved, l.seq)
			s.ackMu.Unlock()
			lazy = true
		default:
			settle = append(settle, settling{r, l})
		}
	}
	if lazy {
		s.advance()
	}
	s.mu.Unlock()
	if lazy {
		e.ackSoon()
	}
	if wake {
		s.signal()
	}

	if len(settle) > 0 {
		if err := e.settle(s, settle, now); err != nil {
			return fmt.Errorf("spool: resolve: %w; those deliveries stay leased", err)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: %s", ErrNotLeased, strings.Join(unknown, ", "))
	}
	return nil
}

// settling is one result Resolve commits before it returns, and its lease.
type settling struct {
	r Result
	l *lease
}

// settle commits the results that move a delivery to the retry schedule
// or the dead letters, or take one out of the schedule, with the acked
// marks of their log sequences, and then updates the memory. s.mu is not
// held during the commit: the leases are out of s.leases meanwhile, and
// are put back if it fails.
func (e *Embedded) settle(s *sink, items []settling, now time.Time) error {
	var (
		delRetry   []string
		putRetry   [][2][]byte
		dead       []*record
		acked      []uint64
		retryDelta int
		wake       bool
	)
	for _, it := range items {
		l, r := it.l, it.r
		if l.retryKey != "" {
			delRetry = append(delRetry, l.retryKey)
			retryDelta--
		} else {
			acked = append(acked, l.seq)
		}
		switch r.Outcome {
		case Retry, Defer:
			due := r.Due
			if due.IsZero() {
				due = now
			}
			rec := &record{Event: l.d.Event, Attempts: l.d.Attempt, FirstTry: l.d.FirstTry, Reason: r.Reason}
			if r.Outcome == Defer {
				rec.Attempts, rec.Reason = l.d.Attempt-1, l.d.LastError
			}
			putRetry = append(putRetry, [2][]byte{retryKey(due, l.d.ID), encodeRecord(rec)})
			retryDelta++
			wake = true
		case Dead:
			dead = append(dead, &record{Event: l.d.Event, Attempts: l.d.Attempt, FirstTry: l.d.FirstTry, FailedAt: now, Reason: r.Reason})
		}
	}

	var deadAdded int
	o := &op{}
	for _, kv := range putRetry {
		o.size += int64(len(kv[1]))
	}
	o.apply = func(w *wtx) error {
		deadAdded = 0
		sb, err := s.bucket(w.tx)
		if err != nil {
			return err
		}
		rb := sb.Bucket(bucketRetry)
		for _, k := range delRetry {
			if err := rb.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for _, kv := range putRetry {
			if err := rb.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		for _, rec := range dead {
			n, err := putDead(sb, rec)
			if err != nil {
				return err
			}
			deadAdded += n
		}
		// Each sequence is still leased, so above the position on disk
		// and in memory: an acked mark, which the position passes later.
		ab := sb.Bucket(bucketAcked)
		for _, seq := range acked {
			if err := ab.Put(seqKey(seq), nil); err != nil {
				return err
			}
		}
		return nil
	}
	err := e.submit(context.Background(), o)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		for i := len(items) - 1; i >= 0; i-- {
			l := items[i].l
			s.leases[l.d.ID] = append([]*lease{l}, s.leases[l.d.ID]...)
		}
		return err
	}
	for _, it := range items {
		if it.l.retryKey != "" {
			delete(s.leasedRetry, it.l.retryKey)
		} else {
			delete(s.open, it.l.seq)
		}
	}
	s.retries += retryDelta
	e.scheduled.Add(int64(retryDelta))
	s.dead += deadAdded
	if len(acked) > 0 {
		s.ackMu.Lock()
		for _, seq := range acked {
			s.acked[seq] = struct{}{}
			s.saved[seq] = struct{}{}
		}
		s.ackMu.Unlock()
		s.advance()
		e.ackSoon() // the position may have moved
	}
	if wake {
		s.signal()
	}
	return nil
}

// advance moves the position in memory to just below the lowest log
// sequence still leased or released (or below the next one to lease), and
// forgets the acked marks it passes. Called with s.mu held.
func (s *sink) advance() {
	i := 0
	for i < len(s.order) {
		if _, open := s.open[s.order[i]]; open {
			break
		}
		i++
	}
	s.order = s.order[i:]
	pos := s.next - 1
	if len(s.order) > 0 {
		pos = s.order[0] - 1
	}
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	if pos <= s.pos {
		return
	}
	forgetRange(s.acked, s.pos, pos)
	s.pos = pos
}

// forgetRange deletes the sequences in (from, to] from set.
func forgetRange(set map[uint64]struct{}, from, to uint64) {
	for _, seq := range inRange(set, from, to) {
		delete(set, seq)
	}
}

// inRange returns the sequences of set in (from, to], walking whichever
// is shorter: the set or the range.
func inRange(set map[uint64]struct{}, from, to uint64) []uint64 {
	var out []uint64
	if uint64(len(set)) < to-from {
		for seq := range set {
			if seq > from && seq <= to {
				out = append(out, seq)
			}
		}
		return out
	}
	for seq := from + 1; seq <= to && len(out) < len(set); seq++ {
		if _, ok := set[seq]; ok {
			out = append(out, seq)
		}
	}
	return out
}

// putDead stores a dead letter, replacing one with the same id; it
// returns 1 for a new one, 0 for a replacement.
func putDead(sb *bolt.Bucket, rec *record) (int, error) {
	db, ib := sb.Bucket(bucketDead), sb.Bucket(bucketDeadIndex)
	ik := deadIndexKey(rec.Instance, rec.ID)
	added := 1
	if old := ib.Get(ik); old != nil {
		if err := db.Delete(deadKey(rec.Instance, keySeq(old), rec.ID)); err != nil {
			return 0, err
		}
		added = 0
	}
	failed := timeBytes(rec.FailedAt)
	if err := db.Put(deadKey(rec.Instance, failed, rec.ID), encodeRecord(rec)); err != nil {
		return 0, err
	}
	return added, ib.Put(ik, seqKey(failed))
}
