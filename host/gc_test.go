package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
)

// Unless the operator set them, the host runs with GOGC 400 and a
// memory limit, and puts both in the environment its plugins inherit.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, tc := range []struct {
		name, gogc, memlimit string
		wantPercent          int
		wantLimit            int64 // 0: any the machine gives
	}{
		{"defaults", "", "", gcPercent, 0},
		{"the operator's", "150", "1GiB", 150, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			t.Setenv("GOMEMLIMIT", tc.memlimit)
			if tc.gogc != "" {
				debug.SetGCPercent(150) // what the runtime read from GOGC at start
				debug.SetMemoryLimit(1 << 30)
			}
			if _, _, err := tuneGC(); err != nil {
				t.Fatal(err)
			}
			if got := debug.SetGCPercent(-1); got != tc.wantPercent {
				t.Errorf("GC percent %d, want %d", got, tc.wantPercent)
			}
			debug.SetGCPercent(tc.wantPercent)
			limit := debug.SetMemoryLimit(-1)
			if tc.wantLimit != 0 && limit != tc.wantLimit || limit <= 0 {
				t.Errorf("memory limit %d, want %d", limit, tc.wantLimit)
			}
			if os.Getenv("GOGC") == "" || os.Getenv("GOMEMLIMIT") == "" {
				t.Errorf("plugins would not inherit them: GOGC=%q GOMEMLIMIT=%q", os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"))
			}
		})
	}
}

// Plugins get half the host's Ps (at least one) unless the operator set
// GOMAXPROCS, which they then inherit as it is.
func TestPluginProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	want := strconv.Itoa(max(1, runtime.GOMAXPROCS(0)/2))
	if got := pluginProcs(); got != want || os.Getenv("GOMAXPROCS") != want {
		t.Errorf("pluginProcs() = %q, environment %q; want %q", got, os.Getenv("GOMAXPROCS"), want)
	}
	t.Setenv("GOMAXPROCS", "3")
	if got := pluginProcs(); got != "3" || os.Getenv("GOMAXPROCS") != "3" {
		t.Errorf("with GOMAXPROCS=3 set: pluginProcs() = %q, environment %q", got, os.Getenv("GOMAXPROCS"))
	}
}
