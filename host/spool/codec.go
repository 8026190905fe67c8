package spool

import (
	"encoding/binary"
	"errors"
	"time"
)

// Records are a compact binary format, not JSON: an envelope is already
// JSON and would be base64-encoded inside a JSON record (a third larger),
// and the binary form encodes and decodes without reflection (see doc.go
// for the numbers).
//
//	log record:      0x01 | uvarint+ID | uvarint+Instance | uvarint+Event | Envelope…
//	delivery record: 0x02 | uvarint Attempts | varint FirstTry | varint FailedAt |
//	                 uvarint+Reason | uvarint+ID | uvarint+Instance | uvarint+Event | Envelope…
//
// Times are Unix nanoseconds, 0 for the zero time. The envelope runs to the
// end of the record, so it needs no length.
const (
	kindLog      byte = 0x01
	kindDelivery byte = 0x02
)

var errCorrupt = errors.New("corrupt record")

// record is what the retry schedule and the dead letters keep of a
// delivery: the event itself (the log may be truncated under it) and its
// history.
type record struct {
	Event
	Attempts int       // tries made so far
	FirstTry time.Time // when the first try was leased
	FailedAt time.Time // dead letters: when it was given up
	Reason   string    // the last error (retry) or why it died (dead)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func eventSize(ev *Event) int {
	return 1 + 3*binary.MaxVarintLen32 + len(ev.ID) + len(ev.Instance) + len(ev.Event) + len(ev.Envelope)
}

func encodeEvent(ev *Event) []byte {
	b := make([]byte, 0, eventSize(ev))
	b = append(b, kindLog)
	return appendEvent(b, ev)
}

func appendEvent(b []byte, ev *Event) []byte {
	b = appendString(b, ev.ID)
	b = appendString(b, ev.Instance)
	b = appendString(b, ev.Event)
	return append(b, ev.Envelope...)
}

func encodeRecord(r *record) []byte {
	b := make([]byte, 0, eventSize(&r.Event)+4*binary.MaxVarintLen64+len(r.Reason))
	b = append(b, kindDelivery)
	b = binary.AppendUvarint(b, uint64(r.Attempts))
	b = binary.AppendVarint(b, nanos(r.FirstTry))
	b = binary.AppendVarint(b, nanos(r.FailedAt))
	b = appendString(b, r.Reason)
	return appendEvent(b, &r.Event)
}

// decoder reads a record; every slice it returns is a copy, so the result
// outlives the bbolt transaction the bytes came from, unless shared says
// the bytes are the caller's to keep (a read of the journal).
type decoder struct {
	b      []byte
	err    error
	shared bool
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) event(ev *Event) {
	ev.ID = d.string()
	ev.Instance = d.string()
	ev.Event = d.string()
	if d.err == nil {
		switch {
		case len(d.b) == 0:
		case d.shared:
			ev.Envelope = d.b[:len(d.b):len(d.b)]
		default:
			ev.Envelope = append([]byte(nil), d.b...)
		}
		d.b = nil
	}
}

// decodeEvent reads a log record into an event whose envelope is b's own
// bytes: b must not change after.
func decodeEvent(b []byte) (Event, error) {
	var ev Event
	if len(b) == 0 || b[0] != kindLog {
		return ev, errCorrupt
	}
	d := decoder{b: b[1:], shared: true}
	d.event(&ev)
	return ev, d.err
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) == 0 || b[0] != kindDelivery {
		return r, errCorrupt
	}
	d := decoder{b: b[1:]}
	r.Attempts = int(d.uvarint())
	r.FirstTry = fromNanos(d.varint())
	r.FailedAt = fromNanos(d.varint())
	r.Reason = d.string()
	d.event(&r.Event)
	return r, d.err
}

// Keys. Sequences and times are big-endian so that bbolt's byte order is
// their numeric order.

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

func keySeq(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

func timeBytes(t time.Time) uint64 {
	n := t.UnixNano()
	if t.IsZero() || n < 0 {
		return 0
	}
	return uint64(n)
}

// retryKey orders the schedule by due time, then id.
func retryKey(due time.Time, id string) []byte {
	k := make([]byte, 0, 8+len(id))
	k = binary.BigEndian.AppendUint64(k, timeBytes(due))
	return append(k, id...)
}

func retryDue(k []byte) time.Time {
	if len(k) < 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC()
}

// instancePrefix starts every dead-letter key: the instance with its
// length, so that one instance's name is never a prefix of another's keys.
func instancePrefix(instance string) []byte {
	return appendString(make([]byte, 0, binary.MaxVarintLen32+len(instance)+8+32), instance)
}

// deadKey orders one instance's dead letters by failure time, then id.
func deadKey(instance string, failed uint64, id string) []byte {
	k := binary.BigEndian.AppendUint64(instancePrefix(instance), failed)
	return append(k, id...)
}

// deadIndexKey finds a dead letter's failure time by id.
func deadIndexKey(instance, id string) []byte {
	return append(instancePrefix(instance), id...)
}
