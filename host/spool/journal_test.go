package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/evorelay/evorelay/sdk/sinktest"
)

// segments lists the journal's segment files in dir.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, journalDir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// smallSegments makes segments roll after n bytes for the test.
func smallSegments(t *testing.T, n int64) {
	old := segmentBytes
	segmentBytes = n
	t.Cleanup(func() { segmentBytes = old })
}

// TestTornTailIsCut: bytes a crash left after the last whole record (a
// write never acknowledged) are cut off at Open, and the log goes on from
// the last record, under the next sequence. The segment is preallocated
// (the torn write lies over its zeros) or, as an earlier build left it,
// ends with its records.
func TestTornTailIsCut(t *testing.T) {
	smallSegments(t, 64<<10)
	for _, tc := range []struct {
		name string
		tear func(b []byte) []byte
		want []string
	}{
		{"half a header", func(b []byte) []byte { return append(b, 0, 0) }, []string{"e-0000", "e-0001", "e-0002"}},
		{"half a record", func(b []byte) []byte { return append(b, 0, 0, 0, 40, 1, 2, 3, 4, 5) }, []string{"e-0000", "e-0001", "e-0002"}},
		{"last record damaged", func(b []byte) []byte { b[len(b)-2] ^= 0xff; return b }, []string{"e-0000", "e-0001"}},
	} {
		for _, prealloc := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/preallocated=%v", tc.name, prealloc), func(t *testing.T) {
				dir := t.TempDir()
				s := openSinks(t, dir, "a")
				appendT(t, s, events("e", 3)...)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				seg := segments(t, dir)[0]
				b, err := os.ReadFile(seg)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(b)) != segmentBytes {
					t.Fatalf("the segment has %d bytes, want %d (preallocated)", len(b), segmentBytes)
				}
				end := recordsEnd(t, b)
				torn := tc.tear(slices.Clone(b[:end]))
				if prealloc {
					torn = append(torn, b[len(torn):]...)
				}
				if err := os.WriteFile(seg, torn, 0o600); err != nil {
					t.Fatal(err)
				}

				s = openSinks(t, dir, "a")
				appendT(t, s, events("x", 1)...)
				wantIDs(t, "after the tear", ids(poll(t, s, "a", 10)), append(tc.want, "x-0000"))
				if st := s.Stats(); st.Events != len(tc.want)+1 {
					t.Fatalf("%d events, want %d", st.Events, len(tc.want)+1)
				}
			})
		}
	}
}

// recordsEnd is the offset past the last whole frame of a segment's
// bytes b.
func recordsEnd(t *testing.T, b []byte) int {
	t.Helper()
	off := 0
	for off+frameHeader <= len(b) {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if n == 0 || off+frameHeader+n > len(b) {
			break
		}
		if crc32.Checksum(b[off+frameHeader:off+frameHeader+n], crcTable) != binary.BigEndian.Uint32(b[off+4:]) {
			t.Fatalf("frame at %d fails its checksum", off)
		}
		off += frameHeader + n
	}
	return off
}

