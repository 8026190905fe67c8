package sdk

import (
	"slices"
	"sync"
	"testing"
)

func TestLanes(t *testing.T) {
	var l Lanes[int]
	for i, k := range []string{"a", "b", "a", "c", "b", "a", "d"} {
		l.Add(k, i)
	}
	var mu sync.Mutex
	got := map[string][]int{}
	running, most := 0, 0
	gate := make(chan struct{})
	var open sync.Once
	l.Run(2, func(k string, items []int) {
		mu.Lock()
		running++
		most = max(most, running)
		full := running == 2
		got[k] = items
		mu.Unlock()
		if full {
			open.Do(func() { close(gate) }) // two lanes at once: let them go
		}
		<-gate
		mu.Lock()
		running--
		mu.Unlock()
	})
	want := map[string][]int{"a": {0, 2, 5}, "b": {1, 4}, "c": {3}, "d": {6}}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Errorf("lane %s got %v, want %v: every item of a lane, in the order added", k, got[k], w)
		}
	}
	if len(got) != len(want) || most != 2 {
		t.Errorf("%d lanes run, at most %d at once; want %d, 2", len(got), most, len(want))
	}
}

func TestLanesEmpty(t *testing.T) {
	var l Lanes[int]
	l.Run(4, func(string, []int) { t.Error("send called for no lane") })
}
