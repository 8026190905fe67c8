package spool

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The writer is the spool's group commit: one goroutine owns every write.
// Append, Resolve, Register, Replay, Discard and Forget hand it an op and
// wait; it drains whatever ops are queued into one commit (one bbolt
// transaction for what is not an Append, one write and one fdatasync of
// the journal for the Appends), then answers them all. While one commit
// is on its way to the disk the next batch gathers, so a lone caller pays
// no delay and many callers share each fsync; while callers are many, it
// also lingers a moment for more (lingerFor). (bbolt's own DB.Batch also
// groups, but waits up to MaxBatchDelay to fill a batch and re-runs a
// function whose batch failed; see doc.go for the measurement.)
//
// Every bbolt transaction also carries the sinks' Done marks that are
// only in memory so far (flush): Resolve does not wait for them. When no
// transaction runs, Resolve's signal on e.acks has the writer commit them
// on their own AckDelay later; Close commits what is left.

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

	// DefaultAckDelay is how long a Done may wait in memory for a commit
	// when Options.AckDelay is zero.
	DefaultAckDelay = 10 * time.Millisecond
	// ackRetry is how long the writer waits to commit Done marks again
	// after a commit of them failed.
	ackRetry = time.Second
)

// op is one caller's share of a commit. An Append's op carries its
// records (recs), which go to the log; any other op's apply runs inside
// the commit's bbolt transaction and may run again (in a new transaction)
// when another op of the same batch fails, so it must change nothing but
// the transaction and w: what an op changes in memory is done after the
// commit, in after (run by the writer) or by the caller once done answers.
type op struct {
	recs  [][]byte
	apply func(w *wtx) error
	after func()
	size  int64
	// res is the op's answer when it decided to write nothing (ErrFull):
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
	e  *Embedded
	tx *bolt.Tx
	c  counters // the log's, as the transaction starts
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
		marks := false // commit the Done marks, even with nothing else
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
			marks = true
		case <-e.quit:
			timer.Stop()
			_, e.closeErr = e.commit(nil, true)
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
		flushed, err := e.commit(batch, marks)
		clear(batch)
		switch {
		case err != nil:
			if !failing {
				e.logger.Error("committing acknowledged deliveries failed; trying again every second and with every commit", "error", err)
				failing = true
			}
			timer.Reset(ackRetry)
			fire = timer.C
		case !flushed:
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

// commit runs a gathered batch: first the ops that are not Appends, in
// one bbolt transaction with the sinks' Done marks that are not yet on
// disk, then the Appends, to the log. The transaction runs when there are
// such ops, when marks asks for the Done marks, or when the Appends may
// need the room that positions only in memory would give; otherwise the
// marks wait for a later commit. It reports whether the marks were
// committed (there may have been none), and the error of committing them.
func (e *Embedded) commit(batch []*op, marks bool) (flushed bool, err error) {
	var appends, others []*op
	for _, o := range batch {
		if o.recs != nil {
			appends = append(appends, o)
		} else {
			others = append(others, o)
		}
	}
	if len(appends) > 0 && !e.fitAll(appends) {
		marks = true
	}
	if marks || len(others) > 0 {
		flushed, err = e.commitTx(others)
		e.cut()
	}
	if len(appends) > 0 {
		e.appendLog(appends)
	}
	return flushed, err
}

// commitTx runs ops in one transaction, with the sinks' Done marks that
// are not yet on disk. An op whose apply fails is taken out and answered
// with its error, and the others are run again without it. It reports
// whether the marks were committed, and the error of committing them.
func (e *Embedded) commitTx(batch []*op) (bool, error) {
	f, undo := e.flush()
	if f != nil {
		batch = append([]*op{f}, batch...)
	}
	for len(batch) > 0 {
		e.logMu.Lock()
		w := &wtx{e: e, c: e.c}
		e.logMu.Unlock()
		failed := -1
		err := e.db.Update(func(tx *bolt.Tx) error {
			w.tx = tx
			for i, o := range batch {
				o.res = nil
				if err := o.apply(w); err != nil {
					failed = i
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
		for _, o := range batch {
			if o.after != nil && o.res == nil {
				o.after()
			}
		}
		for _, o := range batch {
			o.done <- o.res
		}
		break
	}
	if f == nil {
		return true, nil
	}
	if err := <-f.done; err != nil {
		undo()
		return false, err
	}
	return true, nil
}

// appendLog writes the records of ops to the log with one write and one
// sync, and answers them: ErrFull for an op that does not fit.
func (e *Embedded) appendLog(ops []*op) {
	e.logMu.Lock()
	c := e.c
	e.logMu.Unlock()
	var recs [][]byte
	for _, o := range ops {
		o.res = nil
		if !e.fits(c, len(o.recs), o.size) {
			o.res = ErrFull
			continue
		}
		recs = append(recs, o.recs...)
		c.last += uint64(len(o.recs))
		c.events += len(o.recs)
		c.bytes += o.size
	}
	var err error
	if len(recs) > 0 {
		if err = e.log.append(recs); err == nil {
			e.logMu.Lock()
			e.c = c
			e.logMu.Unlock()
			e.wakeAll()
		} else {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	for _, o := range ops {
		if o.res != nil {
			o.done <- o.res
		} else {
			o.done <- err
		}
	}
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

// fits reports whether n more events of size bytes stay within the limits
// of a log counted by c. The events limit counts the log and every sink's
// retry schedule (a destination that is down for long fills the schedule,
// not the log); the bytes limit counts the log.
func (e *Embedded) fits(c counters, n int, size int64) bool {
	l := e.limits
	if l.Events > 0 && c.events+int(e.scheduled.Load())+n > l.Events {
		return false
	}
	if l.Bytes > 0 && c.bytes+size > l.Bytes {
		return false
	}
	return true
}

// fitAll reports whether every Append of ops fits in the log as it is.
func (e *Embedded) fitAll(ops []*op) bool {
	e.logMu.Lock()
	c := e.c
	e.logMu.Unlock()
	n, size := 0, int64(0)
	for _, o := range ops {
		n += len(o.recs)
		size += o.size
	}
	return e.fits(c, n, size)
}

// cut truncates the log below the lowest position on disk of the known
// sinks: the counters at once, the files (whole segments) when they hold
// nothing else. A position only in memory never counts, so the log is
// never cut under a Done that a crash could still lose; while no sink is
// known, the log keeps everything.
func (e *Embedded) cut() {
	low, ok := e.minPosition()
	e.logMu.Lock()
	c := e.c
	e.logMu.Unlock()
	if !ok || low < c.first {
		return
	}
	upto := min(low, c.last)
	c.bytes -= e.log.bytesBetween(c.first, upto)
	c.events -= int(upto - c.first + 1)
	c.first = upto + 1
	e.logMu.Lock()
	e.c = c
	e.logMu.Unlock()
	if err := e.log.drop(c.first); err != nil {
		e.logger.Warn("deleting a consumed log segment failed; the next start deletes it", "error", err)
	}
	e.logger.Trace("truncated the log", "first", c.first)
}

// minPosition is the lowest position on disk of the known sinks, those
// registered by this process or an earlier one; false when there are none.
func (e *Embedded) minPosition() (uint64, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var min uint64
	ok := false
	for _, s := range e.sinks {
		if p := s.durable.Load(); !ok || p < min {
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
