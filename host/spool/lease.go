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

// sink is one consumer's state. On disk: its position (every log sequence
// up to it is resolved), acked (sequences above the position already
// resolved, so a restart does not lease them again), the retry schedule
// and the dead letters. In memory only: what is leased.
type sink struct {
	name       string
	wake       chan struct{} // one pending signal: something may be leasable
	durable    atomic.Uint64 // position on disk; written under mu, read by the writer without it
	registered bool          // guarded by Embedded.mu

	mu          sync.Mutex
	next        uint64              // next log sequence to look at
	acked       map[uint64]struct{} // resolved log sequences above the position
	open        map[uint64]struct{} // leased or released log sequences
	order       []uint64            // those sequences (and some resolved ones) in lease order
	leases      map[string][]*lease // by delivery id; more than one only if ids repeat
	released    []*lease            // handed back, leased again first
	leasedRetry map[string]struct{} // retry keys leased or released
	retries     int                 // entries in the retry schedule
	dead        int                 // dead letters
}

// lease is one leased delivery and where it came from: a log sequence, or
// a key of the retry schedule.
type lease struct {
	d        Delivery
	seq      uint64
	retryKey string
}

func newSink(name string, pos uint64) *sink {
	s := &sink{
		name:        name,
		wake:        make(chan struct{}, 1),
		next:        pos + 1,
		acked:       make(map[uint64]struct{}),
		open:        make(map[uint64]struct{}),
		leases:      make(map[string][]*lease),
		leasedRetry: make(map[string]struct{}),
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
	if max < 1 {
		return nil, fmt.Errorf("spool: lease: max %d, want at least 1", max)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.calls.Done()
	s, err := e.sink(name, true)
	if err != nil {
		return nil, err
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		out, due, err := e.take(s, max)
		if err != nil {
			return nil, fmt.Errorf("spool: lease: %w", err)
		}
		if len(out) > 0 {
			return out, nil
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
			return nil, fmt.Errorf("spool: lease: %w", ctx.Err())
		case <-e.done:
			return nil, ErrClosed
		case <-s.wake:
		case <-fire:
		}
	}
}

// take leases what is available now. With nothing, it returns when the
// earliest retry not leased comes due (zero if there is none).
func (e *Embedded) take(s *sink, max int) (out []Delivery, due time.Time, err error) {
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
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(seqKey(next)); k != nil && !full(); k, v = c.Next() {
			seq := keySeq(k)
			next = seq + 1
			if _, done := s.acked[seq]; done {
				continue
			}
			ev, err := decodeEvent(v)
			if err != nil {
				return fmt.Errorf("log entry %d: %w", seq, err)
			}
			fresh = append(fresh, &lease{d: Delivery{Event: ev, Attempt: 1, FirstTry: now}, seq: seq})
			out = append(out, fresh[len(fresh)-1].d)
			bytes += len(ev.Envelope)
		}
		return retries(max)
	}
	if !full() {
		if err := e.db.View(read); err != nil {
			return nil, time.Time{}, err
		}
	}
	for i, l := range s.released[:nrel] {
		s.leases[l.d.ID] = append(s.leases[l.d.ID], l)
		s.released[i] = nil
	}
	s.released = s.released[nrel:]
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
	if full() {
		s.signal() // there may be more, for a concurrent Lease
	}
	if len(out) > 0 {
		due = time.Time{}
	}
	return out, due, nil
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

// Resolve settles leased deliveries in one durable commit. A result whose
// Outcome is not one of the five is an error, and nothing is resolved;
// ids not leased are skipped and reported with ErrNotLeased. A Retry with
// (or Defer) with a zero Due is due at once. When one id is leased more than once, each
// result resolves the oldest lease left.
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
	defer s.mu.Unlock()
	now := e.now()

	type item struct {
		r Result
		l *lease
	}
	items := make([]item, 0, len(results))
	taken := make(map[*lease]bool, len(results))
	var unknown []string
	for _, r := range results {
		var l *lease
		for _, x := range s.leases[r.ID] {
			if !taken[x] {
				l = x
				break
			}
		}
		if l == nil {
			unknown = append(unknown, r.ID)
			continue
		}
		taken[l] = true
		items = append(items, item{r, l})
	}

	// The plan: what changes on disk.
	var (
		delRetry   []string
		putRetry   [][2][]byte
		dead       []*record
		resolved   = make(map[uint64]bool)
		retryDelta int
	)
	for _, it := range items {
		l, r := it.l, it.r
		if r.Outcome == Release {
			continue
		}
		if l.retryKey != "" {
			delRetry = append(delRetry, l.retryKey)
			retryDelta--
		} else {
			resolved[l.seq] = true
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
		case Dead:
			dead = append(dead, &record{Event: l.d.Event, Attempts: l.d.Attempt, FirstTry: l.d.FirstTry, FailedAt: now, Reason: r.Reason})
		}
	}
	oldPos := s.durable.Load()
	pos := s.positionAfter(resolved)
	var ackPut, ackDel []uint64
	for seq := range resolved {
		if seq > pos {
			ackPut = append(ackPut, seq)
		}
	}
	if pos > oldPos {
		for seq := range s.acked {
			if seq <= pos {
				ackDel = append(ackDel, seq)
			}
		}
	}

	var deadAdded int
	if len(delRetry)+len(putRetry)+len(dead)+len(ackPut)+len(ackDel) > 0 || pos > oldPos {
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
			ab := sb.Bucket(bucketAcked)
			for _, seq := range ackPut {
				if err := ab.Put(seqKey(seq), nil); err != nil {
					return err
				}
			}
			for _, seq := range ackDel {
				if err := ab.Delete(seqKey(seq)); err != nil {
					return err
				}
			}
			if pos > oldPos {
				return sb.Put(keyPos, seqKey(pos))
			}
			return nil
		}
		if err := e.submit(context.Background(), o); err != nil {
			return fmt.Errorf("spool: resolve: %w", err)
		}
	}

	// Committed: now the memory.
	wake := false
	for _, it := range items {
		l := it.l
		s.dropLease(l.d.ID, l)
		switch it.r.Outcome {
		case Release:
			s.released = append(s.released, l)
			wake = true
			continue
		case Retry, Defer:
			wake = true
		}
		if l.retryKey != "" {
			delete(s.leasedRetry, l.retryKey)
		} else {
			delete(s.open, l.seq)
		}
	}
	s.retries += retryDelta
	e.scheduled.Add(int64(retryDelta))
	s.dead += deadAdded
	for _, seq := range ackDel {
		delete(s.acked, seq)
	}
	for _, seq := range ackPut {
		s.acked[seq] = struct{}{}
	}
	if pos > oldPos {
		s.durable.Store(pos)
	}
	i := 0
	for i < len(s.order) {
		if _, open := s.open[s.order[i]]; open {
			break
		}
		i++
	}
	s.order = s.order[i:]
	if wake {
		s.signal()
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: %s", ErrNotLeased, strings.Join(unknown, ", "))
	}
	return nil
}

// positionAfter is the position once the sequences in resolving are
// resolved: just below the lowest sequence still leased or released, or
// below the next one to lease.
func (s *sink) positionAfter(resolving map[uint64]bool) uint64 {
	pos := s.next - 1
	for _, seq := range s.order {
		if _, open := s.open[seq]; open && !resolving[seq] {
			pos = seq - 1
			break
		}
	}
	return max(pos, s.durable.Load())
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