// TestSegmentsArePreallocated: a segment is a file of segmentBytes zeros
// that its records overwrite, so that each commit's fdatasync flushes
// data alone; every segment but the last holds its records alone, and the
// last has zeros after its records.
func TestSegmentsArePreallocated(t *testing.T) {
	smallSegments(t, 4<<10)
	dir := t.TempDir()
	s := openSinks(t, dir, "a")
	for i := range 24 {
		appendT(t, s, events(string(rune('a'+i)), 10)...)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segments(t, dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	for i, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		end := recordsEnd(t, b)
		switch {
		case i < len(segs)-1 && end != len(b):
			t.Errorf("%s: records end at %d of %d bytes; a full segment holds its records alone", seg, end, len(b))
		case i < len(segs)-1 && int64(end) < segmentBytes:
			t.Errorf("%s: %d bytes of records, want at least %d before the next segment", seg, end, segmentBytes)
		case i == len(segs)-1 && int64(len(b)) < segmentBytes:
			t.Errorf("last segment %s has %d bytes, want at least %d (preallocated)", seg, len(b), segmentBytes)
		case i == len(segs)-1 && slices.ContainsFunc(b[end:], func(c byte) bool { return c != 0 }):
			t.Errorf("last segment %s: not zeros after its records", seg)
		}
	}
	s = openSinks(t, dir, "a")
	if got := len(poll(t, s, "a", 500)); got != 240 {
		t.Fatalf("after a restart, leased %d events, want 240", got)
	}
}

// TestRemnantPastTheZerosIsCut: a crash in the middle of a write may
// leave its later pages on disk and not its first, so that the last
// segment holds zeros after its records and then bytes of that write.
// Open takes the zeros for the end; the records written after them may
// stop short of those bytes, and when the segment is full it is cut to
// its records, so it opens again once it is not the last.
func TestRemnantPastTheZerosIsCut(t *testing.T) {
	smallSegments(t, 4<<10)
	dir := t.TempDir()
	s := openSinks(t, dir, "a")
	appendT(t, s, events("e", 1)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(segments(t, dir)[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("the later page of a torn write"), segmentBytes+8<<10); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s = openSinks(t, dir, "a")
	for i := range 10 {
		appendT(t, s, events(string(rune('f'+i)), 10)...)
	}
	if n := len(segments(t, dir)); n < 2 {
		t.Fatalf("%d segments, want the first one full", n)
	}
	s = restart(t, s, dir, "a")
	if got := len(poll(t, s, "a", 500)); got != 101 {
		t.Fatalf("after a restart, leased %d events, want 101", got)
	}
}

// TestFailedSyncIsCut: when a commit's fdatasync fails, its events are
// refused, and what of them reached the file is cut: a restart finds the
// events written after them, and not those that failed (which the
// engine was told to send again).
func TestFailedSyncIsCut(t *testing.T) {
	smallSegments(t, 64<<10)
	dir := t.TempDir()
	s := openSinks(t, dir, "a")
	appendT(t, s, events("e", 1)...)
	syncFile = func(*os.File) error { return syscall.EIO }
	err := s.Append(context.Background(), events("f", 2))
	syncFile = fdatasync
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("append while the sync fails: %v, want EIO", err)
	}
	// The engine sends f-0000 again; it takes the place f-0000 had.
	appendT(t, s, events("f", 1)...)
	wantIDs(t, "before a restart", ids(poll(t, s, "a", 10)), []string{"e-0000", "f-0000"})
	s = restart(t, s, dir, "a")
	wantIDs(t, "after a restart", ids(poll(t, s, "a", 10)), []string{"e-0000", "f-0000"})
}

// TestDamagedSegmentIsAnError: damage in a segment that is not the last
// cannot be a torn write (the next segment was started after it was on
// disk), so Open refuses, naming the file, instead of losing what follows.
func TestDamagedSegmentIsAnError(t *testing.T) {
	smallSegments(t, 1)
	dir := t.TempDir()
	s := openSinks(t, dir, "a")
	appendT(t, s, events("e", 1)...)
	appendT(t, s, events("f", 1)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segments(t, dir)
	if len(segs) != 2 {
		t.Fatalf("segments %v, want 2", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), filepath.Base(segs[0])) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("open with a damaged segment: %v, want an error naming %s", err, filepath.Base(segs[0]))
	}
}

// TestDamagedFileIsAnError: a page of spool.db that is not what it should
// be (here, one whose header names another page) makes Open fail with an
// error naming the file, instead of crashing the process in bbolt's walk
// of the file's pages.
func TestDamagedFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	s := openSinks(t, dir, "a", "b", "c")
	appendT(t, s, events("e", 50)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	if len(b) < 3*pageSize {
		t.Fatalf("spool.db has %d bytes, want at least 3 pages", len(b))
	}
	binary.LittleEndian.PutUint64(b[2*pageSize:], 1<<40) // page 2 says it is page 2^40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("open with a damaged page: %v, want an error naming %s as damaged", err, path)
	}
}

// TestConsumedSegmentsAreDeleted: once every sink is past a segment, its
// file goes; the last one stays, and the sequence goes on after a
// restart with nothing left in the log.
func TestConsumedSegmentsAreDeleted(t *testing.T) {
	smallSegments(t, 4<<10)
	dir := t.TempDir()
	s := open(t, dir, Options{AckDelay: time.Millisecond})
	register(t, s, "a")
	for i := range 20 {
		appendT(t, s, events(string(rune('a'+i)), 10)...)
	}
	if n := len(segments(t, dir)); n < 3 {
		t.Fatalf("%d segments after 200 appends, want several", n)
	}
	for got := 0; got < 200; {
		ds := wait(t, s, "a", 64)
		resolve(t, s, "a", done(ds)...)
		got += len(ds)
	}
	sinktest.Eventually(t, "the consumed segments deleted", 10*time.Second, func() bool {
		return s.Stats().Events == 0 && len(segments(t, dir)) == 1
	})
	s = restart(t, s, dir, "a")
	if ds := poll(t, s, "a", 10); len(ds) != 0 {
		t.Fatalf("after a restart, leased %v again", ids(ds))
	}
	appendT(t, s, events("z", 1)...)
	wantIDs(t, "after the restart", ids(poll(t, s, "a", 10)), []string{"z-0000"})
}

// TestOpensFormat1: a file of format version 1, whose log is a bucket,
// is moved into the journal at Open: what a sink had not resolved is
// leased, what it had is not, and new events follow the old sequences.
// What an interrupted move left in the journal's directory is replaced.
func TestOpensFormat1(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	evs := events("old", 10) // sequences 5 to 14
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		if err := meta.Put(keyVersion, seqKey(1)); err != nil {
			return err
		}
		log, _ := tx.CreateBucket(bucketLog)
		for i := range evs {
			if err := log.Put(seqKey(uint64(5+i)), encodeEvent(&evs[i])); err != nil {
				return err
			}
		}
		if err := log.SetSequence(14); err != nil {
			return err
		}
		sinks, _ := tx.CreateBucket(bucketSinks)
		sb, _ := sinks.CreateBucket([]byte("a"))
		for _, b := range [][]byte{bucketAcked, bucketRetry, bucketDead, bucketDeadIndex} {
			if _, err := sb.CreateBucket(b); err != nil {
				return err
			}
		}
		// Resolved up to sequence 7 (old-0002), and 9 (old-0004) above.
		if err := sb.Put(keyPos, seqKey(7)); err != nil {
			return err
		}
		return sb.Bucket(bucketAcked).Put(seqKey(9), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// An earlier, interrupted move.
	if err := os.MkdirAll(filepath.Join(dir, journalDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, journalDir, segmentName(5)), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}

	s := openSinks(t, dir, "a")
	appendT(t, s, events("new", 1)...)
	want := []string{"old-0003", "old-0005", "old-0006", "old-0007", "old-0008", "old-0009", "new-0000"}
	wantIDs(t, "after the move", ids(poll(t, s, "a", 20)), want)
	if st := s.Stats(); st.Backlog["a"] != len(want) {
		t.Fatalf("backlog %d, want %d", st.Backlog["a"], len(want))
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketLog) != nil {
			t.Error("the log bucket is still there")
		}
		if v := keySeq(tx.Bucket(bucketMeta).Get(keyVersion)); v != formatVersion {
			t.Errorf("format version %d, want %d", v, formatVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s = restart(t, s, dir, "a")
	wantIDs(t, "after a restart", ids(poll(t, s, "a", 20)), want)
}

// FuzzJournalOpen: whatever bytes the last segment holds, Open neither
// panics nor fails: it keeps the whole, checked records before the first
// bad frame, and the log goes on after them.
func FuzzJournalOpen(f *testing.F) {
	good := encodeEvent(&Event{ID: "e", Instance: "i", Event: "E", Envelope: []byte(`{}`)})
	frame := func(rec []byte) []byte {
		b := make([]byte, 0, frameHeader+len(rec))
		b = binary.BigEndian.AppendUint32(b, uint32(len(rec)))
		b = binary.BigEndian.AppendUint32(b, crc32.Checksum(rec, crcTable))
		return append(b, rec...)
	}
	f.Add(frame(good))
	f.Add(append(frame(good), frame(good)[:5]...))
	f.Add(append(frame(good), 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, journalDir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, journalDir, segmentName(1)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := openJournal(dir, true, 1)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer j.close()
		kept := j.next() - 1
		if kept > 0 {
			recs, err := j.read(1, int(kept), 1<<30)
			if err != nil || uint64(len(recs)) != kept {
				t.Fatalf("read the %d records kept: %d, %v", kept, len(recs), err)
			}
		}
		if err := j.append([][]byte{good}); err != nil {
			t.Fatal(err)
		}
		recs, err := j.read(kept+1, 1, 0)
		if err != nil || len(recs) != 1 || string(recs[0]) != string(good) {
			t.Fatalf("the record appended after: %q, %v", recs, err)
		}
	})
}

// TestLeaseWhere: events want refuses are settled on the spot, counted,
// and never leased, now or after a restart; the position passes them.
func TestLeaseWhere(t *testing.T) {
	dir := t.TempDir()
	s := openSinks(t, dir, "a")
	var evs []Event
	for i, inst := range []string{"x", "y", "x", "y", "y", "x"} {
		ev := events(fmt.Sprintf("%s%d", inst, i), 1)[0]
		ev.Instance = inst
		evs = append(evs, ev)
	}
	appendT(t, s, evs...)
	ds, skipped, err := s.LeaseWhere(context.Background(), "a", 10, instances{"x"})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "leased", ids(ds), []string{"x0-0000", "x2-0000", "x5-0000"})
	if skipped != 3 {
		t.Fatalf("skipped %d, want 3", skipped)
	}
	resolve(t, s, "a", done(ds)...)
	if st := s.Stats(); st.Backlog["a"] != 0 {
		t.Fatalf("backlog %d after resolving what was leased, want 0", st.Backlog["a"])
	}
	s = restart(t, s, dir, "a")
	if ds := poll(t, s, "a", 10); len(ds) != 0 {
		t.Fatalf("after a restart, leased %v", ids(ds))
	}
}

// TestLeaseWhereNone: while want wants no event at all, the whole log is
// settled at once (events already resolved are not counted again), and an
// event appended once it wants one is leased.
func TestLeaseWhereNone(t *testing.T) {
	dir := t.TempDir()
	s := openSinks(t, dir, "a")
	appendT(t, s, events("first", 3)...)
	ds := poll(t, s, "a", 3)
	resolve(t, s, "a", done(ds[1:])...) // acked above the position
	s = restart(t, s, dir, "a")
	appendT(t, s, events("old", 5000)...)
	ds, skipped, err := s.LeaseWhere(context.Background(), "a", 10, instances{})
	if err != nil || len(ds) != 0 || skipped != 5001 {
		t.Fatalf("leased %v, skipped %d (%v); want none leased, 5001 skipped", ids(ds), skipped, err)
	}
	if st := s.Stats(); st.Backlog["a"] != 0 {
		t.Fatalf("backlog %d, want 0", st.Backlog["a"])
	}
	appendT(t, s, events("new", 2)...)
	ds, skipped, err = s.LeaseWhere(context.Background(), "a", 10, instances{"inst"})
	if err != nil || skipped != 0 {
		t.Fatalf("skipped %d (%v), want 0", skipped, err)
	}
	wantIDs(t, "leased", ids(ds), []string{"new-0000", "new-0001"})
	resolve(t, s, "a", done(ds)...)
	s = restart(t, s, dir, "a")
	if ds := poll(t, s, "a", 10); len(ds) != 0 {
		t.Fatalf("after a restart, leased %v", ids(ds))
	}
}

// instances is a spool.Want of every event of the instances it lists.
type instances []string

func (in instances) Any() bool { return len(in) > 0 }

func (in instances) Wants(instance, _ string) bool { return slices.Contains(in, instance) }

// restart closes s and opens its directory again, with sinks registered.
func restart(t *testing.T, s *Embedded, dir string, sinks ...string) *Embedded {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openSinks(t, dir, sinks...)
}
