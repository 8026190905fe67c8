package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The journal is the log of the embedded spool: the event records, in
// sequence order, in segment files of the directory log/ beside spool.db.
// Each segment is named by the sequence of its first record
// (00000000000000000001.seg) and is a run of frames:
//
//	uint32 length | uint32 CRC-32C of the record | record (codec.go)
//
// both big-endian. The writer appends a group commit's records with one
// write and one fdatasync, and only then publishes them to readers, so a
// Lease never sees a record that is not on disk. A segment takes new
// records until it holds segmentBytes; the next one is created (and the
// directory synced) before its first write. Segments wholly below every
// sink's position on disk are deleted, never the last one, whose name
// keeps the sequence going when everything has been consumed.
//
// A new segment is a file of segmentBytes zeros, already on disk, that
// the records overwrite, the way databases preallocate their write-ahead
// log: the fdatasync of a write within the file's size flushes the data
// alone, while one that grows the file also commits the file system's
// journal (on ext4 here, a commit of one small event took 230 µs with a
// growing file and 130 µs with a preallocated one: BenchmarkAppend). The
// zeros are written in the background, a chunk and an fdatasync at a time
// (spareChunk), into a spare file (spareName) that the next segment takes
// by renaming it, once the last segment is half full; a journal without
// segments makes its first one at Open. In the last segment a frame
// header of zeros ends the records. A segment is full once its records
// cover its zeros, and it is cut to its records before the next one
// starts, which drops anything a torn write left past the zeros (a crash
// may keep a write's later pages and not its first): every segment but
// the last holds its records alone.
//
// At Open every segment is read and its frames checked: a torn or
// damaged tail of the last segment (a crash in the middle of a write that
// was never acknowledged) is cut off; damage anywhere else is an error,
// since those frames were on disk before anything after them was written.
type journal struct {
	dir    string
	noSync bool

	// mu guards segs and each segment's ends: the writer takes it to
	// publish what it wrote and to drop segments, readers to read.
	mu   sync.RWMutex
	segs []*segment // ascending; never empty once open

	buf []byte // the writer's frames, reused

	// spare brings the spare file the background made (nil if it could
	// not), while preparing says one is on its way; only the writer uses
	// them.
	spare     chan *os.File
	preparing bool
}

// segment is one file of the journal.
type segment struct {
	first uint64 // sequence of its first record
	f     *os.File
	// ends[i] is the offset just past the frame of record first+i, so the
	// file holds len(ends) records in ends[len(ends)-1] bytes.
	ends []int64
}

const (
	journalDir  = "log"
	segmentExt  = ".seg"
	spareName   = "next.spare"
	frameHeader = 8
)

// segmentBytes is how much a segment holds before the next one starts (a
// variable for the tests).
var segmentBytes int64 = 32 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func (s *segment) size() int64 {
	if len(s.ends) == 0 {
		return 0
	}
	return s.ends[len(s.ends)-1]
}

// last is the sequence of the segment's last record (first-1 if empty).
func (s *segment) last() uint64 { return s.first + uint64(len(s.ends)) - 1 }

// start is the offset of record i's frame.
func (s *segment) start(i int) int64 {
	if i == 0 {
		return 0
	}
	return s.ends[i-1]
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentExt) }

// openJournal opens the journal in dir/log, reading and checking every
// segment. When it has none, it starts one at sequence next.
func openJournal(dir string, noSync bool, next uint64) (*journal, error) {
	j := &journal{dir: filepath.Join(dir, journalDir), noSync: noSync, spare: make(chan *os.File, 1)}
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return nil, err
	}
	// A spare left by the last run may be partly written.
	if err := os.Remove(filepath.Join(j.dir, spareName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	firsts, err := j.list()
	if err != nil {
		return nil, err
	}
	for i, first := range firsts {
		s, err := j.load(first, i == len(firsts)-1)
		if err != nil {
			j.close()
			return nil, err
		}
		if n := len(j.segs); n > 0 && j.segs[n-1].last()+1 != first {
			j.close()
			s.f.Close()
			return nil, fmt.Errorf("log: %s follows sequence %d: records are missing", segmentName(first), j.segs[n-1].last())
		}
		j.segs = append(j.segs, s)
	}
	if len(j.segs) == 0 {
		s, err := j.create(next)
		if err != nil {
			return nil, err
		}
		j.segs = append(j.segs, s)
	}
	return j, nil
}

// list returns the first sequences of the segments on disk, ascending.
func (j *journal) list() ([]uint64, error) {
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, err
	}
	var firsts []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil || first == 0 {
			return nil, fmt.Errorf("log: unexpected file %s in %s", e.Name(), j.dir)
		}
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	return firsts, nil
}

