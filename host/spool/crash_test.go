package spool

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// crashChildEnv makes the test binary a crash child (see TestMain): it
// appends and resolves in a loop on the spool in the directory the
// variable names, and reports on stdout what the spool acknowledged,
// until it is killed.
const crashChildEnv = "EVORELAY_SPOOL_CRASH_CHILD"

// crashChild writes one line per fact, each in a single write:
//
//	A <id>          Append of the event returned nil
//	P <outcome> <id> a Resolve with this outcome is about to be called
//	R <outcome> <id> that Resolve returned nil
func crashChild(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := s.Register("a"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	prefix := fmt.Sprintf("c%d", os.Getpid())
	go func() {
		// Each round holds its first delivery back until the next round,
		// so that resolves run out of order and the position lags.
		n := 0
		var held []Delivery
		for {
			ds, err := s.Lease(context.Background(), "a", 16)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			ds, held = append(held, ds[1:]...), ds[:1]
			rs := make([]Result, len(ds))
			var pending, resolved strings.Builder
			for i, d := range ds {
				n++
				rs[i] = Result{ID: d.ID, Outcome: Done}
				switch {
				case n%7 == 0:
					rs[i] = Result{ID: d.ID, Outcome: Retry, Due: time.Now().Add(time.Hour), Reason: "later"}
				case n%11 == 0:
					rs[i] = Result{ID: d.ID, Outcome: Dead, Reason: "no"}
				}
				fmt.Fprintf(&pending, "P %d %s\n", rs[i].Outcome, d.ID)
				fmt.Fprintf(&resolved, "R %d %s\n", rs[i].Outcome, d.ID)
			}
			os.Stdout.WriteString(pending.String())
			if err := s.Resolve("a", rs); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			os.Stdout.WriteString(resolved.String())
		}
	}()
	for i := 0; ; {
		n := 1 + i%5
		evs := make([]Event, n)
		var acked strings.Builder
		for j := range evs {
			id := fmt.Sprintf("%s-%06d", prefix, i)
			evs[j] = Event{ID: id, Instance: "inst", Event: "MESSAGES_UPSERT", Envelope: []byte(`{"id":"` + id + `"}`)}
			fmt.Fprintf(&acked, "A %s\n", id)
			i++
		}
		if err := s.Append(context.Background(), evs); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Stdout.WriteString(acked.String())
	}
}

// TestCrash kills a process that appends and resolves with SIGKILL, three
// times on the same directory, and checks that every event it was told
// had been accepted is still there, and that every resolve it was told
// about held: a Retry is scheduled, a Dead is a dead letter, and a Done
// is not lost (it may come again: see Options.AckDelay).
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	for round := range 3 {
		facts := runCrashChild(t, dir)
		checkCrash(t, dir, round, facts)
	}
}

type crashFacts struct {
	acked    map[string]bool
	pending  map[string]Outcome // last outcome about to be resolved
	resolved map[string]Outcome // last outcome resolved
}

// startChild starts this test binary as a child that runs the part named
// by env on the spool in dir, and returns what it writes.
func startChild(t *testing.T, env, dir string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

func runCrashChild(t *testing.T, dir string) crashFacts {
	t.Helper()
	cmd, out := startChild(t, crashChildEnv, dir)
	f := crashFacts{acked: map[string]bool{}, pending: map[string]Outcome{}, resolved: map[string]Outcome{}}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) == 2 && fields[0] == "A":
			f.acked[fields[1]] = true
		case len(fields) == 3 && (fields[0] == "P" || fields[0] == "R"):
			var o Outcome
			fmt.Sscan(fields[1], &o)
			if fields[0] == "P" {
				f.pending[fields[2]] = o
			} else {
				f.resolved[fields[2]] = o
			}
		default:
			t.Errorf("child wrote %q", line)
		}
		if !killed && len(f.acked) >= 400 && len(f.resolved) >= 100 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true // read on: what it wrote before dying counts
		}
	}
	err := cmd.Wait()
	if !killed {
		t.Fatalf("child ended by itself: %v", err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want killed by SIGKILL", err)
	}
	return f
}

