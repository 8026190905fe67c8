package spool

import (
	"context"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

func TestOldest(t *testing.T) {
	e, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, s := range []string{"a", "b"} {
		if err := e.Register(s); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) }
	var evs []Event
	for i := range 3 {
		evs = append(evs, Event{ID: ulid.MustNew(ulid.Timestamp(at(i)), ulid.DefaultEntropy()).String(), Instance: "i", Event: "E", Envelope: []byte("{}")})
	}
	if err := e.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	check := func(what string, want map[string]time.Time) {
		t.Helper()
		got, err := e.Oldest()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: Oldest = %v, want %v", what, got, want)
		}
		for s, w := range want {
			if !got[s].Equal(w) {
				t.Errorf("%s: sink %s oldest %v, want %v", what, s, got[s], w)
			}
		}
	}
	check("nothing leased", map[string]time.Time{"a": at(0), "b": at(0)})

	lease := func(sink string, n int) []Delivery {
		t.Helper()
		ds, err := e.Lease(context.Background(), sink, n)
		if err != nil || len(ds) != n {
			t.Fatalf("Lease(%s, %d) = %d, %v", sink, n, len(ds), err)
		}
		return ds
	}
	d := lease("a", 2)
	check("leased, not resolved", map[string]time.Time{"a": at(0), "b": at(0)})
	// The first goes to the retry schedule, far ahead; the second is done:
	// a's oldest is still the first, now in its retries.
	if err := e.Resolve("a", []Result{
		{ID: d[0].ID, Outcome: Retry, Due: time.Now().Add(time.Hour), Reason: "down"},
		{ID: d[1].ID, Outcome: Done},
	}); err != nil {
		t.Fatal(err)
	}
	check("one in retries", map[string]time.Time{"a": at(0), "b": at(0)})

	d = lease("b", 3)
	if err := e.Resolve("b", []Result{{ID: d[0].ID, Outcome: Done}, {ID: d[2].ID, Outcome: Done}}); err != nil {
		t.Fatal(err)
	}
	check("b's first done, its second leased", map[string]time.Time{"a": at(0), "b": at(1)})
	if err := e.Resolve("b", []Result{{ID: d[1].ID, Outcome: Done}}); err != nil {
		t.Fatal(err)
	}
	check("b settled", map[string]time.Time{"a": at(0)})
}
