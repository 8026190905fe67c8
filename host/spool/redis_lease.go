package spool

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// truncateAfter is how many entries of a partition resolved since its last
// trim make the next Resolve trim it.
const truncateAfter = 512

// leasePoll is how long a blocked Lease waits at most before it looks at
// Redis again, should a wake-up message have been lost.
const leasePoll = time.Second

// rsink is one registered sink on this host: what it has leased lives
// here (and, for log entries, in the group's pending list in Redis).
type rsink struct {
	name      string
	group     string
	broadcast bool
	wake      chan struct{}

	mu          sync.Mutex
	leases      map[string][]*rlease // by delivery id
	released    []*rlease            // handed back: leased again first
	claimed     []*rlease            // taken over from the log's pending entries: leased as the log
	leasedRetry map[string]struct{}  // retry members leased or released
	resolved    map[int]int          // log entries resolved per partition since its last trim
}

// rlease is one leased delivery: a log entry (ref is its stream id) or
// a retry (ref is its member in the partition's retry set).
type rlease struct {
	d     Delivery
	part  int
	ref   string
	retry bool
}

func newRSink(name, group string, broadcast bool) *rsink {
	return &rsink{
		name: name, group: group, broadcast: broadcast,
		wake:        make(chan struct{}, 1),
		leases:      make(map[string][]*rlease),
		leasedRetry: make(map[string]struct{}),
		resolved:    make(map[int]int),
	}
}

func (s *rsink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// readable lists the partitions s may lease new deliveries from: every
// one for a broadcast sink, else those this host holds and is not
// handing over.
func (r *Redis) readable(s *rsink) []int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []int
	for p := range r.opts.Partitions {
		if h := r.held[p]; s.broadcast || (h != nil && !h.draining && !h.claiming) {
			out = append(out, p)
		}
	}
	return out
}