// load opens a segment and indexes its frames. A bad frame ends the last
// segment there (it is cut off); in any other it is an error.
func (j *journal) load(first uint64, last bool) (*segment, error) {
	path := filepath.Join(j.dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := st.Size()
	s := &segment{first: first, f: f}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	var off int64
	var head [frameHeader]byte
	var rec []byte
	bad := ""
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if err != io.EOF {
				bad = "a frame header is cut short"
			}
			break
		}
		n := binary.BigEndian.Uint32(head[:4])
		if last && head == [frameHeader]byte{} {
			break // the zeros after the records
		}
		if n == 0 || n > maxRecordBytes || int64(n) > size-off-frameHeader {
			bad = fmt.Sprintf("a frame claims %d bytes", n)
			break
		}
		rec = slices.Grow(rec[:0], int(n))[:n]
		if _, err := io.ReadFull(r, rec); err != nil {
			bad = "a record is cut short"
			break
		}
		if crc32.Checksum(rec, crcTable) != binary.BigEndian.Uint32(head[4:]) {
			bad = "a record fails its checksum"
			break
		}
		off += frameHeader + int64(n)
		s.ends = append(s.ends, off)
	}
	if bad == "" {
		return s, nil
	}
	if !last {
		f.Close()
		return nil, fmt.Errorf("log: %s is damaged at offset %d (%s) and is not the last segment", path, off, bad)
	}
	// The tail of a write that a crash interrupted: never acknowledged.
	if err := f.Truncate(off); err != nil {
		f.Close()
		return nil, err
	}
	if err := j.sync(f); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// create makes an empty segment whose first record will be first, and
// syncs the directory so that the file survives a crash. It takes the
// spare if one is ready, and else makes one now; a segment that grows
// (without fsync, or when no spare could be made) is the fallback.
func (j *journal) create(first uint64) (*segment, error) {
	path := filepath.Join(j.dir, segmentName(first))
	var f *os.File
	if !j.noSync {
		if !j.preparing {
			j.prepare()
		}
		f = <-j.spare
		j.preparing = false
	}
	if f != nil {
		// Opened again under its new name, which f.Name() tells.
		err := os.Rename(f.Name(), path)
		f.Close()
		if f = nil; err == nil {
			f, _ = os.OpenFile(path, os.O_RDWR, 0)
		}
	}
	if f == nil {
		var err error
		if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return nil, err
		}
	}
	if err := j.syncDir(); err != nil {
		f.Close()
		return nil, err
	}
	return &segment{first: first, f: f}, nil
}

// prepare starts making the spare; j.spare brings it.
func (j *journal) prepare() {
	j.preparing = true
	path, size := filepath.Join(j.dir, spareName), segmentBytes
	go func() { j.spare <- makeSpare(path, size) }()
}

// spareChunk is how many zero bytes makeSpare writes between fdatasyncs.
// A commit's fdatasync waits for the disk to take what is queued before
// it: with the spare's 32 MB synced at once, Appends made meanwhile took
// 31–34 ms at p99 (3.1–3.4 ms on average); synced every 256 KB, 2.7–3.5
// ms (0.6–0.7 ms), beside 0.3–0.9 ms (0.2 ms) with no spare being made
// (BenchmarkAppendWhileSpare). The spare then takes about 100 ms here.
const spareChunk = 256 << 10

// makeSpare writes size zero bytes to a new file at path, syncing them a
// chunk at a time. It returns nil, and removes the file, when that fails.
func makeSpare(path string, size int64) *os.File {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil
	}
	zeros := make([]byte, min(size, spareChunk))
	for off := int64(0); off < size && err == nil; off += int64(len(zeros)) {
		_, err = f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off)
		if err == nil {
			err = fdatasync(f)
		}
	}
	if err != nil {
		f.Close()
		_ = os.Remove(path)
		return nil
	}
	return f
}

// finish cuts a full segment to its records: past them there may be what
// a torn write left beyond the zeros (see the journal's comment).
func (j *journal) finish(s *segment) error {
	st, err := s.f.Stat()
	if err != nil || st.Size() == s.size() {
		return err
	}
	if err := s.f.Truncate(s.size()); err != nil {
		return err
	}
	return j.sync(s.f)
}

func (j *journal) sync(f *os.File) error {
	if j.noSync {
		return nil
	}
	return syncFile(f)
}

// syncFile is how the journal syncs a segment (a test makes it fail).
var syncFile = fdatasync

