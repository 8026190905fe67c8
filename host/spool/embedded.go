package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the embedded spool's one file in its directory.
const FileName = "spool.db"

// Options configure the embedded spool.
type Options struct {
	// Limits bound the log. Retries and dead letters keep their own copy
	// of an envelope and are not counted.
	Limits Limits
	// NoSync skips the fsync of every commit: a crash of the machine (not
	// only of the process) may then lose accepted events. It exists to
	// measure what durability costs; never set it in production.
	NoSync bool
	// AckDelay is the longest a Done may wait in memory before the writer
	// commits it on its own (it goes with any earlier commit); zero means
	// DefaultAckDelay. A crash of the process or the machine may deliver
	// again what was resolved Done within the last AckDelay.
	AckDelay time.Duration
	// Logger receives the spool's logs; nil discards them.
	Logger hclog.Logger
}

const (
	// formatVersion 2 keeps the log in segment files (journal.go); the
	// log bucket of version 1 is moved there by Open.
	formatVersion  = 2
	maxIDBytes     = 1024 // ids and instance names are bbolt key parts
	maxRecordBytes = bolt.MaxValueSize
	lockTimeout    = 2 * time.Second
)

var (
	bucketMeta      = []byte("meta")
	bucketLog       = []byte("log")
	bucketSinks     = []byte("sinks")
	keyVersion      = []byte("version")
	keyPos          = []byte("pos")
	bucketAcked     = []byte("acked")
	bucketRetry     = []byte("retry")
	bucketDead      = []byte("dead")
	bucketDeadIndex = []byte("dead-index")
)

// Embedded is the spool in one bbolt file in the data directory. It is
// safe for concurrent use; see the package doc for its layout.
type Embedded struct {
	db     *bolt.DB
	log    *journal
	logger hclog.Logger
	limits Limits
	// scheduled counts every sink's retry entries, for the events limit.
	scheduled atomic.Int64
	now       func() time.Time

	ops        chan *op
	acks       chan struct{} // one pending signal: a Done waits in memory
	ackDelay   time.Duration
	quit       chan struct{} // closed once every call has returned: stops the writer
	writerDone chan struct{}
	closeErr   error         // the writer's last commit of Done marks, once writerDone is closed
	done       chan struct{} // closed when Close starts: wakes Lease

	mu     sync.RWMutex // guards closed, sinks and each sink's registered
	closed bool
	sinks  map[string]*sink // every sink on disk, registered by this process or not
	calls  sync.WaitGroup   // calls in progress, which Close waits for

	regMu sync.Mutex // serializes Register and Forget

	logMu sync.Mutex // guards c
	c     counters   // written by the writer after each commit

	legacy bool // Open found a log bucket of format version 1
}

var _ Spool = (*Embedded)(nil)

// Open opens (creating it if need be) the spool in dir, in the file
// FileName. Only one process may have it open: another Open waits a
// couple of seconds for the file lock, then fails.
func Open(dir string, opts Options) (*Embedded, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: open: %w", err)
	}
	path := filepath.Join(dir, FileName)
	err := checkFile(path)
	var db *bolt.DB
	if err == nil {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:      lockTimeout,
			NoSync:       opts.NoSync,
			FreelistType: bolt.FreelistMapType,
			// Not writing the free page list with every commit: once the
			// file has free pages (every drained backlog leaves them) it
			// was most of what a small commit wrote. Open rebuilds it by
			// walking the file instead (see "Why bbolt" in doc.go).
			NoFreelistSync: true,
		})
	}
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("spool: open %s: the file is locked by another process (is another evorelay using this data directory?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	e := &Embedded{
		db:         db,
		logger:     logger.Named("spool"),
		limits:     opts.Limits,
		now:        time.Now,
		ops:        make(chan *op, opQueue),
		acks:       make(chan struct{}, 1),
		ackDelay:   opts.AckDelay,
		quit:       make(chan struct{}),
		writerDone: make(chan struct{}),
		done:       make(chan struct{}),
		sinks:      make(map[string]*sink),
	}
	if e.ackDelay <= 0 {
		e.ackDelay = DefaultAckDelay
	}
	if err := e.openLog(dir, opts.NoSync); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	e.logger.Debug("opened", "path", path, "events", e.c.events, "bytes", e.c.bytes, "sinks", len(e.sinks))
	go e.writer()
	return e, nil
}

