package sdk

import "sync"

// Lanes splits a batch's work by destination (an app, a queue, a URL) so
// that each destination gets its items in order while different ones are
// sent to in parallel. The zero value is empty and ready to use.
//
//	var lanes sdk.Lanes[entry]
//	for _, d := range batch {
//		e := newEntry(d)
//		lanes.Add(e.queue, e)
//	}
//	lanes.Run(8, func(queue string, entries []entry) {
//		for _, e := range entries {
//			acks.Done(e.id, send(ctx, queue, e))
//		}
//	})
type Lanes[T any] struct {
	keys  []string
	items map[string][]T
}

// Add puts item at the end of key's lane.
func (l *Lanes[T]) Add(key string, item T) {
	if l.items == nil {
		l.items = map[string][]T{}
	}
	if _, ok := l.items[key]; !ok {
		l.keys = append(l.keys, key)
	}
	l.items[key] = append(l.items[key], item)
}

// Run calls send once a lane, with the lane's items in the order they were
// added, on up to n lanes at once, lanes started in the order their first
// item was added; it returns when every call has.
func (l *Lanes[T]) Run(n int, send func(key string, items []T)) {
	sem := make(chan struct{}, max(n, 1))
	var wg sync.WaitGroup
	for _, k := range l.keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			send(k, l.items[k])
		})
	}
	wg.Wait()
}