func (j *journal) syncDir() error {
	if j.noSync {
		return nil
	}
	d, err := os.Open(j.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// next is the sequence the next record appended gets.
func (j *journal) next() uint64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.segs[len(j.segs)-1].last() + 1
}

// append writes recs after the last record, on disk before it returns,
// and then makes them readable. Only the writer calls it. When the write
// or the sync fails, the records are not published and the segment is
// cut back to where it was: the next records take their place, and none
// of the failed ones, which the engine was told to send again, can be
// read after those. (A crash before the next sync may leave some of them
// for a restart to find, as after any commit that did not finish.)
func (j *journal) append(recs [][]byte) error {
	tail := j.segs[len(j.segs)-1]
	if tail.size() >= segmentBytes {
		if err := j.finish(tail); err != nil {
			return fmt.Errorf("log: finish %s: %w", tail.f.Name(), err)
		}
		s, err := j.create(tail.last() + 1)
		if err != nil {
			return fmt.Errorf("log: new segment: %w", err)
		}
		j.mu.Lock()
		j.segs = append(j.segs, s)
		j.mu.Unlock()
		tail = s
	}
	b := j.buf[:0]
	ends := make([]int64, len(recs))
	at := tail.size()
	for i, r := range recs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r)))
		b = binary.BigEndian.AppendUint32(b, crc32.Checksum(r, crcTable))
		b = append(b, r...)
		ends[i] = at + int64(len(b))
	}
	j.buf = b
	if len(b) > 4<<20 {
		j.buf = nil // do not keep a big batch's buffer
	}
	if _, err := tail.f.WriteAt(b, at); err != nil {
		_ = tail.f.Truncate(at)
		return fmt.Errorf("log: write: %w", err)
	}
	if err := j.sync(tail.f); err != nil {
		_ = tail.f.Truncate(at)
		return fmt.Errorf("log: sync: %w", err)
	}
	j.mu.Lock()
	tail.ends = append(tail.ends, ends...)
	j.mu.Unlock()
	if !j.noSync && !j.preparing && tail.size() >= segmentBytes/2 {
		j.prepare() // the next segment's zeros, while this one fills
	}
	return nil
}

// read returns the records from sequence from on, as many as are
// published, at most max and, beyond the first, at most maxBytes, all
// from one segment. It returns none when from is past the last record,
// and an error when from is below the first one kept.
func (j *journal) read(from uint64, max int, maxBytes int64) ([][]byte, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	// The last segment that starts at or below from.
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].first > from }) - 1
	if i < 0 {
		return nil, fmt.Errorf("log: sequence %d is no longer kept", from)
	}
	if from > j.segs[i].last() {
		return nil, nil // past the end (segments follow each other)
	}
	s := j.segs[i]
	lo := int(from - s.first)
	hi := lo + 1
	for hi < len(s.ends) && hi-lo < max && s.ends[hi]-s.start(lo) <= maxBytes {
		hi++
	}
	start := s.start(lo)
	buf := make([]byte, s.ends[hi-1]-start)
	if _, err := s.f.ReadAt(buf, start); err != nil {
		return nil, fmt.Errorf("log: read %s: %w", s.f.Name(), err)
	}
	out := make([][]byte, 0, hi-lo)
	for k := lo; k < hi; k++ {
		frame := buf[s.start(k)-start : s.ends[k]-start]
		rec := frame[frameHeader:]
		if crc32.Checksum(rec, crcTable) != binary.BigEndian.Uint32(frame[4:]) {
			return nil, fmt.Errorf("log: record %d of %s fails its checksum", s.first+uint64(k), s.f.Name())
		}
		out = append(out, rec)
	}
	return out, nil
}

// bytesBetween is how many record bytes (frames without their headers)
// the records from a to b hold, both included; records not kept count 0.
func (j *journal) bytesBetween(a, b uint64) int64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	var n int64
	for _, s := range j.segs {
		lo, hi := max(a, s.first), min(b, s.last())
		if lo > hi {
			continue
		}
		i, k := int(lo-s.first), int(hi-s.first)
		n += s.ends[k] - s.start(i) - frameHeader*int64(k-i+1)
	}
	return n
}

// drop deletes the segments all of whose records are below seq, but never
// the last one.
func (j *journal) drop(seq uint64) error {
	j.mu.Lock()
	n := 0
	for n < len(j.segs)-1 && j.segs[n].last() < seq {
		n++
	}
	doomed := slices.Clone(j.segs[:n])
	j.segs = slices.Delete(j.segs, 0, n)
	j.mu.Unlock()
	var errs []error
	for _, s := range doomed {
		s.f.Close()
		if err := os.Remove(s.f.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (j *journal) close() error {
	if j.preparing {
		if f := <-j.spare; f != nil {
			f.Close()
		}
		j.preparing = false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var errs []error
	for _, s := range j.segs {
		errs = append(errs, s.f.Close())
	}
	j.segs = nil
	return errors.Join(errs...)
}