// checkFile reads every page that the buckets of the file at path reach,
// if it exists, and returns an error if one is damaged. bbolt panics on a
// damaged page, and Open for writing walks the same pages to rebuild the
// free list (NoFreelistSync) in a goroutine of its own, where that panic
// would end the process. Here, in a read-only Open (which does not walk)
// and a read transaction, the panic is recovered, and a fault reading
// the file is made a panic too.
func checkFile(path string) (err error) {
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		return nil // none yet (or what Open for writing will report)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the file is damaged (%v); it holds where each sink is in the log, and evorelay cannot start without it", r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			walkBucket(b)
			return nil
		})
	})
}

// walkBucket reads every key of b and of the buckets in it.
func walkBucket(b *bolt.Bucket) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if inner := b.Bucket(k); inner != nil {
				walkBucket(inner)
			}
		}
	}
}

// openLog reads the sinks' state from the file (creating its buckets if
// it is new), moves a log of format version 1 into the journal, opens the
// journal and counts it, and truncates what every sink is past.
func (e *Embedded) openLog(dir string, noSync bool) error {
	if err := e.db.Update(e.load); err != nil {
		return err
	}
	if e.legacy {
		if err := e.migrate(dir, noSync); err != nil {
			return fmt.Errorf("moving the log to %s: %w", journalDir, err)
		}
	}
	j, err := openJournal(dir, noSync, e.seen()+1)
	if err != nil {
		return err
	}
	e.log = j
	first, last := j.segs[0].first, j.segs[len(j.segs)-1].last()
	e.c = counters{first: first, last: last, events: int(last + 1 - first), bytes: j.bytesBetween(first, last)}
	e.cut()
	return nil
}

// seen is the highest sequence a sink has resolved: a journal with no
// segment (new, or its files lost) starts after it.
func (e *Embedded) seen() uint64 {
	var last uint64
	for _, s := range e.sinks {
		last = max(last, s.pos)
		for seq := range s.acked {
			last = max(last, seq)
		}
	}
	return last
}

// migrate moves the log bucket of format version 1 into a new journal,
// then deletes it and writes the new version. Interrupted, it starts over
// at the next Open: the bucket is only deleted once the journal is synced.
func (e *Embedded) migrate(dir string, noSync bool) error {
	if err := os.RemoveAll(filepath.Join(dir, journalDir)); err != nil {
		return err
	}
	err := e.db.View(func(tx *bolt.Tx) error {
		log := tx.Bucket(bucketLog)
		c := log.Cursor()
		k, v := c.First()
		first := max(log.Sequence(), e.seen()) + 1
		if k != nil {
			first = keySeq(k)
		}
		j, err := openJournal(dir, noSync, first)
		if err != nil {
			return err
		}
		defer j.close()
		var recs [][]byte
		var size int
		for ; k != nil; k, v = c.Next() {
			if keySeq(k) != j.next()+uint64(len(recs)) {
				return fmt.Errorf("log bucket: sequence %d out of order", keySeq(k))
			}
			recs = append(recs, v)
			if size += len(v); size >= 8<<20 {
				if err := j.append(recs); err != nil {
					return err
				}
				recs, size = recs[:0], 0
			}
		}
		if len(recs) > 0 {
			return j.append(recs)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return e.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketLog); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, seqKey(formatVersion))
	})
}

