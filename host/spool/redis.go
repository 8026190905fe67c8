package spool

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// RedisOptions configure the Redis spool.
type RedisOptions struct {
	// Prefix starts every key (default "evorelay:"), so that several
	// deployments can share one Redis.
	Prefix string
	// Limits bound the log, as for the embedded spool.
	Limits Limits
	// Partitions is how many parts the log is cut into (default 16). It
	// must be the same on every host of a deployment: the first host
	// stores it, and the others refuse to start with another.
	Partitions int
	// TakeoverAfter is how long a partition whose holder stopped renewing
	// its lease waits before another host takes it over, with what the
	// holder had leased (default 15s).
	TakeoverAfter time.Duration
	// Broadcast reports the sinks of which every host needs every event
	// (websocket: its clients are connected to one host). nil: none.
	Broadcast func(sink string) bool
	// Logger receives the spool's logs; nil discards them.
	Logger hclog.Logger
}

const (
	defaultPartitions    = 16
	defaultTakeoverAfter = 15 * time.Second
	// redisTimeout bounds one Redis call that has no caller's context.
	redisTimeout = 5 * time.Second
	// claimBatch is how many pending entries one XAUTOCLAIM takes over.
	claimBatch = 1000
)

// Redis is the spool in Redis, shared by every host of a deployment; see
// the package doc for its layout, ordering and takeover.
type Redis struct {
	rdb    redis.UniversalClient
	opts   RedisOptions
	logger hclog.Logger
	host   string // this process's id: its consumer name and lease value
	now    func() time.Time

	done  chan struct{} // closed by Close: wakes Lease, stops the loops
	loops sync.WaitGroup
	calls sync.WaitGroup

	mu     sync.RWMutex
	closed bool
	sinks  map[string]*rsink // registered by this process
	held   map[int]*held     // partitions this host holds

	statsMu sync.Mutex
	last    Stats // the last Stats read, answered while Redis is down

	healthMu sync.Mutex
	health   error // the last Redis error of a background loop, nil when fine
}

var _ Spool = (*Redis)(nil)

// held is a partition this host holds.
type held struct {
	// draining: it is to be given to another host once nothing of it is
	// leased; nothing new of it is leased meanwhile.
	draining bool
	// claiming: just taken, and what its previous holder left pending is
	// not yet claimed for every sink; nothing of it is leased meanwhile,
	// so the claimed entries come before the newer ones.
	claiming bool
}

// OpenRedis opens the spool on rdb (which it does not own: Close leaves
// it open). It checks that Redis keeps what it acknowledges and logs a
// warning naming the setting when it would not, and takes this host's
// share of the partitions. It waits for Redis as long as ctx allows.
func OpenRedis(ctx context.Context, rdb redis.UniversalClient, opts RedisOptions) (*Redis, error) {
	if opts.Prefix == "" {
		opts.Prefix = "evorelay:"
	}
	if opts.Partitions <= 0 {
		opts.Partitions = defaultPartitions
	}
	if opts.TakeoverAfter <= 0 {
		opts.TakeoverAfter = defaultTakeoverAfter
	}
	if opts.Broadcast == nil {
		opts.Broadcast = func(string) bool { return false }
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	r := &Redis{
		rdb:    rdb,
		opts:   opts,
		logger: logger.Named("spool"),
		host:   ulid.Make().String(),
		now:    time.Now,
		done:   make(chan struct{}),
		sinks:  make(map[string]*rsink),
		held:   make(map[int]*held),
	}
	if err := r.checkPartitions(ctx); err != nil {
		return nil, err
	}
	r.checkPersistence(ctx)
	r.balance(ctx)
	r.loops.Add(2)
	go r.balancer()
	go r.listen()
	return r, nil
}

// Keys; see the package doc.
func (r *Redis) key(parts ...string) string { return r.opts.Prefix + strings.Join(parts, ":") }
func (r *Redis) kMeta() string              { return r.key("spool") }
func (r *Redis) kCounts() string            { return r.key("spool", "counts") }
func (r *Redis) kSinks() string             { return r.key("spool", "sinks") }
func (r *Redis) kHosts() string             { return r.key("spool", "hosts") }
func (r *Redis) kChannel() string           { return r.key("spool", "appended") }
func (r *Redis) kLog(p int) string          { return r.key("spool", "log", strconv.Itoa(p)) }
func (r *Redis) kLease(p int) string        { return r.key("spool", "lease", strconv.Itoa(p)) }
func (r *Redis) kRetry(group string, p int) string {
	return r.key("spool", "retry", group, strconv.Itoa(p))
}
func (r *Redis) kDead(group, instance string) string { return r.key("spool", "dead", group, instance) }
func (r *Redis) kDeadRec(group, instance string) string {
	return r.key("spool", "deadrec", group, instance)
}
func (r *Redis) kDeadIdx(group, instance string) string {
	return r.key("spool", "deadidx", group, instance)
}

// partition is the part of the log an instance's events go to.
func (r *Redis) partition(instance string) int {
	h := fnv.New32a()
	h.Write([]byte(instance))
	return int(h.Sum32() % uint32(r.opts.Partitions))
}

// checkPartitions stores the number of partitions, or refuses another.
func (r *Redis) checkPartitions(ctx context.Context) error {
	for {
		err := r.rdb.HSetNX(ctx, r.kMeta(), "partitions", r.opts.Partitions).Err()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("spool: redis: %w", err)
		}
		r.logger.Warn("Redis unreachable; retrying", "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("spool: redis: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
	n, err := r.rdb.HGet(ctx, r.kMeta(), "partitions").Int()
	if err != nil {
		return fmt.Errorf("spool: redis: %w", err)
	}
	if n != r.opts.Partitions {
		return fmt.Errorf("spool: redis: the spool under %q has %d partitions, this host is set to %d; every host of a deployment needs the same", r.opts.Prefix, n, r.opts.Partitions)
	}
	return nil
}

// checkPersistence warns when Redis would lose writes it acknowledged.
func (r *Redis) checkPersistence(ctx context.Context) {
	cfg, err := r.rdb.ConfigGet(ctx, "append*").Result()
	if err != nil {
		r.logger.Warn("cannot read Redis's persistence settings (CONFIG GET is refused?); make sure it runs with appendonly yes and appendfsync everysec or always, or a restart of Redis loses accepted events", "error", err)
		return
	}
	switch {
	case cfg["appendonly"] != "yes":
		r.logger.Warn("Redis runs with appendonly no: a restart of Redis loses accepted events; set appendonly yes (with appendfsync everysec or always)", "appendonly", cfg["appendonly"])
	case cfg["appendfsync"] == "no":
		r.logger.Warn("Redis runs with appendfsync no: a crash of its machine loses accepted events of the last 30 s or so; set appendfsync everysec (loses up to a second) or always", "appendfsync", "no")
	case cfg["appendfsync"] == "everysec":
		r.logger.Info("Redis runs with appendfsync everysec: a crash of its machine (not of Redis alone) may lose the last second of accepted events; appendfsync always loses none")
	}
}

// enter counts a call in, unless the spool is closed.
func (r *Redis) enter() error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ErrClosed
	}
	r.calls.Add(1)
	return nil
}

