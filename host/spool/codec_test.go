package spool

import (
	"context"
	"errors"
	bolt "go.etcd.io/bbolt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	events := []Event{
		{ID: "01HZX", Instance: "inst", Event: "MESSAGES_UPSERT", Envelope: []byte(`{"a":1}`)},
		{ID: "x"},
		{ID: "ünï", Instance: strings.Repeat("i", 300), Event: "CALL", Envelope: make([]byte, 1<<20)},
	}
	for _, ev := range events {
		got, err := decodeEvent(encodeEvent(&ev))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("event round trip: got %+v, want %+v", got, ev)
		}
	}
	recs := []record{
		{Event: events[0], Attempts: 3, FirstTry: time.Unix(1700000000, 123).UTC(), FailedAt: time.Unix(1700000100, 0).UTC(), Reason: "HTTP 500: boom"},
		{Event: Event{ID: "y"}}, // an empty envelope decodes as nil
	}
	for _, r := range recs {
		got, err := decodeRecord(encodeRecord(&r))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("record round trip: got %+v, want %+v", got, r)
		}
	}
}

func TestCodecCorrupt(t *testing.T) {
	good := encodeRecord(&record{Event: Event{ID: "abc", Instance: "inst"}, Attempts: 1, Reason: "r"})
	cases := map[string][]byte{
		"empty":        nil,
		"wrong kind":   encodeEvent(&Event{ID: "abc"}),
		"cut":          good[:4],
		"long string":  {kindDelivery, 0x01, 0x00, 0x00, 0x7f, 'a'},
		"bad varint":   {kindDelivery, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"cut in event": good[:len(good)-6],
	}
	for name, b := range cases {
		if _, err := decodeRecord(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := decodeEvent([]byte{kindLog, 0x05, 'a'}); err == nil {
		t.Error("event with a cut id: no error")
	}
}

// TestCommitRerun puts a failing op between two appends in one batch:
// the failing op gets its error, and the appends are committed once each
// (the batch is run again without the failing op).
func TestCommitRerun(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	register(t, s, "a")
	first, err := s.appendOp(events("a", 2))
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.appendOp(events("b", 2))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	bad := &op{apply: func(w *wtx) error {
		if err := w.tx.Bucket(bucketMeta).Put([]byte("junk"), []byte("x")); err != nil {
			return err
		}
		return boom
	}}
	batch := []*op{first, bad, second}
	for _, o := range batch {
		o.done = make(chan error, 1)
	}
	// No other call is running, so this may stand in for the writer.
	s.commit(batch, false)
	if err := <-bad.done; !errors.Is(err, boom) {
		t.Fatalf("failing op: %v, want boom", err)
	}
	if err := <-first.done; err != nil {
		t.Fatal(err)
	}
	if err := <-second.done; err != nil {
		t.Fatal(err)
	}
	got := poll(t, s, "a", 10)
	wantIDs(t, "committed", ids(got), []string{"a-0000", "a-0001", "b-0000", "b-0001"})
	if st := s.Stats(); st.Events != 4 {
		t.Fatalf("%d events, want 4", st.Events)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta).Get([]byte("junk")) != nil {
			return errors.New("the failing op's write was committed")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The sequence went on from 4.
	appendT(t, s, events("c", 1)...)
	if err := s.Append(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "after", ids(poll(t, s, "a", 10)), []string{"c-0000"})
}
