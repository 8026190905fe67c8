package spool

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The writer is the spool's group commit: one goroutine owns every write
// transaction. Append, Resolve, Register, Replay, Discard and Forget hand it
// an op and wait; it drains whatever ops are queued into one bbolt
// transaction and one fsync, then answers them all. While one commit is on
// its way to the disk the next batch gathers, so a lone caller pays no
// delay and many callers share each fsync. (bbolt's own DB.Batch also
// groups, but waits up to MaxBatchDelay to fill a batch and re-runs a
// function whose batch failed; see doc.go for the measurement.)

const (
	opQueue         = 4096     // ops that may wait for the writer
	maxOpsPerCommit = 1024     // ops in one transaction
	maxCommitBytes  = 32 << 20 // record bytes in one transaction (more if one op is bigger)
	truncateAfter   = 512      // resolved log entries that make the writer truncate
	truncateChunk   = 16384    // log entries deleted by one transaction, unless Append needs room
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
	for {
		select {
		case o := <-e.ops:
			batch = append(batch[:0], o)
		case <-e.quit:
			return
		}
		size := batch[0].size
	gather:
		for len(batch) < maxOpsPerCommit && size < maxCommitBytes {
			select {
			case o := <-e.ops:
				batch = append(batch, o)
				size += o.size
			default:
				break gather
			}
		}
		e.commit(batch)
		clear(batch)
	}
}

// commit runs batch in one transaction. An op whose apply fails is taken
// out and answered with its error, and the others are run again without it.
func (e *Embedded) commit(batch []*op) {
	batch = append([]*op(nil), batch...)
	for len(batch) > 0 {
		e.logMu.Lock()
		w := &wtx{e: e, c: e.c}
		e.logMu.Unlock()
		failed := -1
		err := e.db.Update(func(tx *bolt.Tx) error {
			w.tx = tx
			w.log = tx.Bucket(bucketLog)
			w.log.FillPercent = 1 // keys only ever grow: pack the pages
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
			return
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
		return
	}
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
	min, ok := w.e.minPosition()
	if !ok || min < w.c.first {
		return 0
	}
	return min - w.c.first + 1
}

// truncate deletes up to max (all if max < 0) of the log entries every
// known sink is past.
func (w *wtx) truncate(max int) error {
	min, ok := w.e.minPosition()
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

// minPosition is the lowest durable position of the known sinks, those
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
