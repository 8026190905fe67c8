package spool

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DeadLetters lists sink's dead letters for instance, newest first (ties
// by id, descending), paged as the embedded spool's are.
func (r *Redis) DeadLetters(name, instance string, limit int, before string) ([]DeadLetter, error) {
	if limit < 0 {
		return nil, fmt.Errorf("spool: dead letters: negative limit %d", limit)
	}
	if err := r.enter(); err != nil {
		return nil, err
	}
	defer r.calls.Done()
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	group, err := r.knownGroup(ctx, name)
	if err != nil {
		return nil, err
	}
	upper := "+"
	if before != "" {
		m, err := r.rdb.HGet(ctx, r.kDeadIdx(group, instance), before).Result()
		if err == nil {
			upper = "(" + m
		} else if t, terr := time.Parse(time.RFC3339Nano, before); terr == nil {
			upper = "(" + fmt.Sprintf("%016x", timeBytes(t))
		} else {
			return nil, fmt.Errorf("spool: dead letters: %w: %q is neither a dead letter of %q nor an RFC 3339 time", ErrBadCursor, before, instance)
		}
	}
	members, err := r.rdb.ZRevRangeByLex(ctx, r.kDead(group, instance), &redis.ZRangeBy{Max: upper, Min: "-", Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("spool: dead letters: %w", err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m[16:]
	}
	recs, err := r.rdb.HMGet(ctx, r.kDeadRec(group, instance), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("spool: dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(recs))
	for i, v := range recs {
		raw, ok := v.(string)
		if !ok {
			continue // discarded meanwhile
		}
		rec, err := decodeRecord([]byte(raw))
		if err != nil {
			return nil, fmt.Errorf("spool: dead letters: %s: %w", ids[i], err)
		}
		out = append(out, DeadLetter{
			Sink: name, ID: rec.ID, Instance: rec.Instance, Event: rec.Event.Event,
			Attempts: rec.Attempts, Reason: rec.Reason, FirstTry: rec.FirstTry, FailedAt: rec.FailedAt,
			Envelope: rec.Envelope,
		})
	}
	return out, nil
}

// knownGroup is the group of a sink registered here or by any host.
func (r *Redis) knownGroup(ctx context.Context, name string) (string, error) {
	if s, err := r.sink(name); err == nil {
		return s.group, nil
	}
	ok, err := r.rdb.SIsMember(ctx, r.kSinks(), name).Result()
	if err != nil {
		return "", fmt.Errorf("spool: redis: %w", err)
	}
	if !ok {
		return "", fmt.Errorf("%w %q", ErrUnknownSink, name)
	}
	return name, nil
}

// Replay moves dead letters back to the retry schedule of their
// partition, due now, keeping their ids; no ids means all of instance's.
func (r *Redis) Replay(name, instance string, ids []string) (int, error) {
	n, err := r.moveDead(name, instance, ids, true)
	if err != nil {
		return 0, fmt.Errorf("spool: replay: %w", err)
	}
	return n, nil
}

// Discard deletes dead letters; no ids means all of instance's.
func (r *Redis) Discard(name, instance string, ids []string) (int, error) {
	n, err := r.moveDead(name, instance, ids, false)
	if err != nil {
		return 0, fmt.Errorf("spool: discard: %w", err)
	}
	return n, nil
}

func (r *Redis) moveDead(name, instance string, ids []string, replay bool) (int, error) {
	if err := r.enter(); err != nil {
		return 0, err
	}
	defer r.calls.Done()
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	group, err := r.knownGroup(ctx, name)
	if err != nil {
		return 0, err
	}
	recs := map[string]string{}
	if len(ids) == 0 {
		if recs, err = r.rdb.HGetAll(ctx, r.kDeadRec(group, instance)).Result(); err != nil {
			return 0, err
		}
	} else {
		vals, err := r.rdb.HMGet(ctx, r.kDeadRec(group, instance), ids...).Result()
		if err != nil {
			return 0, err
		}
		for i, v := range vals {
			if s, ok := v.(string); ok {
				recs[ids[i]] = s
			}
		}
	}
	if len(recs) == 0 {
		return 0, nil
	}
	now := r.now()
	argv := []any{group, r.kChannel(), now.UnixMilli()}
	for id, raw := range recs {
		next := ""
		if replay {
			rec, err := decodeRecord([]byte(raw))
			if err != nil {
				return 0, fmt.Errorf("dead letter %s: %w", id, err)
			}
			rec.Attempts, rec.FirstTry, rec.FailedAt = 0, time.Time{}, time.Time{}
			next = string(encodeRecord(&rec))
		}
		argv = append(argv, id, next)
	}
	keys := []string{r.kCounts(), r.kDead(group, instance), r.kDeadRec(group, instance), r.kDeadIdx(group, instance),
		r.kRetry(group, r.partition(instance))}
	n, err := scriptMoveDead.Run(ctx, r.rdb, keys, argv...).Int()
	if err != nil {
		return 0, err
	}
	if replay && n > 0 {
		r.wakeAll()
	}
	return n, nil
}
