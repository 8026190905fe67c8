package spool

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The writer is the spool's group commit: one goroutine owns every write
// transaction. Append, Resolve, Register, Replay, Discard and Forget hand it
// an op and wait; it drains whatever ops are queued into one bbolt
// transaction and one fsync, then answers them all. While one commit is on
// its way to the disk the next batch gathers, so a lone caller pays no
// delay and many callers share each fsync; while callers are many, it
// also lingers a moment for more (lingerFor). (bbolt's own DB.Batch also
// groups, but waits up to MaxBatchDelay to fill a batch and re-runs a
// function whose batch failed; see doc.go for the measurement.)
//
// Every transaction also carries the sinks' Done marks that are only in
// memory so far (flush): Resolve does not wait for them. When nothing
// else commits, Resolve's signal on e.acks has the writer commit them on
// their own AckDelay later; Close commits what is left.

// While callers are many (the last commit held at least busyOps ops), the
// writer lingers up to lingerFor for as many as the last commit held: the
// callers it just answered are about to come back (64 engine connections
// posting one event each), and a commit of many costs about what a commit
// of few does. A lone caller never waits.
const (
	lingerFor = time.Millisecond
	busyOps   = 8
)

const (
	opQueue         = 4096     // ops that may wait for the writer
	maxOpsPerCommit = 1024     // ops in one transaction
	maxCommitBytes  = 32 << 20 // record bytes in one transaction (more if one op is bigger)
	truncateAfter   = 512      // resolved log entries that make the writer truncate
	truncateChunk   = 16384    // log entries deleted by one transaction, unless Append needs room

	// DefaultAckDelay is how long a Done may wait in memory for a commit
	// when Options.AckDelay is zero.
	DefaultAckDelay = 10 * time.Millisecond
	// ackRetry is how long the writer waits to commit Done marks again
	// after a commit of them failed.
	ackRetry = time.Second
)

// op is one caller's share of a write transaction. apply runs inside the
// shared transaction and may run again (in a new transaction) when another
// op of the same batch fails, so it must change nothing but the transaction
// and w: what an op changes in memory is done after the commit, in after
// (run by the writer) or by the caller once done answers.
type op struct {
	apply func(w *wtx) error
	after func()
	size  int64
	// res is apply's answer when it decided to write nothing (ErrFull):
	// such an op does not fail its batch.
	res  error
	done chan error
}

// counters describe the log. first is the oldest sequence in it, last the
// newest ever assigned (first == last+1 when the log is empty).
type counters struct {
	first, last uint64
	events      int
	bytes       int64
}

// wtx is the state of one write transaction.
type wtx struct {
	e        *Embedded
	tx       *bolt.Tx
	log      *bolt.Bucket
	c        counters // as they will be once the transaction commits
	appended bool
	// pos holds the positions this transaction writes (flush): they
	// commit with it, so its truncation may go up to them.
	pos map[*sink]uint64
}

// submit hands o to the writer and waits for its answer. ctx bounds the
// wait for a place in the queue only: once queued, the op is committed or
// fails on its own, and the caller learns which.
func (e *Embedded) submit(ctx context.Context, o *op) error {
	o.done = make(chan error, 1)
	select {
	case e.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-o.done
}

func (e *Embedded) writer() {
	defer close(e.writerDone)
	batch := make([]*op, 0, maxOpsPerCommit)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var fire <-chan time.Time // the timer's channel while it is set
	failing := false          // the last commit of Done marks failed
	last := 0                 // ops in the last commit
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		select {
		case o := <-e.ops:
			batch = append(batch[:0], o)
		case <-e.acks:
			if fire == nil {
				timer.Reset(e.ackDelay)
				fire = timer.C
			}
			continue
		case <-fire:
			fire = nil
			batch = batch[:0]
		case <-e.quit:
			timer.Stop()
			e.closeErr = e.commit(nil)
			return
		}
		if len(batch) > 0 {
			size := batch[0].size
			var until <-chan time.Time
			if last >= busyOps {
				linger.Reset(lingerFor)
				until = linger.C
			}
		gather:
			for len(batch) < maxOpsPerCommit && size < maxCommitBytes {
				if until == nil || len(batch) >= last {
					select {
					case o := <-e.ops:
						batch = append(batch, o)
						size += o.size
					default:
						break gather
					}
					continue
				}
				select {
				case o := <-e.ops:
					batch = append(batch, o)
					size += o.size
				case <-until:
					until = nil
					break gather
				}
			}
			if until != nil {
				linger.Stop()
			}
			last = len(batch)
		}
		err := e.commit(batch)
		clear(batch)
		switch {
		case err != nil:
			if !failing {
				e.logger.Error("committing acknowledged deliveries failed; trying again every second and with every commit", "error", err)
				failing = true
			}
			timer.Reset(ackRetry)
			fire = timer.C
		case failing:
			e.logger.Info("acknowledged deliveries committed again")
			failing = false
			fallthrough
		case fire != nil:
			// Whatever signalled was committed; a Resolve since signals
			// again.
			timer.Stop()
			fire = nil
		}
	}
}

