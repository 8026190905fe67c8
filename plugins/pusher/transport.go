package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// statusError is a Pusher answer other than 2xx. pusher-http-go reports
// those as a formatted string; statusTransport turns them into this error
// instead, so the sink decides by the status code, not by parsing text.
type statusError struct {
	code       int
	body       string // the start of the response body
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("HTTP %d", e.code)
	}
	return fmt.Sprintf("HTTP %d: %s", e.code, e.body)
}

// statusTransport answers every non-2xx response with a *statusError,
// which reaches the caller of pusher-http-go wrapped in a *url.Error.
type statusTransport struct{ next http.RoundTripper }

// maxErrorBody is how much of an error response is kept for the reason.
const maxErrorBody = 512

func (t statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode/100 == 2 {
		return resp, err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	resp.Body.Close()
	e := &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(b))}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		e.retryAfter = time.Duration(s) * time.Second
	} else if at, err := http.ParseTime(resp.Header.Get("Retry-After")); err == nil {
		e.retryAfter = max(time.Until(at), 0)
	}
	return nil, e
}

// CloseIdleConnections reaches the transport underneath.
func (t statusTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
