package sinkv1

import "testing"

// TestBufferPoolTiers: a buffer has the length asked for and the capacity
// of the smallest tier that holds it, or is made to measure over the
// largest, whether the pool had one or not.
func TestBufferPoolTiers(t *testing.T) {
	p := newTiers(256, 4<<10)
	for _, tc := range []struct{ n, cap int }{{0, 256}, {1, 256}, {256, 256}, {257, 4 << 10}, {4 << 10, 4 << 10}, {5000, 5000}} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want %d, %d", tc.n, len(*b), cap(*b), tc.n, tc.cap)
		}
		p.Put(b)
	}
}