// load creates the buckets of a new file, or reads the sinks' state of an
// existing one, and notes a log bucket of format version 1 (legacy).
func (e *Embedded) load(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	switch v := meta.Get(keyVersion); {
	case v == nil:
		if err := meta.Put(keyVersion, seqKey(formatVersion)); err != nil {
			return err
		}
	case keySeq(v) == 1:
		e.legacy = true
	case keySeq(v) != formatVersion:
		return fmt.Errorf("format version %d, this build reads %d", keySeq(v), formatVersion)
	}
	sinks, err := tx.CreateBucketIfNotExists(bucketSinks)
	if err != nil {
		return err
	}

	return sinks.ForEachBucket(func(name []byte) error {
		sb := sinks.Bucket(name)
		pos := keySeq(sb.Get(keyPos))
		ab := sb.Bucket(bucketAcked)
		acked := make(map[uint64]struct{})
		var stale [][]byte
		if err := ab.ForEach(func(k, _ []byte) error {
			if seq := keySeq(k); seq <= pos {
				stale = append(stale, append([]byte(nil), k...))
			} else {
				acked[seq] = struct{}{}
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range stale {
			if err := ab.Delete(k); err != nil {
				return err
			}
		}
		s := newSink(string(name), pos, acked)
		s.retries = countKeys(sb.Bucket(bucketRetry))
		e.scheduled.Add(int64(s.retries))
		s.dead = countKeys(sb.Bucket(bucketDead))
		e.sinks[s.name] = s
		return nil
	})
}

func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// enter counts a call in, unless the spool is closed.
func (e *Embedded) enter() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return ErrClosed
	}
	e.calls.Add(1)
	return nil
}

// sink returns a known sink; registered asks for one this process
// registered.
func (e *Embedded) sink(name string, registered bool) (*sink, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	s := e.sinks[name]
	if s == nil || (registered && !s.registered) {
		return nil, fmt.Errorf("%w %q", ErrUnknownSink, name)
	}
	return s, nil
}

// Register adds a sink, or resumes a known one at its position. A new sink
// starts at the end of the log: register every sink before the first
// Append that it must see. While no sink is known the log keeps
// everything; from then on, the positions of all known sinks (registered
// by this process or an earlier one) hold back truncation, until Forget.
func (e *Embedded) Register(name string) error {
	if name == "" {
		return errors.New("spool: register: empty sink name")
	}
	if len(name) > maxIDBytes {
		return fmt.Errorf("spool: register: sink name longer than %d bytes", maxIDBytes)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.calls.Done()
	e.regMu.Lock()
	defer e.regMu.Unlock()

	e.mu.Lock()
	if s := e.sinks[name]; s != nil {
		s.registered = true
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()

	var s *sink
	o := &op{}
	o.apply = func(w *wtx) error {
		sb, err := w.tx.Bucket(bucketSinks).CreateBucket([]byte(name))
		if err != nil {
			return err
		}
		if err := sb.Put(keyPos, seqKey(w.c.last)); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketAcked, bucketRetry, bucketDead, bucketDeadIndex} {
			if _, err := sb.CreateBucket(b); err != nil {
				return err
			}
		}
		s = newSink(name, w.c.last, nil)
		return nil
	}
	o.after = func() {
		e.mu.Lock()
		s.registered = true
		e.sinks[name] = s
		e.mu.Unlock()
	}
	if err := e.submit(context.Background(), o); err != nil {
		return fmt.Errorf("spool: register %q: %w", name, err)
	}
	e.logger.Debug("registered a new sink", "sink", name, "position", s.durable.Load())
	return nil
}

// Forget deletes everything the spool keeps for a sink that this process
// has not registered: its position, retries and dead letters. A sink that
// is gone for good must be forgotten, or its position holds back the
// log's truncation until the log is full.
func (e *Embedded) Forget(name string) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.calls.Done()
	e.regMu.Lock()
	defer e.regMu.Unlock()

	e.mu.RLock()
	s := e.sinks[name]
	registered := s != nil && s.registered
	e.mu.RUnlock()
	if s == nil {
		return fmt.Errorf("spool: forget: %w %q", ErrUnknownSink, name)
	}
	if registered {
		return fmt.Errorf("spool: forget %q: the sink is registered", name)
	}
	o := &op{
		apply: func(w *wtx) error { return w.tx.Bucket(bucketSinks).DeleteBucket([]byte(name)) },
		after: func() {
			e.mu.Lock()
			delete(e.sinks, name)
			e.mu.Unlock()
			s.mu.Lock()
			e.scheduled.Add(-int64(s.retries))
			s.mu.Unlock()
		},
	}
	if err := e.submit(context.Background(), o); err != nil {
		return fmt.Errorf("spool: forget %q: %w", name, err)
	}
	return nil
}

// Append stores events durably, all or none, and returns once they are on
// disk. Every event needs an ID. ctx bounds only the wait for the writer:
// once the events are handed over, Append waits for the commit.
//
// It returns ErrFull when the events would take the log past its limits
// after truncating what every sink is past, and ErrTooLarge when they
// exceed the limits on their own.
func (e *Embedded) Append(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	o, err := e.appendOp(events)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool: append: %w", err)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.calls.Done()
	err = e.submit(ctx, o)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrFull):
		return err
	default:
		return fmt.Errorf("spool: append: %w", err)
	}
}

