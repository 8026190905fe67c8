package spool

import (
	"context"
	"errors"
	"time"
)

// Event is one accepted event.
type Event struct {
	// ID is unique (a ULID) and becomes every delivery's stable id.
	ID       string
	Instance string
	// Event is the event's constant name (MESSAGES_UPSERT).
	Event string
	// Envelope is the JSON the sinks receive (sdk/events.Envelope).
	Envelope []byte
}

// Delivery is one event leased to one sink.
type Delivery struct {
	Event
	// Attempt is 1 on the first try, and counts every try since.
	Attempt int
	// FirstTry is when the first attempt was leased (zero before).
	FirstTry time.Time
	// LastError is the reason the previous attempt failed.
	LastError string
}

// Outcome is what became of one leased delivery.
type Outcome int

const (
	// Done: delivered, or not for this sink; forget it.
	Done Outcome = iota + 1
	// Retry: try again at Result.Due, with the attempt counted.
	Retry
	// Dead: move to the dead letters with Result.Reason.
	Dead
	// Release: hand it back untried (the plugin died with it in flight):
	// it is leased again first, and the attempt is not counted.
	Release
	// Defer: put it on the schedule at Result.Due untried (its instance
	// has too much in flight): the attempt is not counted, and its last
	// error is kept.
	Defer
)

// Result resolves one leased delivery.
type Result struct {
	ID      string
	Outcome Outcome
	Due     time.Time // Retry, Defer
	Reason  string    // Retry, Dead
}

// DeadLetter is a delivery that was rejected or ran out of retries.
type DeadLetter struct {
	Sink     string    `json:"sink"`
	ID       string    `json:"id"`
	Instance string    `json:"instance"`
	Event    string    `json:"event"`
	Attempts int       `json:"attempts"`
	Reason   string    `json:"reason"`
	FirstTry time.Time `json:"first_attempt_at"`
	FailedAt time.Time `json:"failed_at"`
	Envelope []byte    `json:"-"`
}

// Stats is a snapshot for /readyz and metrics.
type Stats struct {
	Events  int            // events in the log (resolved ones until truncated)
	Bytes   int64          // bytes of the log's events: envelopes, ids and names
	Limit   Limits         // the bound
	Backlog map[string]int // per sink: events not yet resolved (log + retries)
	// Scheduled counts every sink's retries; with Events it is what the
	// events limit bounds.
	Scheduled int
	Dead      map[string]int // per sink: dead letters
}

// Limits bound the log; zero means no bound on that measure.
type Limits struct {
	Events int
	Bytes  int64
}

var (
	// ErrFull is returned by Append when the log is at its bound; nothing
	// of that call was accepted. It passes once sinks catch up.
	ErrFull = errors.New("spool: full")
	// ErrTooLarge is wrapped by Append's error when the events of one call
	// exceed the bound on their own: they can never be accepted.
	ErrTooLarge = errors.New("spool: larger than the spool's limits")
	// ErrNotLeased is wrapped by Resolve's error for results whose id is
	// not leased (already resolved, or leased before a restart); the other
	// results are resolved all the same.
	ErrNotLeased = errors.New("spool: not leased")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrUnknownSink is returned for a sink that was not registered.
	ErrUnknownSink = errors.New("spool: unknown sink")
	// ErrBadCursor is wrapped by DeadLetters' error when before is neither
	// a dead letter of that instance nor an RFC 3339 time: the caller's
	// mistake, not the spool's.
	ErrBadCursor = errors.New("spool: bad dead-letter cursor")
)

// Spool is implemented by each backend: Embedded and Redis.
type Spool interface {
	// Register adds a sink. A new sink starts at the end of the log; a
	// known one resumes at its position. Call before Lease.
	Register(sink string) error
	// Append stores events durably, all or none, and returns once they are
	// on disk. Concurrent calls are committed together (group commit).
	Append(ctx context.Context, events []Event) error
	// Lease returns up to max deliveries for sink, blocking until there is
	// at least one or ctx is done. Released deliveries come first, then
	// due retries (in due order) for at most half of max, then the log in
	// append order, then more due retries if there is room: retries never
	// starve the log, nor the log retries. A delivery stays leased until
	// Resolve.
	Lease(ctx context.Context, sink string, max int) ([]Delivery, error)
	// Resolve settles leased deliveries. A delivery resolved Done is never
	// leased again by this process; a backend may commit a Done shortly
	// after Resolve returns (the embedded one within Options.AckDelay,
	// and at Close), so a crash may deliver it again, never lose it.
	// Every other outcome is durable when Resolve returns.
	Resolve(sink string, results []Result) error
	// DeadLetters lists a sink's dead letters for instance, newest first;
	// a limit of 0 means all. before pages: "" starts at the newest; the
	// id of a dead letter (the last of the previous page) lists those
	// after it; an RFC 3339 time lists those that failed before it.
	DeadLetters(sink, instance string, limit int, before string) ([]DeadLetter, error)
	// Replay moves dead letters back to the schedule, due now, keeping
	// their ids; no ids means all of instance's. A replayed delivery
	// starts over: its next Attempt is 1 and its LastError the reason it
	// died. Ids that are not dead letters of instance are skipped. It
	// returns how many were replayed.
	Replay(sink, instance string, ids []string) (int, error)
	// Discard deletes dead letters; no ids means all of instance's. It
	// returns how many were deleted.
	Discard(sink, instance string, ids []string) (int, error)
	// Forget deletes everything kept for a sink this process has not
	// registered (its position, retries and dead letters), so that it no
	// longer holds back the log.
	Forget(sink string) error
	Stats() Stats
	Close() error
}
