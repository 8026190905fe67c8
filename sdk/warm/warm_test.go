//go:build unix

package warm

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary, run again, measure one heap's growth
// (see growthFaults) and print its page faults.
const childEnv = "EVORELAY_WARM_TEST_CHILD"

// growth is what the measured heap grows by: what a process allocates in
// its first moments of load, in objects of 16 KB, all kept.
const growth = 16 << 20

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		fmt.Println(growthFaults(mode == "warm"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// growthFaults grows a fresh process's heap by growth bytes, after Heap
// when warm, and returns the minor page faults the growth took.
func growthFaults(warm bool) int64 {
	if warm {
		Heap(2 * growth)
	}
	before := minorFaults()
	keep := make([][]byte, 0, growth/(16<<10))
	for range cap(keep) {
		b := make([]byte, 16<<10)
		for i := 0; i < len(b); i += pageSize {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	faults := minorFaults() - before
	runtime.KeepAlive(keep)
	return faults
}

func minorFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return int64(ru.Minflt)
}

// childFaults runs growthFaults in a new process of this test binary.
func childFaults(t *testing.T, mode string) int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s child: %v", mode, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("%s child printed %q", mode, out)
	}
	return n
}

// A heap warmed by Heap grows into pages it already has: a fraction of
// the page faults a cold heap takes for the same growth (without -race,
// about a fourteenth here; the race detector's own memory faults in both).
func TestHeapSparesTheFaultsOfGrowth(t *testing.T) {
	pages := int64(growth / pageSize)
	cold, warm := childFaults(t, "cold"), childFaults(t, "warm")
	t.Logf("minor faults growing the heap by %d MB (%d pages): cold %d, warm %d", growth>>20, pages, cold, warm)
	if cold < pages/2 {
		t.Fatalf("a cold heap's growth took %d faults for %d new pages: the measure does not see faults", cold, pages)
	}
	if warm > cold/2 {
		t.Errorf("after Heap, the growth still took %d faults for %d pages, cold %d", warm, pages, cold)
	}
}

func TestHeapStaysWithinTheMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(64 << 20))
	if got := Heap(32 << 20); got != 2<<20 {
		t.Errorf("with a 64 MB limit, Heap(32 MB) touched %d bytes; want a 32nd of the limit, 2 MB", got)
	}
	if got := Heap(100); got != 0 {
		t.Errorf("Heap(100) touched %d bytes; want 0 (less than a page)", got)
	}
}
