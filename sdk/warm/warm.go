// Package warm readies a process's Go heap before load comes: Heap
// touches memory the heap is about to grow into, so that the page faults
// of that growth are paid at start and not by the first events.
//
// The Go runtime maps new heap memory lazily: the first write to each 4
// KB page faults, and the kernel hands over a zeroed page. On some
// virtual machines that costs 10–14 µs a page (the 2-core AMD VM of issue
// 11), and a sidecar and its plugins fault in their heaps (about 15,000
// pages) while their first second of load arrives. There, under 5,000
// events a second from their start (issue 11's paced load, go run
// ./bench), the p99 from POST to delivery was 34–330 ms (median 91, 24
// rounds); with the host and the plugin warming 64 and 16 MB of heap at
// start, 12–47 ms (median 20, 18 rounds).
//
// Pages the heap does not use are given back to the system by the
// runtime's scavenger: an idle sidecar was back to its usual resident
// memory about two minutes after start, once the runtime's periodic
// collection had run.
package warm

import (
	"math"
	"runtime"
	"runtime/debug"
)

// pageSize is the smallest page the kernel maps; touching one byte of
// each is enough.
const pageSize = 4096

// limitShare bounds Heap to this share of the memory limit (GOMEMLIMIT):
// a host and six plugins that warm at once then take at most a fifth of
// a container's memory limit for it.
const limitShare = 32

// Heap touches up to n bytes of new heap memory, one byte a page, then
// frees them and collects, so that the heap keeps them mapped for what it
// allocates next. It takes at most a 32nd of the memory limit
// (debug.SetMemoryLimit), and returns how many bytes it touched. Call it
// once, at start, before load: it costs a page fault per 4 KB and a
// collection.
func Heap(n int64) int64 {
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		n = min(n, limit/limitShare)
	}
	if n < pageSize {
		return 0
	}
	b := make([]byte, n)
	for i := 0; i < len(b); i += pageSize {
		b[i] = 1
	}
	runtime.GC() // b is dead: its pages are free, and stay mapped
	return n
}
