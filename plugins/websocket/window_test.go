package main

import (
	"fmt"
	"testing"
)

func frames(ids ...string) []*frame {
	out := make([]*frame, len(ids))
	for i, id := range ids {
		out[i] = &frame{id: id, size: 10}
	}
	return out
}

func frameIDs(fs []*frame) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.id)
	}
	return out
}

func TestWindow(t *testing.T) {
	tests := []struct {
		name             string
		maxEvents, bytes int
		push             []string
		since            string
		want             []string
		found            bool
	}{
		{"empty", 5, 1000, nil, "a", []string{}, false},
		{"after the first", 5, 1000, []string{"a", "b", "c"}, "a", []string{"b", "c"}, true},
		{"after the newest", 5, 1000, []string{"a", "b", "c"}, "c", []string{}, true},
		{"unknown id gives all", 5, 1000, []string{"a", "b"}, "x", []string{"a", "b"}, false},
		{"evicted by count", 3, 1000, []string{"a", "b", "c", "d", "e"}, "b", []string{"c", "d", "e"}, false},
		{"oldest kept", 3, 1000, []string{"a", "b", "c", "d", "e"}, "c", []string{"d", "e"}, true},
		{"wrapped ring", 3, 1000, []string{"a", "b", "c", "d", "e", "f", "g"}, "f", []string{"g"}, true},
		{"evicted by bytes", 10, 25, []string{"a", "b", "c", "d"}, "c", []string{"d"}, true},
		{"evicted by bytes, gone", 10, 25, []string{"a", "b", "c", "d"}, "a", []string{"c", "d"}, false},
		{"newest kept over the byte cap", 10, 5, []string{"a", "b"}, "a", []string{"b"}, false},
		{"resume off", 0, 1000, []string{"a", "b"}, "a", []string{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindow(tt.maxEvents, tt.bytes)
			for _, f := range frames(tt.push...) {
				w.push(f)
			}
			got, found := w.after(tt.since)
			if found != tt.found || !equal(frameIDs(got), tt.want) {
				t.Errorf("after(%q) = %v, %v; want %v, %v", tt.since, frameIDs(got), found, tt.want, tt.found)
			}
			if len(w.index) != w.n {
				t.Errorf("index holds %d ids for %d frames", len(w.index), w.n)
			}
		})
	}
}

func TestWindowLongRun(t *testing.T) {
	w := newWindow(7, 1<<20)
	for i := range 1000 {
		w.push(&frame{id: fmt.Sprint(i), size: 1})
		if w.n > 7 || len(w.index) != w.n || w.bytes != w.n {
			t.Fatalf("after %d pushes: n %d, index %d, bytes %d", i+1, w.n, len(w.index), w.bytes)
		}
	}
	got, found := w.after("995")
	if !found || !equal(frameIDs(got), []string{"996", "997", "998", "999"}) {
		t.Errorf("after(995) = %v, %v", frameIDs(got), found)
	}
}
