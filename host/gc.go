package main

import (
	"os"
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