func (r *Redis) sink(name string) (*rsink, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := r.sinks[name]
	if s == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownSink, name)
	}
	return s, nil
}

// group is the consumer group of a sink: its name, or for a broadcast
// sink its name and this host's id (every host reads all of the log).
func (r *Redis) group(name string) string {
	if r.opts.Broadcast(name) {
		return name + "@" + r.host
	}
	return name
}

// logKeys are the streams of every partition.
func (r *Redis) logKeys() []string {
	keys := make([]string, r.opts.Partitions)
	for p := range keys {
		keys[p] = r.kLog(p)
	}
	return keys
}

// Register adds a sink: a consumer group on every partition, starting at
// the end of the log, or the group as it was when the sink is known.
func (r *Redis) Register(name string) error {
	if name == "" || strings.ContainsAny(name, "@:") {
		return fmt.Errorf("spool: register: sink name %q: empty, or has @ or :", name)
	}
	if err := r.enter(); err != nil {
		return err
	}
	defer r.calls.Done()
	r.mu.RLock()
	known := r.sinks[name] != nil
	r.mu.RUnlock()
	if known {
		return nil
	}
	s := newRSink(name, r.group(name), r.opts.Broadcast(name))
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	keys := append([]string{r.kSinks(), r.kCounts()}, r.logKeys()...)
	if err := scriptRegister.Run(ctx, r.rdb, keys, s.group).Err(); err != nil {
		return fmt.Errorf("spool: register %q: %w", name, err)
	}
	r.mu.Lock()
	if r.sinks[name] == nil {
		r.sinks[name] = s
	}
	mine := r.heldLocked()
	r.mu.Unlock()
	if !s.broadcast {
		// What the partitions' holder before this host left leased.
		for _, p := range mine {
			if err := r.claim(ctx, s, p, 0); err != nil {
				return fmt.Errorf("spool: register %q: %w", name, err)
			}
		}
	}
	return nil
}

