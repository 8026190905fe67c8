package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/egress"
)

const userAgent = "evorelay-webhook/" + version

// maxRetryAfter caps the delay a receiver can ask for.
const maxRetryAfter = 24 * time.Hour

// post sends one body and turns the answer into the delivery's outcome.
func (s *Sink) post(ctx context.Context, cs *clients, dest *url.URL, headers map[string]string, key []byte, id string, b []byte) error {
	release, err := s.limit.acquire(ctx, hostKey(dest))
	if err != nil {
		return fmt.Errorf("POST %s: gave up waiting for a connection: %w", where(dest), err)
	}
	defer release()

	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest.String(), bytes.NewReader(b))
	if err != nil {
		return sdk.Permanent(fmt.Errorf("POST %s: %v", where(dest), err))
	}
	req.Header.Set("User-Agent", userAgent)
	for name, value := range headers {
		if !reservedHeaders[strings.ToLower(name)] {
			req.Header.Set(name, value)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	// Standard Webhooks spells its headers in lower case.
	req.Header["webhook-id"] = []string{id}
	if key != nil {
		ts := s.now().Unix()
		req.Header["webhook-timestamp"] = []string{strconv.FormatInt(ts, 10)}
		req.Header["webhook-signature"] = []string{signature(key, id, ts, b)}
	}

	// The transport itself: a delivery follows no redirect and keeps no
	// cookie, so http.Client would only add a copy of the headers and a
	// timer goroutine per request (the timeout is ctx's).
	resp, err := cs.transport.RoundTrip(req)
	if err != nil {
		return requestError("POST", dest, s.cfg.timeout, err)
	}
	defer drain(resp.Body)
	return outcome("POST", dest, resp, s.now())
}

// requestError is the outcome of a request that got no answer: retried,
// unless the egress policy refused the connection.
func requestError(method string, u *url.URL, timeout time.Duration, err error) error {
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err // its message repeats the whole URL, query included
	}
	var ne net.Error
	switch {
	case errors.Is(err, egress.ErrRefused), errors.Is(err, errBadRedirect):
		return sdk.Permanent(fmt.Errorf("%s %s: %w", method, where(u), cause))
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s %s: canceled (the sink or its stream is stopping): %w", method, where(u), cause)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s %s: no answer within %s: %w", method, where(u), timeout, cause)
	}
	return fmt.Errorf("%s %s: %w", method, where(u), cause)
}

// minAfter429 is the least a 429 delays the next attempt.
const minAfter429 = 30 * time.Second

// outcome maps a response to the delivery's outcome.
func outcome(method string, u *url.URL, resp *http.Response, now time.Time) error {
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return nil
	}
	err := fmt.Errorf("%s %s: %d %s%s", method, where(u), code, http.StatusText(code), snippet(resp.Body))
	switch {
	case code == http.StatusGone:
		return sdk.Gone(err)
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		d, ok := retryAfter(resp.Header.Get("Retry-After"), now)
		if code == http.StatusTooManyRequests && d < minAfter429 {
			// A receiver that says "too many" gets a real pause, even
			// when it does not say how long.
			d, ok = minAfter429, true
		}
		if ok {
			return sdk.RetryAfter(err, d)
		}
		return err
	case code >= 300 && code <= 399:
		return sdk.Permanent(fmt.Errorf("%w; redirects (to %q) are not followed: set url to the final address", err, resp.Header.Get("Location")))
	}
	return sdk.Permanent(err)
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		d = maxRetryAfter
		if secs < uint64(maxRetryAfter/time.Second) {
			d = time.Duration(secs) * time.Second
		}
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	if d <= 0 {
		return 0, false
	}
	return min(d, maxRetryAfter), true
}

// snippet is ": " and the start of a response body, quoted, or "" when it
// is empty.
func snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Join(strings.FieldsFunc(s, func(c rune) bool {
		return unicode.IsSpace(c) || unicode.IsControl(c)
	}), " ")
	if s == "" {
		return ""
	}
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return fmt.Sprintf(": %q", s)
}

// drain reads a little of what is left of a body so that its connection
// can be reused, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// where is a URL fit for a log or a dead letter: no user, password or
// query, which may carry credentials.
func where(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}
