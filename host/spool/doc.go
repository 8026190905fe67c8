// Package spool is the durable queue of accepted events: one append-only
// log, and per sink a consumer position, a retry schedule and a dead-letter
// store (the model of Redis Streams consumer groups and NATS JetStream
// consumers). It knows queues, not HTTP, plugins or settings: the Spool
// interface is what host/api and host/dispatch use. Embedded (Open) is its
// backend in one file of the data directory, for one sidecar; Redis
// (OpenRedis) is its backend in Redis, shared by any number of sidecars
// that form one deployment (see "Several hosts on one Redis" below). The
// tests of spool_test.go are the contract both pass.
//
// # Guarantees
//
// An event is accepted only once Append has returned: it is on disk
// (fsync'd). Each sink leases deliveries from its position; what is leased
// but not yet resolved lives in memory only, so a crash delivers it again
// (at-least-once, under the same id). A delivery resolved Done is never
// leased again by this process, even when it was resolved ahead of older
// deliveries still in flight; the embedded spool commits it after Resolve
// returns, within AckDelay (10 ms), so a crash of the process or the
// machine may deliver again, under the same id, what was resolved Done in
// about the last 10 ms (see "Acknowledgements"). Every other outcome is
// durable when Resolve returns. A delivery to be retried moves to the
// sink's schedule by due time and does not hold back the events behind
// it; a dead one moves to the sink's dead letters, with its reason,
// attempts and times, until replayed (same id) or discarded. TestCrash
// kills a process that appends and resolves with SIGKILL and checks, after
// reopening, that nothing acknowledged was lost, no Retry or Dead came
// back from the log, and a Done came back at most (TestCrashAfterDone
// shows which ones do).
//
// # Embedded layout
//
// The log is a journal of segment files in log/ (journal.go): each named
// by the sequence of its first record, a run of length- and
// CRC-32C-framed event records, appended to and never rewritten. The rest
// is a bbolt database (spool.db):
//
//	sinks/<sink>/pos          the position: every sequence up to it is resolved
//	sinks/<sink>/acked/       sequences above the position already resolved
//	sinks/<sink>/retry/       due (unix ns, big-endian) + id → delivery record
//	sinks/<sink>/dead/        len+instance + failed-at + id → delivery record
//	sinks/<sink>/dead-index/  len+instance + id → failed-at (replay and discard by id)
//
// Retry and dead records carry their own copy of the envelope, so the log
// can be truncated under them. Leases are in memory: the position moves,
// in the Resolve that allows it, to just below the lowest sequence still
// leased or released, and sequences resolved above it go to acked (which
// is what keeps a Done from coming back, and a Retry from being both in
// the schedule and re-leased from the log, after a restart). Both move in
// memory first and reach the disk with the writer's next transaction. The
// log is truncated below the lowest position on disk of the known sinks,
// after each transaction that stores positions and at Open: its counters
// at once, its files a whole segment (32 MiB) at a time, once every record
// in it is behind every sink; the last segment stays, so that its name
// carries the sequence on. Counters of the log (events, bytes) and of each
// sink's retries and dead letters are kept in memory and recounted by
// Open, which also checks every record of the journal: a damaged tail of
// the last segment is what a crash cut short, never acknowledged, and is
// cut off; damage anywhere else stops Open with the file's name.
//
// A new sink starts at the end of the log, so register every sink before
// the first Append it must see. While no sink is known the log keeps
// everything; once one is, the positions of all known sinks — registered
// by this process or an earlier one — hold back truncation. A sink that is
// gone for good must be removed with Forget, or the log fills up and
// Append returns ErrFull.
//
// A file of format version 1 kept the log in a bbolt bucket; Open moves it
// into the journal (synced before the bucket is deleted, so an interrupted
// move starts over at the next Open).
//
// # Group commit
//
// One writer goroutine owns every write. Append, Resolve (but for Done:
// see "Acknowledgements"), Register, Replay, Discard and Forget hand it
// their work; it drains whatever is queued into one commit, so concurrent
// callers share the fsync, and while a commit is on its way to the disk
// the next batch gathers. A lone caller waits for nothing but its commit.
// A commit runs what is not an Append in one bbolt transaction (two
// fsyncs: pages, then the meta page), then writes the Appends' records to
// the journal with one write and one fdatasync, and only then publishes
// them to Lease. Sequences are assigned by the writer, so append order,
// commit order and visibility order are one, and a Lease can never skip
// an event committed late. If one caller's part of the transaction fails,
// it is rolled back and run again without it; the parts only touch the
// transaction (memory is updated after the commit), so running one again
// cannot duplicate anything.
//
// bbolt's own DB.Batch was measured against this: it, too, re-runs a
// function when another in its batch fails (safe for the same reason), but
// it waits up to MaxBatchDelay (10 ms) to fill a batch, so a lone caller
// pays that on every Append. Throwaway benchmark, 1 KB events, fsync on,
// events/s, one run (a shared VM disk whose fsync latency wandered
// between 0.3 and 5 ms from run to run, so compare within a row):
//
//	callers × batch   bolt DB.Batch   bolt writer goroutine
//	1 × 1                   48              171
//	1 × 100               5158            11857
//	4 × 1                  204              426
//	4 × 100              16621            21075
//	16 × 1                 639             1667
//	64 × 1                2876             3321
//
// # Acknowledgements
//
// Nearly every result is a Done, and under load they were most of the
// writer's work: with every Resolve committed before it returned, 64
// webhook lanes made 6,515 commits for 27.9k acks (4.3 acks a commit,
// 1.37 ms each), the writer was busy 90 % of the time, an Append waited
// 4 ms for it, and a Lease 1.6 ms, because Resolve held the sink's lock
// through its commit. Now a Done of a log delivery is settled in memory
// (the lease, the position, an acked mark) and Resolve returns; the
// writer puts the position and the acked marks into the next bbolt
// transaction it runs anyway (a Retry's, say), or commits them on their
// own AckDelay (10 ms) after the first of them, and Close commits what is
// left. An Append does not carry them (it writes to the journal, and the
// marks would cost it a transaction), unless the log is at its limits and
// the positions they move would make room. No lock of a sink is held
// across a commit: the leases under s.mu, what is resolved under
// s.ackMu, which the writer takes alone. What it costs: a crash may
// re-send what was resolved Done in about the last 10 ms, under the same
// ids, which at-least-once already allows and receivers de-duplicate;
// nothing is lost, and the log is never cut below a position that is not
// on disk.
//
// Retry, Defer and Dead, and any outcome of a delivery leased from the
// retry schedule, are still committed before Resolve returns. They are
// rare (a failing destination), and losing one would cost more than a
// redelivery: a lost Retry comes back from the log at once as attempt 1,
// its backoff and age forgotten; a lost Dead is delivered again instead
// of waiting in the dead letters that an operator was shown. A Retry's
// record must also reach the disk with its acked mark, or the delivery is
// both scheduled and leased from the log after a restart; and a Lease
// reads the schedule from disk, so a resolved retry whose record were
// still there would need a second, pending state to stay unleased.
// Committed synchronously, their memory and disk never disagree. Release
// changes memory only.
//
// BenchmarkResolveWhileLeasing (a dispatch worker's pattern: one leaser
// of batches of 100, a window of 1,000, one resolver of the acks that
// piled up), two runs each, interleaved, of go test -run '^$' -bench .
// -benchtime 2s ./host/spool/ before this change and after it (with
// NoFreelistSync, below):
//
//	                            before          after
//	prefilled log, events/s     72.8k–83.3k     201k–287k
//	  acks a Resolve            355–390         565–587
//	  µs a Lease                1048–1144       285–401
//	16 appenders, events/s      10.6k–13.9k     9.4k–14.6k
//	  acks a Resolve            16              8
//
// With appenders the fsyncs of the Appends set the pace either way (their
// group commits carried the acks before too); what the acks no longer
// cost there is the writer's time and the Lease's wait.
//
// # Why bbolt
//
// The design asked for a proven engine chosen by the spool's own workload.
// bbolt v1.5.0 was measured against Pebble v1.1.5 (same throwaway, same
// machine, same noise):
//
//   - Append, fsync on, two runs each. Pebble with its own pipelined
//     commit was well ahead when many callers append at once (64 × 1:
//     13.7k–22.9k events/s against bbolt's 6.5k–7.1k), and it pays one WAL
//     fsync per commit where bbolt pays two (pages, then the meta page).
//     But in that mode the caller assigns sequences before Pebble orders
//     the commits, so a reader can see sequence n+1 before n and its
//     cursor skip n. Behind the same single writer the spool needs, Pebble
//     was level with bbolt up to 16 callers (1 × 1: 190–437 against
//     368–1010; 16 × 1: 2.6k–2.8k against 3.0k–3.2k) and about 1.5× ahead
//     at 64 (9.6k–11.7k against 6.5k–7.1k).
//   - Lease and ack (read 100 from the position, store the position, cut
//     the log every 10 rounds): Pebble did 20.5k events/s in a short run
//     and 0.5k–1.8k in two longer ones (not investigated; range
//     tombstones and the compactions after each refill are the likely
//     cause); bbolt did 9.9k–13.7k in all three. A queue deletes
//     everything it writes: in a B+tree a deleted page is reused, in an
//     LSM tree it is a tombstone that reads skip until a compaction drops
//     it (the retry schedule, always read from its first key, would
//     suffer most).
//   - One file and one small pure-Go dependency already in go.mod, no
//     background compactions competing with the sidecar's engine for CPU
//     or memory, and no new modules (Pebble brings about twenty).
//
// bbolt's costs, accepted: two fsyncs a commit, and a file that never
// shrinks (freed pages are reused, so it stays at its high-water mark).
//
// Its list of free pages is not written to the file (NoFreelistSync).
// By default bbolt writes the whole list with every commit, and a file at
// its high-water mark is mostly free pages: after a backlog of 100,000
// events was drained (~33,000 free pages, 130 MB), each one-event Append
// wrote 289–295 KB, nearly all of it that list, against 20–26 KB
// without it (appends while a consumer leases and resolves them, measured
// while the log was still in bbolt by a benchmark that went with it;
// three runs of each build, interleaved, events/s):
//
//	                          list written     NoFreelistSync
//	1 caller, fsync                72–303          742–996
//	64 callers, fsync            2.8k–5.9k       5.4k–19.2k
//	1 caller, no fsync             735–934        4.0k–6.6k
//	64 callers, no fsync         6.8k–9.7k      22.9k–67.7k
//
// The price is paid at every Open, after a crash or not: bbolt rebuilds
// the list by walking every page in use. (On a damaged page it panics, in
// a goroutine of its own that would end the process; so Open first reads
// those pages in a read-only transaction, and a damaged file is an error
// naming it.)
// When the log was in bbolt, with 100,000 events in it Open took 88–200
// ms (median 117, seven runs) with the list and 128–536 ms (median 175)
// without; the file now holds only the sinks' state, and Open of a spool
// with 100,000 events in its journal took 23 ms, a drained one 1.4 ms
// (BenchmarkOpen, after the journal).
// InitialMmapSize, AllocSize and NoGrowSync act only when the file grows
// (a remap; a truncate and an fsync), which a spool at its high-water
// mark no longer does, and their runs did not leave the noise; NoGrowSync
// is also unsafe on ext4 (bbolt's doc). They keep their defaults.
//
// # Why the log left bbolt
//
// A bbolt commit costs two fsyncs (pages, then the meta page) and a page
// write per leaf it touches, and deleting what was consumed is a commit
// of its own; a queue's log needs neither a tree nor in-place deletes.
// Measured on issue 11's machine, fdatasync alone took ~200 µs; ingest at
// one event a request (64 connections) was bound by the commit cycle, not
// the CPU: the writer held 34 events a commit of 857 µs on average, and
// with NoSync the same load went from 0.41× to 0.55× its bare baseline.
// So the log is now the journal: one write and one fdatasync a group
// commit, nothing rewritten, whole files deleted. bbolt keeps what is
// small and updated in place (positions, acked marks, the retry schedule,
// dead letters). This package's benchmarks, bbolt log → journal, two
// interleaved runs each on a machine shared with other work (events/s):
//
//	                                    log in bbolt     journal
//	Append 1, fsync                     1.3k–3.0k        4.0k–4.8k
//	Append 100, fsync                   50k–107k         199k–278k
//	Append 1, 64 callers, fsync         36k–66k          145k–155k
//	Lease+Resolve, 100 a lease          292k–602k        361k–997k
//	Resolve while leasing, 16 appenders 18k–34k          34k–47k
//
// This package's own benchmarks (go test -run '^$' -bench . -benchtime 2s
// ./host/spool/), one run on a quiet 2-core machine, in events/s:
//
//	Append 1 × 1 KB, fsync / NoSync            4.9k / 399k
//	Append 10 × 1 KB, fsync / NoSync            41k / 805k
//	Append 100 × 1 KB, fsync / NoSync          287k / 1.15M
//	Append 1 × 1 KB, 4 / 16 / 64 callers   9.5k / 65k / 169k
//	Lease+Resolve, 1 / 100 a lease            348k / 1.05M
//	Retry (lease from schedule, reschedule)           118k
//	Dead letter (replay, lease, kill)                  57k
//
// # Several hosts on one Redis
//
// The Redis spool keeps the same model in Redis Streams, under a prefix
// (default "evorelay:"; P below):
//
//	P spool                       hash: partitions (fixed at the first start)
//	P spool:log:<p>               stream per partition p: field e = log record
//	P spool:sinks                 set: every sink's consumer group
//	P spool:counts                hash: events, bytes, scheduled, backlog:<group>, dead:<group>
//	P spool:retry:<group>:<p>     sorted set: score due (ms), member = delivery record
//	P spool:dead:<group>:<inst>   sorted set, by member: failed-at (hex ns) + id
//	P spool:deadrec:<group>:<inst>  hash: id → delivery record
//	P spool:deadidx:<group>:<inst>  hash: id → its member in dead
//	P spool:lease:<p>             string: the id of the host holding partition p (PX TakeoverAfter)
//	P spool:hosts                 sorted set: host id → last heartbeat (ms)
//	P spool:appended              pub/sub channel: something was appended or scheduled
//
// Each sink is a consumer group on every partition's stream, created at
// its end ($) when the sink is first registered; each host is a consumer
// named by its own id (a new one each start). An event goes to partition
// fnv32a(instance) mod partitions. Every write is one Lua script, so it is
// atomic and the counters move only with what they count (an XACK or
// ZREM that finds nothing changes nothing): Append checks the limits and
// XADDs, Resolve XACKs (or removes a retry) and schedules or
// dead-letters, Replay moves a dead letter to its partition's retry set.
// The log is trimmed (XTRIM MINID) below the lowest entry any group still
// needs: its oldest pending entry, or the one after its last delivered.
//
// Order and takeover. Each partition is held by one host at a time,
// through a lease key that expires after TakeoverAfter unless its holder
// renews it (every TakeoverAfter/3), and a host leases only from the
// partitions it holds, so no two hosts ever deliver one instance's events
// at once and, without failures, they reach a sink in accepted order.
// Hosts heartbeat into P spool:hosts and each aims at its share
// (partitions / live hosts, rounded up): one with too many stops leasing
// from the extra partitions and gives them up once nothing of them is in
// flight; one with too few takes free ones. A host killed with SIGKILL
// stops renewing: within TakeoverAfter (plus a renewal period) its leases
// lapse, the survivors take its partitions, claim the entries it had
// pending (XAUTOCLAIM) and lease them first, in log order, then the rest:
// nothing is lost, and what it had in flight may be delivered twice (at
// least once, same ids). A host that cannot renew in time (Redis
// unreachable for longer than TakeoverAfter) may find its partition taken
// over; it then drops it, and what it still had in flight can overlap with
// the new holder's first deliveries.
//
// Broadcast sinks (websocket: its clients are connected to one host) are
// different: every host needs every event, so each host reads with a
// group of its own (sink@host), on every partition, with no partition
// lease; a stopped host's group is deleted by the others once its
// heartbeat is gone, so it does not hold back trimming.
//
// Redis down: Append, Lease and Resolve fail (the API answers 503); a
// Resolve that fails hands its deliveries back to be leased again, so an
// outage can deliver something twice but loses nothing Redis
// acknowledged. Redis must persist what it acknowledged (appendonly yes,
// appendfsync everysec or always): OpenRedis checks and warns.
//
// # Records
//
// Records are a compact binary format (codec.go), not JSON: an envelope is
// JSON bytes, which a JSON record would base64 (1423 bytes for a 1 KB
// event against 1043), and encoding plus decoding took 1.5–7.1 µs against
// 12.0–45.8 µs (BenchmarkCodec).
package spool
