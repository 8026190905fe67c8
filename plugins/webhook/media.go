package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/evorelay/evorelay/sdk"
)

const (
	// mediaAttempts is the attempt from which a mediaUrl fetch that failed
	// but might succeed later no longer holds the event back.
	mediaAttempts = 3
	// mediaConcurrency bounds the media fetches (and their buffers) at once.
	mediaConcurrency = 8
	// maxMediaRedirects bounds the redirects a mediaUrl fetch follows.
	maxMediaRedirects = 5
)

// errBadRedirect is a redirect the sink will not follow.
var errBadRedirect = errors.New("redirect not followed")

// mediaError is a failed mediaUrl fetch.
type mediaError struct {
	err       error
	transient bool          // it might succeed later
	after     time.Duration // the server's Retry-After, when transient
}

func (e *mediaError) Error() string { return "mediaUrl: " + e.err.Error() }
func (e *mediaError) Unwrap() error { return e.err }

// mediaRule applies webhook_base64 to data: without it, data.message.base64
// goes; with it, a message that has only a mediaUrl gets its base64
// fetched. data is returned as it is whenever nothing changes.
func (s *Sink) mediaRule(ctx context.Context, d sdk.Delivery, cs *clients, keep bool, data []byte) ([]byte, error) {
	// Most events carry no media: skip the walk through data when the key
	// the rule acts on does not appear at all.
	if !keep && !bytes.Contains(data, []byte(`"base64"`)) || keep && !bytes.Contains(data, []byte(`"mediaUrl"`)) {
		return data, nil
	}
	msg, ms, at, ok := message(data)
	if !ok {
		return data, nil
	}
	b64, has := lookup(msg, ms, "base64")
	if !keep {
		if !has {
			return data, nil
		}
		return replace(data, at, without(msg, ms, "base64")), nil
	}
	if has && string(b64) != "null" && string(b64) != `""` {
		return data, nil
	}
	raw, _ := lookup(msg, ms, "mediaUrl")
	mediaURL := stringValue(raw)
	if mediaURL == "" {
		return data, nil
	}
	enc, err := s.fetchMedia(ctx, cs, mediaURL)
	if err != nil {
		var me *mediaError
		if errors.As(err, &me) && me.transient && d.Attempt < mediaAttempts {
			err = fmt.Errorf("%w (retried; from attempt %d the event is delivered without base64)", err, mediaAttempts)
			if me.after > 0 {
				return nil, sdk.RetryAfter(err, me.after)
			}
			return nil, err
		}
		s.logger(d).Warn("delivering without data.message.base64: its mediaUrl could not be fetched", "error", err)
		return data, nil
	}
	msg = without(msg, ms, "base64") // a null or empty one
	ms, _ = members(msg)
	return replace(data, at, with(msg, ms, "base64", enc)), nil
}

// fetchMedia GETs a mediaUrl and returns its content as a JSON string of
// base64. Errors are *mediaError.
func (s *Sink) fetchMedia(ctx context.Context, cs *clients, raw string) ([]byte, error) {
	u, err := parseURL(raw)
	if err != nil {
		return nil, &mediaError{err: err}
	}
	select {
	case s.mediaSlots <- struct{}{}:
		defer func() { <-s.mediaSlots }()
	case <-ctx.Done():
		return nil, &mediaError{err: ctx.Err(), transient: true}
	}
	release, err := s.limit.acquire(ctx, hostKey(u))
	if err != nil {
		return nil, &mediaError{err: err, transient: true}
	}
	defer release()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &mediaError{err: err}
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := cs.media.Do(req)
	if err != nil {
		err = requestError("GET", u, s.cfg.mediaTimeout, err)
		return nil, &mediaError{err: err, transient: !sdk.IsPermanent(err)}
	}
	defer drain(resp.Body)
	if err := outcome("GET", u, resp, s.now()); err != nil {
		// the same classes as a delivery: 408, 429 and 5xx may pass
		me := &mediaError{err: err, transient: !sdk.IsPermanent(err)}
		if me.transient {
			me.after, _ = retryAfter(resp.Header.Get("Retry-After"), s.now())
		}
		return nil, me
	}
	limit := s.cfg.mediaMaxBytes
	tooBig := &mediaError{err: fmt.Errorf("GET %s: more than EVORELAY_WEBHOOK_MEDIA_MAX_BYTES (%d bytes)", where(u), limit)}
	if resp.ContentLength > limit {
		return nil, tooBig
	}
	content, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, &mediaError{err: requestError("GET", u, s.cfg.mediaTimeout, err), transient: true}
	}
	if int64(len(content)) > limit {
		return nil, tooBig
	}
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(content))+2)
	enc[0], enc[len(enc)-1] = '"', '"'
	base64.StdEncoding.Encode(enc[1:], content)
	return enc, nil
}

// checkMediaRedirect follows a few redirects, to http(s) URLs; where each
// hop may connect is checked by the dialer, as for the first.
func checkMediaRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxMediaRedirects {
		return fmt.Errorf("%w: more than %d redirects", errBadRedirect, maxMediaRedirects)
	}
	if _, err := parseURL(req.URL.String()); err != nil {
		return fmt.Errorf("%w: to %s: %v", errBadRedirect, where(req.URL), err)
	}
	return nil
}
