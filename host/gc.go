package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// gcPercent is the GOGC the host and its plugins run with unless GOGC is
// set. They allocate per event and keep little (a few MB live), so Go's
// default of 100 collects every few hundred events; 400 cuts the CPU the
// collector takes by about a third (go run ./bench, issue 11), and the
// memory limit below keeps the larger heap within what the container has.
const gcPercent = 400

// hostWarm is how much heap the host touches at start (warm.Heap): more
// than it faults in during its first second and a half of load (9,200
// pages, 36 MB, at 5,000 events/s; go run ./bench -scenario paced).
const hostWarm = 64 << 20

// memoryRatio is the share of the container's memory limit (or of the
// machine's memory, without one) the Go runtime treats as its soft limit
// (GOMEMLIMIT), unless GOMEMLIMIT is set.
const memoryRatio = 0.9

// tuneGC sets GOGC and GOMEMLIMIT for this process, and into its
// environment so that plugins started later inherit them, unless the
// operator set them. It returns what it set, for the start-up log.
func tuneGC() (gogc string, limit int64, err error) {
	gogc = os.Getenv("GOGC")
	if gogc == "" {
		gogc = strconv.Itoa(gcPercent)
		debug.SetGCPercent(gcPercent)
		_ = os.Setenv("GOGC", gogc)
	}
	set := os.Getenv("GOMEMLIMIT") == ""
	limit, err = memlimit.Set(memlimit.WithRatio(memoryRatio),
		memlimit.WithProvider(memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)))
	if err == nil && set {
		_ = os.Setenv("GOMEMLIMIT", strconv.FormatInt(limit, 10))
	}
	return gogc, limit, err
}

// pluginProcs sets GOMAXPROCS in the environment plugins inherit, unless
// the operator set it: half of this process's (its CPUs, or its
// container's CPU limit), at least 1. A plugin mostly waits on sockets
// and hands work between a few goroutines; with a P per CPU the runtime
// keeps waking a thread to look for work and putting it back to sleep
// (scheduler and futex calls were a fifth of the webhook plugin's CPU in
// the bench's lane scenario). On the 2-core machine of issue 11, one P
// each took the lane scenario from 0.69–0.73× to 0.80–0.86× its bare
// poster and the engine load from 0.17–0.18× to 0.19–0.20×, with paced
// p99 unchanged (go run ./bench, four runs each). It returns the value
// plugins get.
func pluginProcs() string {
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		return v
	}
	v := strconv.Itoa(max(1, runtime.GOMAXPROCS(0)/2))
	_ = os.Setenv("GOMAXPROCS", v)
	return v
}
