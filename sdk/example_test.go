package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/evorelay/evorelay/sdk"
)

// postSink POSTs each event to the instance's URL: a whole plugin.
type postSink struct {
	sdk.UnimplementedSink
	client *http.Client
}

// postSettings are one instance's settings.
type postSettings struct {
	sdk.Subscription
	URL string `json:"url"`
}

func (s *postSink) Describe() sdk.Description {
	return sdk.Description{Name: "post", Version: "0.1.0"}
}

func (s *postSink) Open(_ context.Context, cfg sdk.Config) error {
	timeout := 10 * time.Second
	if v := cfg.Settings["timeout"]; v != "" { // EVORELAY_POST_TIMEOUT
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("EVORELAY_POST_TIMEOUT: %w; expected a duration such as 10s", err)
		}
		timeout = d
	}
	s.client = &http.Client{Timeout: timeout}
	return nil
}

func (s *postSink) Validate(_ context.Context, _ string, raw json.RawMessage) (json.RawMessage, error) {
	set, err := sdk.ParseSettings[postSettings](raw)
	if err != nil {
		return nil, err
	}
	var fe sdk.FieldErrors
	if u, err := url.Parse(set.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fe.Add("url", "want an http(s) URL, got %q", set.URL)
	}
	if err := fe.Err(); err != nil {
		return nil, err
	}
	return json.Marshal(set)
}

func (s *postSink) Deliver(ctx context.Context, batch []sdk.Delivery, acks sdk.Acks) error {
	for _, d := range batch {
		acks.Done(d.ID, s.post(ctx, d))
	}
	return nil
}

func (s *postSink) post(ctx context.Context, d sdk.Delivery) error {
	set, err := sdk.SettingsOf[postSettings](d)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, set.URL, bytes.NewReader(d.Envelope))
	if err != nil {
		return sdk.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Webhook-Id", d.ID) // the same on every attempt
	resp, err := s.client.Do(req)
	if err != nil {
		return err // retried
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code < 300:
		return nil
	case code == http.StatusGone:
		return sdk.Gone(fmt.Errorf("%s: %s", set.URL, resp.Status))
	case code == http.StatusTooManyRequests || code >= 500:
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return sdk.RetryAfter(fmt.Errorf("%s: %s", set.URL, resp.Status), time.Duration(secs)*time.Second)
	default:
		return sdk.Permanent(fmt.Errorf("%s: %s", set.URL, resp.Status))
	}
}

func (s *postSink) Close(context.Context) error {
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	return nil
}

// A plugin is a Sink and a one-line main. Its test runs the conformance
// suite: sinktest.Run(t, sinktest.Config{New: func() sdk.Sink { return
// &postSink{} }, ...}) with an httptest server as the destination.
func Example() {
	sdk.Serve(&postSink{})
}
