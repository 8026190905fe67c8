package sinkv1

import (
	"sync"

	"google.golang.org/grpc/mem"
)

// BufferPool is the pool of read buffers for both ends of the plugin
// link (DialOptions and ServerOptions), and of the buffers PooledCodec
// marshals into and joins a message's frames into.
// gRPC's default pool clears a buffer's whole capacity each time it hands
// one out (up to 16 KB for every frame of a batch): 6 % of the host's CPU
// profile in the bench's lane scenario. gRPC fills every buffer it reads
// into before using it, so these are handed out as they are; CPU per
// event of that scenario went from 29–30 to 27–29 µs (host) and 75 to
// 69–73 µs (webhook plugin), three runs each. gRPC's codec marshals into
// the default pool too, and a batch of 100 events of 1.2 KB (120 KB) takes
// a 1 MB buffer, cleared whole, which protobuf then writes over: another
// 6 % of the host's profile under a broker load. PooledCodec writes into
// one of these; BenchmarkMarshalDeliverRequest, 5 runs each: 34–52 µs per
// batch with gRPC's codec, 16–22 µs with PooledCodec (16 B allocated
// either way). Sizes are the default pool's tiers, 256 B, 4 KB, 16 KB
// (a frame), 32 KB and 1 MB, and 128 KB: a batch of 100 events of about
// 1 KB then holds 128 KB while it travels, not 1 MB.
var BufferPool mem.BufferPool = newTiers(256, 4<<10, 16<<10, 32<<10, 128<<10, 1<<20)

type tiers struct {
	sizes []int
	pools []sync.Pool
}

func newTiers(sizes ...int) *tiers {
	return &tiers{sizes: sizes, pools: make([]sync.Pool, len(sizes))}
}

// Get returns a buffer of length n from the smallest tier that holds n,
// or a new one when n is over the largest.
func (t *tiers) Get(n int) *[]byte {
	for i, size := range t.sizes {
		if n > size {
			continue
		}
		if b, ok := t.pools[i].Get().(*[]byte); ok {
			*b = (*b)[:n]
			return b
		}
		b := make([]byte, n, size)
		return &b
	}
	b := make([]byte, n)
	return &b
}

// Put keeps a buffer in the largest tier it can serve; one smaller than
// every tier is dropped.
func (t *tiers) Put(b *[]byte) {
	c := cap(*b)
	for i := len(t.sizes) - 1; i >= 0; i-- {
		if c >= t.sizes[i] {
			if c == t.sizes[i] {
				t.pools[i].Put(b)
			}
			return
		}
	}
}
