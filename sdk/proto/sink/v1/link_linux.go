package sinkv1

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// ProcessLink says the link checks the process at its other end instead
// of running TLS (see HostLinkCredentials).
const ProcessLink = true

// peerProcess is the id of the process at the other end of c
// (SO_PEERCRED: for the dialing end, the process that listened).
func peerProcess(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return int(cred.Pid), nil
}

// parentProcess reads the parent of process pid from /proc/<pid>/stat:
// "pid (comm) state ppid …", where comm may hold spaces and parentheses.
// This process's own parent needs no /proc: a plugin finds its host
// without it.
func parentProcess(pid int) (int, error) {
	if pid == os.Getpid() {
		return os.Getppid(), nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	var fields [][]byte
	if i := bytes.LastIndexByte(b, ')'); i >= 0 {
		fields = bytes.Fields(b[i+1:])
	}
	if len(fields) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	return strconv.Atoi(string(fields[1]))
}