// holds reports whether s may still deliver what it leased of p.
func (r *Redis) holds(s *rsink, p int) bool {
	if s.broadcast {
		return true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.held[p] != nil
}

// Lease returns up to max deliveries for sink from the partitions this
// host holds: released and taken-over ones first, then due retries (at
// most half of max before the log), then the log, then more retries. It
// blocks until there is one, ctx is done or the spool is closed.
func (r *Redis) Lease(ctx context.Context, name string, limit int) ([]Delivery, error) {
	if limit < 1 {
		return nil, fmt.Errorf("spool: lease: max %d, want at least 1", limit)
	}
	if err := r.enter(); err != nil {
		return nil, err
	}
	defer r.calls.Done()
	s, err := r.sink(name)
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(leasePoll)
	defer timer.Stop()
	for {
		out, due, err := r.take(ctx, s, limit)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("spool: lease: %w", ctx.Err())
			}
			return nil, fmt.Errorf("spool: lease: redis: %w", err)
		}
		if len(out) > 0 {
			return out, nil
		}
		wait := leasePoll
		if !due.IsZero() {
			wait = min(wait, time.Until(due))
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("spool: lease: %w", ctx.Err())
		case <-r.done:
			return nil, ErrClosed
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// retryEntry is a member of a retry set, read for a Lease.
type retryEntry struct {
	part int
	due  float64
	ref  string
}

// take leases what is available now. With nothing, it returns when the
// earliest retry not leased comes due (zero if none).
func (r *Redis) take(ctx context.Context, s *rsink, max int) (out []Delivery, due time.Time, err error) {
	rctx := ctx
	if ctx.Err() != nil { // a poll: still read Redis
		rctx = context.Background()
	}
	rctx, cancel := context.WithTimeout(rctx, redisTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := r.now()
	var bytes int
	full := func() bool { return len(out) >= max || bytes >= leaseMaxBytes }
	var taken []*rlease
	add := func(l *rlease) {
		taken = append(taken, l)
		out = append(out, l.d)
		bytes += len(l.d.Envelope)
	}

	// Released first, of partitions still held.
	s.released = r.serve(s, s.released, full, add)
	defer func() {
		if err != nil { // Redis failed midway: hand back what was taken
			s.released = append(taken, s.released...)
			return
		}
		for _, l := range taken {
			s.leases[l.d.ID] = append(s.leases[l.d.ID], l)
		}
	}()
	if full() {
		s.signal()
		return out, time.Time{}, nil
	}

	parts := r.readable(s)
	if len(parts) == 0 {
		return out, time.Time{}, nil
	}
	// The retry sets, by due time.
	pipe := r.rdb.Pipeline()
	zs := make([]*redis.ZSliceCmd, len(parts))
	for i, p := range parts {
		zs[i] = pipe.ZRangeArgsWithScores(rctx, redis.ZRangeArgs{
			Key: r.kRetry(s.group, p), Start: "-inf", Stop: "+inf", ByScore: true,
			Count: int64(max + len(s.leasedRetry) + 1),
		})
	}
	if _, err := pipe.Exec(rctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, time.Time{}, err
	}
	var retries []retryEntry
	for i, z := range zs {
		for _, m := range z.Val() {
			ref := m.Member.(string)
			if _, leased := s.leasedRetry[ref]; !leased {
				retries = append(retries, retryEntry{part: parts[i], due: m.Score, ref: ref})
			}
		}
	}
	sort.SliceStable(retries, func(i, j int) bool { return retries[i].due < retries[j].due })
	nowMs := float64(now.UnixMilli())
	takeRetries := func(limit int) error {
		for n := 0; len(retries) > 0 && !full() && n < limit; n++ {
			e := retries[0]
			if e.due > nowMs {
				due = time.UnixMilli(int64(e.due))
				return nil
			}
			retries = retries[1:]
			rec, err := decodeRecord([]byte(e.ref))
			if err != nil {
				return fmt.Errorf("retry of partition %d: %w", e.part, err)
			}
			first := rec.FirstTry
			if first.IsZero() {
				first = now
			}
			s.leasedRetry[e.ref] = struct{}{}
			add(&rlease{
				d:    Delivery{Event: rec.Event, Attempt: rec.Attempts + 1, FirstTry: first, LastError: rec.Reason},
				part: e.part, ref: e.ref, retry: true,
			})
		}
		if len(retries) > 0 && retries[0].due > nowMs {
			due = time.UnixMilli(int64(retries[0].due))
		}
		return nil
	}
	if err := takeRetries(max - max/2); err != nil {
		return nil, time.Time{}, err
	}

	// The log: first what was taken over (pending, from the log's
	// older part), then what the group has not yet handed to anyone. More
	// than asked for may come back (COUNT is per stream): the rest waits
	// with the claimed ones, to be leased first next time.
	s.claimed = r.serve(s, s.claimed, full, add)
	if !full() {
		streams := make([]string, 0, 2*len(parts))
		for _, p := range parts {
			streams = append(streams, r.kLog(p))
		}
		for range parts {
			streams = append(streams, ">")
		}
		res, err := r.rdb.XReadGroup(rctx, &redis.XReadGroupArgs{
			Group: s.group, Consumer: r.host, Streams: streams, Count: int64(max - len(out)), Block: -1,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, time.Time{}, err
		}
		for _, st := range res {
			p, _ := strconv.Atoi(st.Stream[strings.LastIndexByte(st.Stream, ':')+1:])
			for _, m := range st.Messages {
				l, err := r.logLease(m, p, now)
				if err != nil {
					return nil, time.Time{}, err
				}
				if full() {
					s.claimed = append(s.claimed, l)
				} else {
					add(l)
				}
			}
		}
	}
	if err := takeRetries(max); err != nil {
		return nil, time.Time{}, err
	}
	if len(s.released)+len(s.claimed) > 0 || full() {
		s.signal()
	}
	if len(out) > 0 {
		due = time.Time{}
	}
	return out, due, nil
}

// serve adds the leases of list to a Lease until it is full, and returns
// those left for the next one. Those of partitions this host no longer
// holds are forgotten: the partition's new holder claims them.
func (r *Redis) serve(s *rsink, list []*rlease, full func() bool, add func(*rlease)) []*rlease {
	keep := list[:0]
	for _, l := range list {
		switch {
		case !r.holds(s, l.part):
			if l.retry {
				delete(s.leasedRetry, l.ref)
			}
		case full():
			keep = append(keep, l)
		default:
			add(l)
		}
	}
	clear(list[len(keep):])
	return keep
}

// logLease makes the lease of a log entry read from partition p.
func (r *Redis) logLease(m redis.XMessage, p int, now time.Time) (*rlease, error) {
	raw, _ := m.Values["e"].(string)
	ev, err := decodeEvent([]byte(raw))
	if err != nil {
		return nil, fmt.Errorf("log entry %s of partition %d: %w", m.ID, p, err)
	}
	return &rlease{d: Delivery{Event: ev, Attempt: 1, FirstTry: now}, part: p, ref: m.ID}, nil
}

// claim takes over, for s, what the group has pending in partition p
// and idle for minIdle or more (left leased by the partition's previous
// holder), to be leased as the log's oldest part.
func (r *Redis) claim(ctx context.Context, s *rsink, p int, minIdle time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mine := make(map[string]bool)
	for _, ls := range s.leases {
		for _, l := range ls {
			mine[l.ref] = true
		}
	}
	for _, l := range append(s.released, s.claimed...) {
		mine[l.ref] = true
	}
	start := "0-0"
	now := time.Now()
	n := 0
	for {
		msgs, next, err := r.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: r.kLog(p), Group: s.group, Consumer: r.host, MinIdle: minIdle, Start: start, Count: claimBatch,
		}).Result()
		if err != nil {
			return fmt.Errorf("take over partition %d: %w", p, err)
		}
		for _, m := range msgs {
			if mine[m.ID] {
				continue
			}
			l, err := r.logLease(m, p, now)
			if err != nil {
				return err
			}
			s.claimed = append(s.claimed, l)
			n++
		}
		if next == "0-0" || next == "" {
			break
		}
		start = next
	}
	if n > 0 {
		r.logger.Info("took over deliveries another host had leased", "sink", s.name, "partition", p, "count", n)
		s.signal()
	}
	return nil
}

// inFlight counts what this host has leased or released of partition p.
func (r *Redis) inFlight(p int) int {
	r.mu.RLock()
	sinks := make([]*rsink, 0, len(r.sinks))
	for _, s := range r.sinks {
		if !s.broadcast {
			sinks = append(sinks, s)
		}
	}
	r.mu.RUnlock()
	n := 0
	for _, s := range sinks {
		s.mu.Lock()
		for _, ls := range s.leases {
			for _, l := range ls {
				if l.part == p {
					n++
				}
			}
		}
		for _, l := range append(s.released, s.claimed...) {
			if l.part == p {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// Resolve settles leased deliveries in one script. A source another host
// has taken over and settled meanwhile is left as that host left it. When
// Redis cannot be reached, the deliveries are released (and leased again
// once it is back): nothing is lost, some may be delivered twice.
func (r *Redis) Resolve(name string, results []Result) error {
	for _, res := range results {
		if res.Outcome < Done || res.Outcome > Defer {
			return fmt.Errorf("spool: resolve %s: unknown outcome %d", res.ID, res.Outcome)
		}
	}
	if err := r.enter(); err != nil {
		return err
	}
	defer r.calls.Done()
	s, err := r.sink(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := r.now()

	type item struct {
		res Result
		l   *rlease
	}
	items := make([]item, 0, len(results))
	taken := make(map[*rlease]bool, len(results))
	var unknown []string
	for _, res := range results {
		var l *rlease
		for _, x := range s.leases[res.ID] {
			if !taken[x] {
				l = x
				break
			}
		}
		if l == nil {
			unknown = append(unknown, res.ID)
			continue
		}
		taken[l] = true
		items = append(items, item{res, l})
	}

	keys := []string{r.kCounts()}
	index := map[string]int{}
	ki := func(k string) int {
		if i, ok := index[k]; ok {
			return i
		}
		keys = append(keys, k)
		index[k] = len(keys)
		return len(keys)
	}
	argv := []any{s.group, r.kChannel()}
	trimmed := map[int]bool{}
	for _, it := range items {
		l, res := it.l, it.res
		if res.Outcome == Release {
			continue
		}
		src := ki(r.kLog(l.part))
		if l.retry {
			src = ki(r.kRetry(s.group, l.part))
		} else {
			s.resolved[l.part]++
			if s.resolved[l.part] >= truncateAfter {
				s.resolved[l.part] = 0
				trimmed[l.part] = true
			}
		}
		op := []any{"done", src, l.ref, 0, 0, "", 0, 0, 0, "", l.d.ID}
		switch res.Outcome {
		case Retry, Defer:
			due := res.Due
			if due.IsZero() {
				due = now
			}
			rec := &record{Event: l.d.Event, Attempts: l.d.Attempt, FirstTry: l.d.FirstTry, Reason: res.Reason}
			if res.Outcome == Defer {
				rec.Attempts, rec.Reason = l.d.Attempt-1, l.d.LastError
			}
			op[0], op[3], op[4], op[5] = "retry", ki(r.kRetry(s.group, l.part)), due.UnixMilli(), encodeRecord(rec)
		case Dead:
			rec := &record{Event: l.d.Event, Attempts: l.d.Attempt, FirstTry: l.d.FirstTry, FailedAt: now, Reason: res.Reason}
			op[0], op[5] = "dead", encodeRecord(rec)
			op[6] = ki(r.kDead(s.group, l.d.Instance))
			op[7] = ki(r.kDeadRec(s.group, l.d.Instance))
			op[8] = ki(r.kDeadIdx(s.group, l.d.Instance))
			op[9] = deadMember(now, l.d.ID)
		}
		argv = append(argv, op...)
	}
	if len(argv) > 2 {
		ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
		err := scriptResolve.Run(ctx, r.rdb, keys, argv...).Err()
		cancel()
		if err != nil {
			for _, it := range items {
				s.dropLease(it.l)
				s.released = append(s.released, it.l)
			}
			s.signal()
			return fmt.Errorf("spool: resolve: redis: %w; the deliveries are leased again", err)
		}
	}

	wake := false
	for _, it := range items {
		s.dropLease(it.l)
		switch it.res.Outcome {
		case Release:
			s.released = append(s.released, it.l)
			wake = true
			continue
		case Retry, Defer:
			wake = true
		}
		if it.l.retry {
			delete(s.leasedRetry, it.l.ref)
		}
	}
	if wake {
		s.signal()
	}
	for p := range trimmed {
		ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
		_ = scriptTrim.Run(ctx, r.rdb, []string{r.kCounts(), r.kLog(p)}).Err() // tried again at the next 512
		cancel()
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: %s", ErrNotLeased, strings.Join(unknown, ", "))
	}
	return nil
}

func (s *rsink) dropLease(l *rlease) {
	ls := s.leases[l.d.ID]
	for i, x := range ls {
		if x == l {
			ls = append(ls[:i], ls[i+1:]...)
			break
		}
	}
	if len(ls) == 0 {
		delete(s.leases, l.d.ID)
	} else {
		s.leases[l.d.ID] = ls
	}
}

// deadMember orders one instance's dead letters by failure time, then id,
// in a set sorted by member (all scores 0).
func deadMember(failed time.Time, id string) string {
	return fmt.Sprintf("%016x", timeBytes(failed)) + id
}