func checkCrash(t *testing.T, dir string, round int, f crashFacts) {
	t.Helper()
	s := open(t, dir, Options{})
	register(t, s, "a")

	// What the log gives again (new leases and due retries; retries are
	// due in an hour, so these are all from the log).
	again := map[string]int{}
	var order []string
	for {
		ds := poll(t, s, "a", 1000)
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			again[d.ID]++
			order = append(order, d.ID)
		}
	}
	scheduled := map[string]bool{}
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSinks).Bucket([]byte("a")).Bucket(bucketRetry).ForEach(func(k, _ []byte) error {
			scheduled[string(k[8:])] = true
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	dead := map[string]bool{}
	dls, err := s.DeadLetters("a", "inst", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		dead[dl.ID] = true
	}

	for id, n := range again {
		if n > 1 {
			t.Errorf("round %d: %s leased %d times", round, id, n)
		}
	}
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] && order[i][:strings.IndexByte(order[i], '-')] == order[i-1][:strings.IndexByte(order[i-1], '-')] {
			t.Errorf("round %d: %s leased after %s", round, order[i], order[i-1])
		}
	}
	lost := 0
	for id := range f.acked {
		if again[id] == 0 && !scheduled[id] && !dead[id] {
			if _, maybe := f.pending[id]; !maybe {
				lost++
				if lost <= 5 {
					t.Errorf("round %d: acknowledged event %s is gone", round, id)
				}
			}
		}
	}
	redelivered := 0
	for id, o := range f.resolved {
		switch {
		case again[id] > 0 && o == Done:
			// A Done is committed after Resolve returns (AckDelay at
			// most): the kill may send it again, never lose it.
			redelivered++
		case again[id] > 0:
			t.Errorf("round %d: %s resolved (%d) and leased again", round, id, o)
		}
		switch {
		case o == Retry && !scheduled[id]:
			t.Errorf("round %d: %s resolved as a retry, not scheduled", round, id)
		case o == Dead && !dead[id]:
			t.Errorf("round %d: %s resolved as dead, not a dead letter", round, id)
		}
	}
	t.Logf("round %d: %d acknowledged, %d resolved; after the kill: %d leased again (%d of them resolved Done), %d scheduled, %d dead",
		round, len(f.acked), len(f.resolved), len(again), redelivered, len(scheduled), len(dead))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// doneChildEnv makes the test binary a done child (see TestMain): on the
// spool in the directory the variable names, with an AckDelay of an hour,
// it appends e-0000…e-0009 and leases them, resolves e-0000…e-0002 Done,
// appends x-0000 (whose commit carries those marks), resolves e-0005 and
// e-0006 Done (in memory only: nothing commits after), writes "ready" on
// stdout and waits to be killed.
const doneChildEnv = "EVORELAY_SPOOL_DONE_CHILD"

func doneChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := Open(dir, Options{AckDelay: time.Hour})
	if err != nil {
		fail(err)
	}
	if err := s.Register("a"); err != nil {
		fail(err)
	}
	if err := s.Append(context.Background(), events("e", 10)); err != nil {
		fail(err)
	}
	if ds, err := s.Lease(context.Background(), "a", 10); err != nil || len(ds) != 10 {
		fail(fmt.Errorf("lease: %d deliveries, %v", len(ds), err))
	}
	if err := s.Resolve("a", []Result{{ID: "e-0000", Outcome: Done}, {ID: "e-0001", Outcome: Done}, {ID: "e-0002", Outcome: Done}}); err != nil {
		fail(err)
	}
	if err := s.Append(context.Background(), events("x", 1)); err != nil {
		fail(err)
	}
	// A Retry is committed before Resolve returns, with the Done marks
	// in memory; an Append is not (it goes to the log, not the file).
	if err := s.Resolve("a", []Result{{ID: "e-0003", Outcome: Retry}}); err != nil {
		fail(err)
	}
	if err := s.Resolve("a", []Result{{ID: "e-0006", Outcome: Done}, {ID: "e-0005", Outcome: Done}}); err != nil {
		fail(err)
	}
	os.Stdout.WriteString("ready\n")
	select {}
}

// TestCrashAfterDone kills a process (SIGKILL) right after it resolved
// deliveries Done: those whose marks went with a later commit (a
// Retry's) are not leased again; those still in memory are, with the
// same ids: a crash re-sends, it does not lose. The retried one comes
// back from the schedule, first.
func TestCrashAfterDone(t *testing.T) {
	dir := t.TempDir()
	cmd, out := startChild(t, doneChildEnv, dir)
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child wrote %q (%v), want ready", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	s := open(t, dir, Options{})
	register(t, s, "a")
	got := ids(poll(t, s, "a", 100))
	wantIDs(t, "after the kill", got, []string{"e-0003", "e-0004", "e-0005", "e-0006", "e-0007", "e-0008", "e-0009", "x-0000"})
}

// TestAcksCommitOnTheirOwn: with nothing else to commit, the writer
// commits Done marks by itself after AckDelay.
func TestAcksCommitOnTheirOwn(t *testing.T) {
	s := open(t, t.TempDir(), Options{AckDelay: time.Millisecond})
	register(t, s, "a")
	appendT(t, s, events("e", 3)...)
	resolve(t, s, "a", done(wait(t, s, "a", 3))...)
	onDisk := func() uint64 {
		var pos uint64
		if err := s.db.View(func(tx *bolt.Tx) error {
			pos = keySeq(tx.Bucket(bucketSinks).Bucket([]byte("a")).Get(keyPos))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return pos
	}
	// A minute bounds the wait so that a bug fails instead of hanging.
	for deadline := time.Now().Add(time.Minute); onDisk() != 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("position on disk %d a minute after resolving 3 events, want 3", onDisk())
		}
	}
}
