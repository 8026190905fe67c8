package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux
// everywhere).
const clockTick = 10_000 // µs

// brokers are the local servers, by process name, whose CPU is shown as
// the brokers': a destination shares the machine with what it measures.
var brokers = map[string]bool{"nats-server": true, "beam.smp": true, "redis-server": true}

// usage is the CPU time, in µs, used so far: by a sidecar's host process
// and its plugins (its children), by this tool and the other processes it
// started (bare servers and posters), by the local brokers, and by the
// whole machine, with its idle time. All zero where /proc cannot tell
// (not Linux).
type usage struct {
	host, plugins, tool, broker int64
	busy, idle                  int64
}

// meter measures the CPU of one run (a bare client, or a sidecar whose
// host process is host).
type meter struct {
	host  int // 0 for a bare run
	start usage
	// process names host's process on the line: "host" (with "plugins" for
	// its children), or what else it is (a bare relay).
	process string
}

func startMeter(host int) meter { return meter{host: host, start: readUsage(host), process: "host"} }

// readUsage reads what every process and the machine used so far.
func readUsage(host int) usage {
	var u usage
	self := os.Getpid()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		p, ok := procStat(path)
		switch {
		case !ok:
		case p.pid == self:
			// With the children it waited for: a bare server that has
			// exited since the run began.
			u.tool += p.used + p.children
		case p.pid == host:
			u.host += p.used
		case p.ppid == host && host != 0:
			u.plugins += p.used
		case p.ppid == self:
			u.tool += p.used
		case brokers[p.name]:
			u.broker += p.used
		}
	}
	u.busy, u.idle = machineTimes()
	return u
}

// proc is what the tool reads of a process's /proc/<pid>/stat.
type proc struct {
	pid, ppid int
	name      string
	// used is its CPU time (user + system), children that of its children
	// it waited for, in µs.
	used, children int64
}

// procStat reads a process's /proc/<pid>/stat.
func procStat(path string) (proc, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return proc{}, false
	}
	// pid (comm) state ppid … utime(14) stime(15) cutime(16) cstime(17);
	// comm may hold spaces.
	end := bytes.LastIndexByte(b, ')')
	open := bytes.IndexByte(b, '(')
	if end < 0 || open < 0 || open > end {
		return proc{}, false
	}
	var p proc
	p.pid, err = strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	f := bytes.Fields(b[end+1:]) // f[0] is field 3, the state
	if err != nil || len(f) < 15 {
		return proc{}, false
	}
	p.name = string(b[open+1 : end])
	p.ppid, _ = strconv.Atoi(string(f[1]))
	n := func(i int) int64 { v, _ := strconv.ParseInt(string(f[i]), 10, 64); return v * clockTick }
	p.used = n(11) + n(12)
	p.children = n(13) + n(14)
	return p, true
}

// machineTimes reads the busy and idle CPU time of the whole machine, in
// µs, from /proc/stat.
func machineTimes() (busy, idle int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:9] {
		t, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			idle += t * clockTick
		} else {
			busy += t * clockTick
		}
	}
	return busy, idle
}

// perEvent says the CPU used since the meter started, per event of n: by
// each part, and by the whole machine with how idle it was, so that the
// ratio of a run that had the machine to itself can be told from one
// that waited.
func (m meter) perEvent(n int) string {
	a, b := m.start, readUsage(m.host)
	if b.busy == 0 {
		return ""
	}
	µs := func(x, y int64) string { return fmt.Sprintf("%.0f µs", float64(y-x)/float64(n)) }
	var parts []string
	switch {
	case m.host == 0:
	case m.process == "host":
		parts = append(parts, "host "+µs(a.host, b.host), "plugins "+µs(a.plugins, b.plugins))
	default:
		parts = append(parts, m.process+" "+µs(a.host, b.host))
	}
	parts = append(parts, "load tool "+µs(a.tool, b.tool), "brokers "+µs(a.broker, b.broker))
	idle := 0.0
	if total := (b.busy - a.busy) + (b.idle - a.idle); total > 0 {
		idle = 100 * float64(b.idle-a.idle) / float64(total)
	}
	return fmt.Sprintf("CPU per event: %s; machine %s, %.0f%% idle", strings.Join(parts, ", "), µs(a.busy, b.busy), idle)
}

// printCPU prints what the meter measured, if /proc told it.
func printCPU(m meter, n int) {
	if cpu := m.perEvent(n); cpu != "" {
		fmt.Println("   " + cpu)
	}
}