// Forget deletes everything the spool keeps for a sink that this process
// has not registered: its groups, retries and dead letters.
func (r *Redis) Forget(name string) error {
	if err := r.enter(); err != nil {
		return err
	}
	defer r.calls.Done()
	if _, err := r.sink(name); err == nil {
		return fmt.Errorf("spool: forget %q: the sink is registered", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if ok, err := r.rdb.SIsMember(ctx, r.kSinks(), name).Result(); err != nil {
		return fmt.Errorf("spool: forget %q: %w", name, err)
	} else if !ok {
		return fmt.Errorf("spool: forget: %w %q", ErrUnknownSink, name)
	}
	if err := r.forgetGroup(ctx, name); err != nil {
		return fmt.Errorf("spool: forget %q: %w", name, err)
	}
	return nil
}

// forgetGroup deletes a consumer group and all it keeps.
func (r *Redis) forgetGroup(ctx context.Context, group string) error {
	keys := append([]string{r.kSinks(), r.kCounts()}, r.logKeys()...)
	for p := range r.opts.Partitions {
		keys = append(keys, r.kRetry(group, p))
	}
	if err := scriptForget.Run(ctx, r.rdb, keys, group, r.opts.Partitions).Err(); err != nil {
		return err
	}
	for _, pattern := range []string{r.kDead(group, "*"), r.kDeadRec(group, "*"), r.kDeadIdx(group, "*")} {
		iter := r.rdb.Scan(ctx, 0, pattern, 100).Iterator()
		for iter.Next(ctx) {
			if err := r.rdb.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Append stores events in Redis, all or none (one script), and returns
// once Redis has them. It returns ErrFull when they would take the log
// past its limits after trimming what every sink is past.
func (r *Redis) Append(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	argv := []any{r.opts.Limits.Events, r.opts.Limits.Bytes, r.kChannel(), len(events), 0}
	keys := []string{r.kCounts(), r.kSinks()}
	keys = append(keys, r.logKeys()...)
	var size int64
	for i := range events {
		ev := &events[i]
		if ev.ID == "" {
			return fmt.Errorf("spool: append: event %d has no id", i)
		}
		rec := encodeEvent(ev)
		size += int64(len(rec))
		argv = append(argv, 3+r.partition(ev.Instance), rec)
	}
	argv[4] = size
	if l := r.opts.Limits; (l.Events > 0 && len(events) > l.Events) || (l.Bytes > 0 && size > l.Bytes) {
		return fmt.Errorf("spool: append: %d events of %d bytes: %w", len(events), size, ErrTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool: append: %w", err)
	}
	if err := r.enter(); err != nil {
		return err
	}
	defer r.calls.Done()
	ok, err := scriptAppend.Run(ctx, r.rdb, keys, argv...).Int()
	if err != nil {
		return fmt.Errorf("spool: append: redis: %w", err)
	}
	if ok == 0 {
		return ErrFull
	}
	r.wakeAll()
	return nil
}

func (r *Redis) wakeAll() {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.sinks {
		s.signal()
	}
}

// listen wakes the Leases of this host when any host appends or
// schedules. A message lost while reconnecting costs at most the Lease's
// poll interval.
func (r *Redis) listen() {
	defer r.loops.Done()
	ctx, cancel := context.WithCancel(context.Background())
	ps := r.rdb.Subscribe(ctx, r.kChannel())
	go func() {
		<-r.done
		cancel()
		ps.Close()
	}()
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			select {
			case <-r.done:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if _, ok := msg.(*redis.Message); ok {
			r.wakeAll()
		}
	}
}

// Stats reads the counters every host keeps in Redis; while Redis is
// unreachable it answers the last ones read.
func (r *Redis) Stats() Stats {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st := Stats{Limit: r.opts.Limits, Backlog: map[string]int{}, Dead: map[string]int{}}
	c, err := r.rdb.HGetAll(ctx, r.kCounts()).Result()
	if err != nil {
		r.statsMu.Lock()
		defer r.statsMu.Unlock()
		return r.last
	}
	r.mu.RLock()
	names := make(map[string]string, len(r.sinks)) // group → sink
	for _, s := range r.sinks {
		names[s.group] = s.name
	}
	r.mu.RUnlock()
	for k, v := range c {
		n, _ := strconv.ParseInt(v, 10, 64)
		what, group, _ := strings.Cut(k, ":")
		name := group
		if sink, ok := names[group]; ok {
			name = sink
		} else if strings.Contains(group, "@") {
			continue // another host's broadcast group
		}
		switch what {
		case "events":
			st.Events = int(n)
		case "bytes":
			st.Bytes = n
		case "scheduled":
			st.Scheduled = int(n)
		case "backlog":
			st.Backlog[name] = int(n)
		case "dead":
			st.Dead[name] = int(n)
		}
	}
	r.statsMu.Lock()
	r.last = st
	r.statsMu.Unlock()
	return st
}

// Ping reports whether Redis answers, for readiness: nil, or why not.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Close stops the background loops, waits for the calls in progress (a
// blocked Lease returns ErrClosed) and gives up this host's partitions,
// so that others take them at once. What is leased and not resolved
// stays pending in Redis, and is taken over with the partition.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	close(r.done)
	r.mu.Unlock()
	r.calls.Wait()
	r.loops.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	r.mu.Lock()
	mine := r.heldLocked()
	clear(r.held)
	r.mu.Unlock()
	for _, p := range mine {
		_ = scriptRelease.Run(ctx, r.rdb, []string{r.kLease(p)}, r.host).Err()
	}
	_ = r.rdb.ZRem(ctx, r.kHosts(), r.host).Err()
	return nil
}

// setHealth records the outcome of a background loop's round.
func (r *Redis) setHealth(err error) {
	r.healthMu.Lock()
	defer r.healthMu.Unlock()
	if err != nil && r.health == nil {
		r.logger.Warn("Redis unreachable: deliveries pause until it is back", "error", err)
	} else if err == nil && r.health != nil {
		r.logger.Info("Redis reachable again: deliveries resume")
	}
	r.health = err
}
