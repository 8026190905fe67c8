package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// runPaced offers -rate events/s at a steady pace for -duration, one a
// POST, over up to -posters connections (a POST waits for a free one),
// and reports the delivered rate, whether the sidecar kept up, and the
// latency from the start of each event's POST to its arrival.
func runPaced(l load) (row, error) {
	if l.n <= 0 {
		return row{}, fmt.Errorf("-rate %d × -duration %s is no event", *paceRate, *paceFor)
	}
	recv, err := newReceiver()
	if err != nil {
		return row{}, err
	}
	defer recv.Close()
	s, err := webhookSidecar(l, recv)
	if err != nil {
		return row{}, err
	}
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	pctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	reqs := l.ingestRequests()
	posted := make([]atomic.Int64, l.n)   // when each POST started, since epoch
	answered := make([]atomic.Int64, l.n) // when its 202 came back

	t := recv.expect(l.n)
	s.profile()
	start := since()
	due := func(k int) time.Duration { return start + time.Duration(k)*time.Second/time.Duration(*paceRate) }
	jobs := make(chan int, l.n)
	go func() {
		// The feeder sleeps to the next due time and hands over every
		// event due by then; the posters take them as they are free.
		defer close(jobs)
		for k := range l.n {
			if pctx.Err() != nil {
				return
			}
			if d := time.Until(epoch.Add(due(k))); d > 0 {
				time.Sleep(d)
			}
			jobs <- k
		}
	}()
	client := newPostClient(l.posters)
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	var maxLate atomic.Int64
	for range l.posters {
		wg.Go(func() {
			for k := range jobs {
				if pctx.Err() != nil {
					continue
				}
				now := since()
				posted[k].Store(int64(now))
				for late := int64(now - due(k)); ; {
					m := maxLate.Load()
					if late <= m || maxLate.CompareAndSwap(m, late) {
						break
					}
				}
				if err := postOne(pctx, client, s.ingestTarget(), reqs[k]); err != nil {
					stop(err)
				}
				answered[k].Store(int64(since()))
			}
		})
	}
	wg.Wait()
	ingested := since() - start
	if err := context.Cause(pctx); err != nil {
		return row{}, err
	}
	if err := t.wait(ctx); err != nil {
		return row{}, err
	}
	s.prof.loadDone()

	delivered := rate(l.n, t.last()-start)
	lat := make([]time.Duration, l.n)
	var warm []time.Duration // of the events posted after the first second
	// The two legs of each event's latency, for the events posted in the
	// first half second and after it: which side a slow start is on.
	var accept, deliver [2][]time.Duration
	for k := range lat {
		at, accepted, arrived := time.Duration(posted[k].Load()), time.Duration(answered[k].Load()), time.Duration(t.at[k].Load())
		lat[k] = arrived - at
		if at >= start+time.Second {
			warm = append(warm, lat[k])
		}
		later := 0
		if at >= start+time.Second/2 {
			later = 1
		}
		accept[later] = append(accept[later], accepted-at)
		deliver[later] = append(deliver[later], arrived-accepted)
	}
	slices.Sort(lat)
	slices.Sort(warm)
	p50, p99 := lat[l.n/2], lat[min(l.n-1, l.n*99/100)]
	kept := delivered >= 0.98*float64(*paceRate)
	verdict := "fell behind"
	if kept {
		verdict = "kept up"
	}
	fmt.Printf("   offered %d events/s for %s (%d events); POSTs started up to %s late; ingest %.0f events/s\n",
		*paceRate, *paceFor, l.n, time.Duration(maxLate.Load()).Round(100*time.Microsecond), rate(l.n, ingested))
	line("evorelay: POST /events → webhook → receiver", delivered, 0, fmt.Sprintf("%.2f× offered, %s", delivered/float64(*paceRate), verdict))
	fmt.Printf("   ingest → delivered: p50 %s, p99 %s, max %s   goal: kept up, p99 ≤ 50ms\n",
		round(p50), round(p99), round(lat[l.n-1]))
	if len(warm) > 0 {
		// A new sidecar's first second of load is where a slow start
		// shows (sdk/warm): this is the rest.
		fmt.Printf("   posted after the first second (%d events): p50 %s, p99 %s, max %s\n",
			len(warm), round(warm[len(warm)/2]), round(warm[len(warm)*99/100]), round(warm[len(warm)-1]))
	}
	for i, when := range []string{"posted in the first half second", "posted after it"} {
		if len(accept[i]) > 0 {
			fmt.Printf("   %s: POST → 202 %s, 202 → delivered %s\n", when, percentiles(accept[i]), percentiles(deliver[i]))
		}
	}
	return row{name: l.scenario, bare: fmt.Sprintf("%d/s offered", *paceRate), evorelay: fmt.Sprintf("%s, p99 %s", perSecond(delivered), round(p99)),
		ratio: delivered / float64(*paceRate), goal: "kept up, p99 ≤ 50ms: " + verdict, p99: p99}, nil
}

// percentiles sorts ds and says their p50 and p99.
func percentiles(ds []time.Duration) string {
	slices.Sort(ds)
	return fmt.Sprintf("p50 %s, p99 %s", round(ds[len(ds)/2]), round(ds[min(len(ds)-1, len(ds)*99/100)]))
}

// round rounds a latency for printing.
func round(d time.Duration) time.Duration {
	if d >= 10*time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}
