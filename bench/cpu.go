package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux everywhere).
const clockTick = 10_000 // µs

// cpuTimes is the CPU time, in µs, the sidecar's host process and its
// plugin processes (its children) have used so far; zero where /proc
// cannot tell (not Linux).
type cpuTimes struct{ host, plugins int64 }

// cpu reads the host's and its children's CPU times from /proc.
func (s *sidecar) cpu() cpuTimes {
	host := s.cmd.Process.Pid
	var t cpuTimes
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		pid, ppid, used, ok := procStat(path)
		switch {
		case !ok:
		case pid == host:
			t.host += used
		case ppid == host:
			t.plugins += used
		}
	}
	return t
}

// procStat reads a process's pid, parent and CPU time (user + system, µs)
// from its /proc/<pid>/stat.
func procStat(path string) (pid, ppid int, used int64, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, false
	}
	// pid (comm) state ppid … utime(14) stime(15); comm may hold spaces.
	end := bytes.LastIndexByte(b, ')')
	open := bytes.IndexByte(b, '(')
	if end < 0 || open < 0 {
		return 0, 0, 0, false
	}
	pid, err = strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	f := bytes.Fields(b[end+1:]) // f[0] is field 3, the state
	if err != nil || len(f) < 13 {
		return 0, 0, 0, false
	}
	ppid, _ = strconv.Atoi(string(f[1]))
	utime, _ := strconv.ParseInt(string(f[11]), 10, 64)
	stime, _ := strconv.ParseInt(string(f[12]), 10, 64)
	return pid, ppid, (utime + stime) * clockTick, true
}

// perEvent says the CPU the sidecar's processes used between a and b,
// per event of n.
func perEvent(a, b cpuTimes, n int) string {
	if b.host == 0 {
		return ""
	}
	return fmt.Sprintf("CPU per event: host %.0f µs, plugin %.0f µs", float64(b.host-a.host)/float64(n), float64(b.plugins-a.plugins)/float64(n))
}
