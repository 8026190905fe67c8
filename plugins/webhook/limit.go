package main

import (
	"context"
	"net/url"
	"strings"
	"sync"
)

// maxInFlight bounds the requests the sink has open at once, every host
// together.
const maxInFlight = 512

// limiter bounds requests per host and in all. A request first waits for a
// slot of its host and only then for one of the shared slots, so requests
// queued behind a hanging host do not hold shared slots.
type limiter struct {
	perHost int
	all     chan struct{}

	mu    sync.Mutex
	hosts map[string]*hostSlots
}

type hostSlots struct {
	slots chan struct{}
	users int // holders and waiters; the entry goes when it drops to 0
}

func newLimiter(perHost, all int) *limiter {
	return &limiter{perHost: perHost, all: make(chan struct{}, all), hosts: map[string]*hostSlots{}}
}

// acquire waits for a slot for host and a shared slot. release must be
// called once when err is nil.
func (l *limiter) acquire(ctx context.Context, host string) (release func(), err error) {
	l.mu.Lock()
	h := l.hosts[host]
	if h == nil {
		h = &hostSlots{slots: make(chan struct{}, l.perHost)}
		l.hosts[host] = h
	}
	h.users++
	l.mu.Unlock()
	leave := func() {
		l.mu.Lock()
		if h.users--; h.users == 0 {
			delete(l.hosts, host)
		}
		l.mu.Unlock()
	}

	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
	select {
	case l.all <- struct{}{}:
	case <-ctx.Done():
		<-h.slots
		leave()
		return nil, ctx.Err()
	}
	return func() {
		<-l.all
		<-h.slots
		leave()
	}, nil
}

// hostKey is what connections are pooled by: scheme, host and port.
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") {
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + port
}
