package dispatch

import (
	"fmt"
	"github.com/evorelay/evorelay/host/store"
	"math/rand/v2"
	"time"
)

// Policy decides when a failed delivery is tried again, and when to give up.
type Policy struct {
	// Schedule holds the delay before each attempt: Schedule[0] before the
	// first (normally 0), Schedule[n] before attempt n+1. A delivery that
	// fails its len(Schedule)-th attempt is dead-lettered.
	Schedule []time.Duration
	// Jitter spreads each delay by ±Jitter (0.2 = ±20 %).
	Jitter float64
	// MaxAge dead-letters a delivery whose first attempt is older; 0 = none.
	MaxAge time.Duration
	// MaxRetryAfter caps the delay a destination may ask for.
	MaxRetryAfter time.Duration
}

// DefaultPolicy is in the spirit of the best webhook services: about a day
// of attempts, dense at first.
var DefaultPolicy = Policy{
	Schedule: []time.Duration{0, 5 * time.Second, 30 * time.Second, 2 * time.Minute,
		10 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour},
	Jitter:        0.2,
	MaxAge:        24 * time.Hour,
	MaxRetryAfter: time.Hour,
}

// For is the policy with an instance's own parts (its settings' "retry")
// in place of the process's.
func (p Policy) For(r *store.Retry) Policy {
	if r == nil {
		return p
	}
	if r.Schedule != nil {
		p.Schedule = r.Schedule
	}
	if r.MaxAge > 0 {
		p.MaxAge = r.MaxAge
	}
	return p
}

// Next says when attempt+1 is due after attempt failed, or why there is
// none. retryAfter is what the destination asked for (0 if nothing).
func (p Policy) Next(attempt int, firstTry time.Time, retryAfter time.Duration, now time.Time) (time.Time, error) {
	if attempt >= len(p.Schedule) {
		return time.Time{}, fmt.Errorf("gave up after %d attempts", attempt)
	}
	delay := p.Schedule[attempt]
	if p.Jitter > 0 && delay > 0 {
		spread := float64(delay) * p.Jitter
		delay += time.Duration((rand.Float64()*2 - 1) * spread)
	}
	if retryAfter > p.MaxRetryAfter && p.MaxRetryAfter > 0 {
		retryAfter = p.MaxRetryAfter
	}
	delay = max(delay, retryAfter)
	due := now.Add(delay)
	if p.MaxAge > 0 && !firstTry.IsZero() && due.Sub(firstTry) > p.MaxAge {
		return time.Time{}, fmt.Errorf("gave up after %d attempts: the next would be over the maximum age %s", attempt, p.MaxAge)
	}
	return due, nil
}