// appendOp encodes events and makes the writer's op that appends them.
func (e *Embedded) appendOp(events []Event) (*op, error) {
	recs := make([][]byte, len(events))
	var size int64
	for i := range events {
		ev := &events[i]
		switch {
		case ev.ID == "":
			return nil, fmt.Errorf("spool: append: event %d has no id", i)
		case len(ev.ID) > maxIDBytes || len(ev.Instance) > maxIDBytes:
			return nil, fmt.Errorf("spool: append: event %d: id or instance longer than %d bytes", i, maxIDBytes)
		}
		recs[i] = encodeEvent(ev)
		if len(recs[i]) > maxRecordBytes {
			return nil, fmt.Errorf("spool: append: event %d: %w", i, ErrTooLarge)
		}
		size += int64(len(recs[i]))
	}
	if l := e.limits; (l.Events > 0 && len(events) > l.Events) || (l.Bytes > 0 && size > l.Bytes) {
		return nil, fmt.Errorf("spool: append: %d events of %d bytes: %w", len(events), size, ErrTooLarge)
	}
	return &op{recs: recs, size: size}, nil
}

// wakeAll tells every registered sink's Lease that the log grew.
func (e *Embedded) wakeAll() {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, s := range e.sinks {
		s.signal()
	}
}

// Stats is a snapshot. Bytes counts the log's records: envelopes plus ids
// and names. Backlog and Dead cover every known sink.
func (e *Embedded) Stats() Stats {
	e.mu.RLock()
	sinks := make([]*sink, 0, len(e.sinks))
	for _, s := range e.sinks {
		sinks = append(sinks, s)
	}
	e.mu.RUnlock()
	st := Stats{
		Limit:   e.limits,
		Backlog: make(map[string]int, len(sinks)),
		Dead:    make(map[string]int, len(sinks)),
	}
	type snap struct{ pos, acked, retries int }
	snaps := make([]snap, len(sinks))
	for i, s := range sinks {
		s.mu.Lock()
		s.ackMu.Lock()
		snaps[i] = snap{int(s.pos), len(s.acked), s.retries}
		s.ackMu.Unlock()
		st.Dead[s.name] = s.dead
		s.mu.Unlock()
	}
	// The counters are read after the positions, so that no position is
	// past the last sequence read.
	e.logMu.Lock()
	c := e.c
	e.logMu.Unlock()
	st.Events, st.Bytes = c.events, c.bytes
	st.Scheduled = int(e.scheduled.Load())
	for i, s := range sinks {
		st.Backlog[s.name] = max(int(c.last)-snaps[i].pos-snaps[i].acked, 0) + snaps[i].retries
	}
	return st
}

// Close waits for the calls in progress (a blocked Lease returns
// ErrClosed), commits what they handed over and the Done marks still in
// memory, and closes the file. Leases not yet resolved are lost, and
// leased again after the next Open.
func (e *Embedded) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	e.closed = true
	close(e.done)
	e.mu.Unlock()

	e.calls.Wait()
	close(e.quit)
	<-e.writerDone
	err := errors.Join(e.db.Close(), e.log.close())
	if e.closeErr != nil {
		return fmt.Errorf("spool: close: committing acknowledged deliveries: %w (they will be delivered again)", e.closeErr)
	}
	if err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}
