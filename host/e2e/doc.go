// Package e2e tests evorelay from the outside: it builds the real host and
// plugin binaries, starts them as processes, drives the REST routes, kills
// processes with SIGKILL, and counts what real receivers got. It has no
// non-test code but this comment.
package e2e
