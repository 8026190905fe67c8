package spool

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The partitions: each is held by one host at a time, through a lease
// key that holds the host's id and expires after TakeoverAfter unless
// renewed. Every host runs balance every TakeoverAfter/3: it renews its
// heartbeat and its leases, hands over what it holds beyond its share
// (once nothing of it is leased), and takes free partitions up to its
// share, with what their previous holder left pending.

func (r *Redis) balancer() {
	defer r.loops.Done()
	every := max(r.opts.TakeoverAfter/3, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(r.opts.TakeoverAfter/2, every))
		r.balance(ctx)
		cancel()
	}
}

// heldLocked lists the partitions held; r.mu is held.
func (r *Redis) heldLocked() []int {
	out := make([]int, 0, len(r.held))
	for p := range r.held {
		out = append(out, p)
	}
	return out
}

// balance runs one round; see above.
func (r *Redis) balance(ctx context.Context) {
	err := r.balanceRound(ctx)
	if ctx.Err() == nil || err == nil {
		r.setHealth(err)
	}
}

func (r *Redis) balanceRound(ctx context.Context) error {
	ttl := r.opts.TakeoverAfter
	now := time.Now()
	pipe := r.rdb.Pipeline()
	pipe.ZAdd(ctx, r.kHosts(), redis.Z{Score: float64(now.UnixMilli()), Member: r.host})
	pipe.ZRemRangeByScore(ctx, r.kHosts(), "-inf", strconv.FormatInt(now.Add(-ttl).UnixMilli(), 10))
	hosts := pipe.ZRange(ctx, r.kHosts(), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	alive := max(len(hosts.Val()), 1)
	share := (r.opts.Partitions + alive - 1) / alive

	r.mu.RLock()
	mine := r.heldLocked()
	r.mu.RUnlock()
	for _, p := range mine {
		ok, err := scriptRenew.Run(ctx, r.rdb, []string{r.kLease(p)}, r.host, ttl.Milliseconds()).Int()
		if err != nil {
			return err
		}
		if ok == 0 {
			r.logger.Warn("lost a partition to another host (this host could not renew its lease in time); what it had leased is delivered there", "partition", p)
			r.drop(p)
		}
	}

	// Hand over what is beyond the share, once nothing of it is leased.
	r.mu.Lock()
	kept := 0
	for p := range r.opts.Partitions {
		if h := r.held[p]; h != nil && !h.draining {
			kept++
			if kept > share {
				h.draining = true
			}
		}
	}
	var draining []int
	for p, h := range r.held {
		if h.draining {
			draining = append(draining, p)
		}
	}
	r.mu.Unlock()
	for _, p := range draining {
		if r.inFlight(p) > 0 {
			continue
		}
		if err := scriptRelease.Run(ctx, r.rdb, []string{r.kLease(p)}, r.host).Err(); err != nil {
			return err
		}
		r.drop(p)
		r.logger.Debug("handed over a partition", "partition", p, "hosts", alive)
	}

	// Take free partitions up to the share, starting at a place of this
	// host's own so that hosts starting together rarely collide.
	start := r.partition(r.host)
	for i := range r.opts.Partitions {
		if kept >= share {
			break
		}
		p := (start + i) % r.opts.Partitions
		r.mu.RLock()
		have := r.held[p] != nil
		r.mu.RUnlock()
		if have {
			continue
		}
		ok, err := r.rdb.SetNX(ctx, r.kLease(p), r.host, ttl).Result()
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		r.mu.Lock()
		r.held[p] = &held{claiming: true}
		r.mu.Unlock()
		kept++
	}
	// Claim what the previous holders left pending (again, for what a
	// failed round left unclaimed), then let the partitions be leased.
	r.mu.RLock()
	var claiming []int
	for p, h := range r.held {
		if h.claiming {
			claiming = append(claiming, p)
		}
	}
	sinks := make([]*rsink, 0, len(r.sinks))
	for _, s := range r.sinks {
		if !s.broadcast {
			sinks = append(sinks, s)
		}
	}
	r.mu.RUnlock()
	for _, p := range claiming {
		for _, s := range sinks {
			if err := r.claim(ctx, s, p, 0); err != nil {
				return err
			}
		}
		r.mu.Lock()
		if h := r.held[p]; h != nil {
			h.claiming = false
		}
		r.mu.Unlock()
		for _, s := range sinks {
			s.signal()
		}
	}
	// Sweep: entries of held partitions pending at another consumer for
	// longer than a takeover are claimed too. They are left when a host
	// lost a partition with entries read but not yet handed out (Redis
	// unreachable for longer than TakeoverAfter), or when a Resolve failed
	// there; nobody else would deliver them.
	r.mu.RLock()
	var sweep []int
	for p, h := range r.held {
		if !h.claiming && !h.draining {
			sweep = append(sweep, p)
		}
	}
	r.mu.RUnlock()
	for _, p := range sweep {
		for _, s := range sinks {
			if err := r.claim(ctx, s, p, ttl); err != nil {
				return err
			}
		}
	}
	return r.forgetDeadHosts(ctx, hosts.Val())
}

// drop forgets a partition this host no longer holds: what it released
// of it is the next holder's to take over.
func (r *Redis) drop(p int) {
	r.mu.Lock()
	delete(r.held, p)
	sinks := make([]*rsink, 0, len(r.sinks))
	for _, s := range r.sinks {
		sinks = append(sinks, s)
	}
	r.mu.Unlock()
	for _, s := range sinks {
		if s.broadcast {
			continue
		}
		s.mu.Lock()
		keep := s.released[:0]
		for _, l := range s.released {
			if l.part == p {
				if l.retry {
					delete(s.leasedRetry, l.ref)
				}
				continue
			}
			keep = append(keep, l)
		}
		clear(s.released[len(keep):])
		s.released = keep
		claimed := s.claimed[:0]
		for _, l := range s.claimed {
			if l.part != p {
				claimed = append(claimed, l)
			}
		}
		clear(s.claimed[len(claimed):])
		s.claimed = claimed
		s.mu.Unlock()
	}
}

// forgetDeadHosts deletes the broadcast groups of hosts that stopped:
// nobody reads them, and they would hold back the log's trimming.
func (r *Redis) forgetDeadHosts(ctx context.Context, alive []string) error {
	live := make(map[string]bool, len(alive))
	for _, h := range alive {
		live[h] = true
	}
	groups, err := r.rdb.SMembers(ctx, r.kSinks()).Result()
	if err != nil {
		return err
	}
	for _, g := range groups {
		_, host, ok := strings.Cut(g, "@")
		if !ok || live[host] {
			continue
		}
		if err := r.forgetGroup(ctx, g); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		r.logger.Debug("deleted the broadcast group of a stopped host", "group", g)
	}
	return nil
}