// commit runs batch in one transaction, with the sinks' Done marks that
// are not yet on disk. An op whose apply fails is taken out and answered
// with its error, and the others are run again without it. It returns the
// error of committing the marks.
func (e *Embedded) commit(batch []*op) error {
	f, undo := e.flush()
	if f != nil {
		batch = append([]*op{f}, batch...)
	} else {
		batch = append([]*op(nil), batch...)
	}
	for len(batch) > 0 {
		e.logMu.Lock()
		w := &wtx{e: e, c: e.c}
		e.logMu.Unlock()
		failed := -1
		err := e.db.Update(func(tx *bolt.Tx) error {
			w.tx = tx
			w.log = tx.Bucket(bucketLog)
			w.log.FillPercent = 1 // keys only ever grow: pack the pages
			w.pos = nil
			for i, o := range batch {
				o.res = nil
				if err := o.apply(w); err != nil {
					failed = i
					return err
				}
			}
			if w.truncatable() >= truncateAfter {
				if err := w.truncate(truncateChunk); err != nil {
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			batch[failed].done <- fmt.Errorf("commit: %w", err)
			batch = append(batch[:failed], batch[failed+1:]...)
			continue
		}
		if err != nil {
			err = fmt.Errorf("commit: %w", err)
			for _, o := range batch {
				o.done <- err
			}
			break
		}
		e.logMu.Lock()
		e.c = w.c
		e.logMu.Unlock()
		for _, o := range batch {
			if o.after != nil && o.res == nil {
				o.after()
			}
		}
		if w.appended {
			e.wakeAll()
		}
		for _, o := range batch {
			o.done <- o.res
		}
		break
	}
	if f == nil {
		return nil
	}
	if err := <-f.done; err != nil {
		undo()
		return err
	}
	return nil
}

// flushing is what a flush writes for one sink.
type flushing struct {
	s        *sink
	pos      uint64   // the position to store, if above durable
	put, del []uint64 // acked marks to store and to delete
	taken    []uint64 // the sink's unsaved marks this flush took
}

// flush makes the op that commits every sink's Done marks that are in
// memory only: the position, which may have moved past them, and an acked
// mark for each one above it; nil when there is nothing to commit. If the
// op fails, undo hands the marks back, to be committed later.
func (e *Embedded) flush() (o *op, undo func()) {
	e.mu.RLock()
	sinks := make([]*sink, 0, len(e.sinks))
	for _, s := range e.sinks {
		sinks = append(sinks, s)
	}
	e.mu.RUnlock()
	var fs []flushing
	for _, s := range sinks {
		s.ackMu.Lock()
		durable := s.durable.Load()
		if s.pos > durable || len(s.unsaved) > 0 {
			f := flushing{s: s, pos: s.pos, taken: s.unsaved}
			s.unsaved = nil
			for _, seq := range f.taken {
				if seq > f.pos {
					f.put = append(f.put, seq)
				}
			}
			if f.pos > durable && len(s.saved) > 0 {
				f.del = inRange(s.saved, durable, f.pos)
			}
			fs = append(fs, f)
		}
		s.ackMu.Unlock()
	}
	if len(fs) == 0 {
		return nil, nil
	}
	o = &op{done: make(chan error, 1)}
	o.apply = func(w *wtx) error {
		for _, f := range fs {
			sb, err := f.s.bucket(w.tx)
			if err != nil {
				return err
			}
			ab := sb.Bucket(bucketAcked)
			for _, seq := range f.put {
				if err := ab.Put(seqKey(seq), nil); err != nil {
					return err
				}
			}
			for _, seq := range f.del {
				if err := ab.Delete(seqKey(seq)); err != nil {
					return err
				}
			}
			if f.pos > f.s.durable.Load() {
				if err := sb.Put(keyPos, seqKey(f.pos)); err != nil {
					return err
				}
				if w.pos == nil {
					w.pos = make(map[*sink]uint64)
				}
				w.pos[f.s] = f.pos
			}
		}
		return nil
	}
	o.after = func() {
		for _, f := range fs {
			s := f.s
			s.ackMu.Lock()
			for _, seq := range f.put {
				s.saved[seq] = struct{}{}
			}
			for _, seq := range f.del {
				delete(s.saved, seq)
			}
			if f.pos > s.durable.Load() {
				s.durable.Store(f.pos)
			}
			s.ackMu.Unlock()
		}
	}
	undo = func() {
		for _, f := range fs {
			f.s.ackMu.Lock()
			f.s.unsaved = append(f.taken, f.s.unsaved...)
			f.s.ackMu.Unlock()
		}
	}
	return o, undo
}

// fits reports whether n more events of size bytes stay within the limits.
// The events limit counts the log and every sink's retry schedule (a
// destination that is down for long fills the schedule, not the log); the
// bytes limit counts the log.
func (w *wtx) fits(n int, size int64) bool {
	l := w.e.limits
	if l.Events > 0 && w.c.events+int(w.e.scheduled.Load())+n > l.Events {
		return false
	}
	if l.Bytes > 0 && w.c.bytes+size > l.Bytes {
		return false
	}
	return true
}

// room makes room for n events of size bytes if truncating the log can,
// and reports whether they fit.
func (w *wtx) room(n int, size int64) (bool, error) {
	if w.fits(n, size) {
		return true, nil
	}
	if w.truncatable() == 0 {
		return false, nil
	}
	if err := w.truncate(-1); err != nil {
		return false, err
	}
	return w.fits(n, size), nil
}

// truncatable counts the log entries every known sink is past.
func (w *wtx) truncatable() uint64 {
	min, ok := w.minPosition()
	if !ok || min < w.c.first {
		return 0
	}
	return min - w.c.first + 1
}

// truncate deletes up to max (all if max < 0) of the log entries every
// known sink is past.
func (w *wtx) truncate(max int) error {
	min, ok := w.minPosition()
	if !ok {
		return nil
	}
	// Collect first, then delete: re-seeking the first key after each
	// delete walks every leaf emptied so far in this transaction, which
	// made a truncation quadratic.
	var doomed [][]byte
	var bytes int64
	c := w.log.Cursor()
	k, v := c.First()
	for ; k != nil && keySeq(k) <= min && (max < 0 || len(doomed) < max); k, v = c.Next() {
		doomed = append(doomed, append([]byte(nil), k...))
		bytes += int64(len(v))
	}
	next := k
	if next != nil {
		next = append([]byte(nil), next...)
	}
	for _, key := range doomed {
		if err := w.log.Delete(key); err != nil {
			return err
		}
	}
	n := len(doomed)
	w.c.events -= n
	w.c.bytes -= bytes
	if next != nil {
		w.c.first = keySeq(next)
	} else {
		w.c.first = w.c.last + 1
	}
	if n > 0 {
		w.e.logger.Trace("truncated the log", "deleted", n, "first", w.c.first)
	}
	return nil
}

// minPosition is the lowest position of the known sinks, those
// registered by this process or an earlier one: the one on disk, or the
// one this transaction writes; false when there are none. A position only
// in memory never counts, so the log is never cut under a Done that a
// crash could still lose.
func (w *wtx) minPosition() (uint64, bool) {
	w.e.mu.RLock()
	defer w.e.mu.RUnlock()
	var min uint64
	ok := false
	for _, s := range w.e.sinks {
		p := s.durable.Load()
		if q, writes := w.pos[s]; writes && q > p {
			p = q
		}
		if !ok || p < min {
			min, ok = p, true
		}
	}
	return min, ok
}

// ackSoon tells the writer that Done marks wait in memory: it commits them
// with its next transaction, or on their own within AckDelay.
func (e *Embedded) ackSoon() {
	select {
	case e.acks <- struct{}{}:
	default:
	}
}
