package dispatch

import (
	"sync"
	"time"
)

// retryLogEvery is how often a sink warns about one instance's deliveries
// going to retry; the retries in between are counted in the next warning.
// A dead receiver retries every delivery, so one line per delivery would
// flood the log.
const retryLogEvery = time.Minute

// retryLog rate-limits retry warnings per instance (a worker is one sink).
type retryLog struct {
	mu    sync.Mutex
	every time.Duration
	last  map[string]retryLogState
}

type retryLogState struct {
	at         time.Time
	suppressed int
}

func newRetryLog(every time.Duration) *retryLog {
	return &retryLog{every: every, last: map[string]retryLogState{}}
}

// allow reports whether a retry of instance's should be logged now, and
// how many were not logged since the last one that was.
func (r *retryLog) allow(instance string, now time.Time) (ok bool, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, seen := r.last[instance]
	if seen && now.Sub(st.at) < r.every {
		st.suppressed++
		r.last[instance] = st
		return false, 0
	}
	if len(r.last) > 10000 {
		r.prune(now)
	}
	r.last[instance] = retryLogState{at: now}
	return true, st.suppressed
}

// prune forgets instances not logged for a while, so the map stays as
// large as the set of failing instances.
func (r *retryLog) prune(now time.Time) {
	for inst, st := range r.last {
		if now.Sub(st.at) >= r.every {
			delete(r.last, inst)
		}
	}
}
