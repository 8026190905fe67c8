package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestParseProcessSettings(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(creds, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      map[string]string
		check   func(t *testing.T, ps processSettings)
		err     string
		unknown string
	}{
		{name: "defaults", in: map[string]string{"url": "nats://127.0.0.1:4222"}, check: func(t *testing.T, ps processSettings) {
			if ps.addr != "nats://127.0.0.1:4222" || ps.prefix != "" || ps.maxInFlight != 1000 ||
				ps.ackTimeout != 30*time.Second || ps.streamTTL != 5*time.Second {
				t.Errorf("defaults: %+v", ps)
			}
		}},
		{name: "no url is not an error", in: map[string]string{}, check: func(t *testing.T, ps processSettings) {
			if ps.url != "" {
				t.Errorf("url = %q", ps.url)
			}
		}},
		{name: "several servers, credentials hidden", in: map[string]string{"url": "nats://u:s3cret@a:4222, tls://b:4223", "creds": creds,
			"subject_prefix": "evolution", "stream_cache_ttl": "1", "max_in_flight": "5"},
			check: func(t *testing.T, ps processSettings) {
				if ps.addr != "nats://a:4222,tls://b:4223" || ps.creds != creds || ps.prefix != "evolution" ||
					ps.streamTTL != time.Second || ps.maxInFlight != 5 {
					t.Errorf("got %+v", ps)
				}
			}},
		{name: "bad scheme", in: map[string]string{"url": "http://h:4222"}, err: "EVORELAY_NATS_URL: scheme \"http\""},
		{name: "no host", in: map[string]string{"url": "nats://"}, err: "EVORELAY_NATS_URL: no host"},
		{name: "bad url hides the password", in: map[string]string{"url": "nats://u:s3cret@h:port"}, err: "EVORELAY_NATS_URL: "},
		{name: "missing creds file", in: map[string]string{"creds": "/nonexistent/x.creds"}, err: "EVORELAY_NATS_CREDS: "},
		{name: "cert without key", in: map[string]string{"tls_cert": creds}, err: "EVORELAY_NATS_TLS_CERT and EVORELAY_NATS_TLS_KEY"},
		{name: "wildcard prefix", in: map[string]string{"subject_prefix": "evo.>"}, err: "EVORELAY_NATS_SUBJECT_PREFIX: "},
		{name: "bad timeout", in: map[string]string{"ack_timeout": "soon"}, err: "EVORELAY_NATS_ACK_TIMEOUT: "},
		{name: "typo is reported", in: map[string]string{"uri": "nats://h"}, unknown: "EVORELAY_NATS_URI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, unknown, err := parseProcessSettings(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want one containing %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if tt.unknown != "" && !strings.Contains(strings.Join(unknown, ","), tt.unknown) {
				t.Errorf("unknown = %v, want %s among them", unknown, tt.unknown)
			}
			if tt.check != nil {
				tt.check(t, ps)
			}
		})
	}
}

// Without EVORELAY_NATS_URL the plugin runs, says what to set, refuses to
// enable the sink and retries what it is given.
func TestNotConfigured(t *testing.T) {
	s := New()
	if err := s.Open(context.Background(), sdk.Config{Settings: map[string]string{}}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	h := s.Health(context.Background())
	if h.Ready || !strings.HasPrefix(h.Detail, "not configured: set EVORELAY_NATS_URL") {
		t.Errorf("Health = %+v", h)
	}
	_, err := s.Validate(context.Background(), "acme", json.RawMessage(`{"enabled":true,"events":[]}`))
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "enabled" || !strings.Contains(fe[0].Message, "EVORELAY_NATS_URL") {
		t.Errorf("Validate enabled = %v, want a field error on enabled naming EVORELAY_NATS_URL", err)
	}
	off := json.RawMessage(`{"enabled":false,"events":["CALL"]}`)
	if got, err := s.Validate(context.Background(), "acme", off); err != nil || string(got) != string(off) {
		t.Errorf("Validate disabled = %s, %v; want it kept", got, err)
	}
	acks := sinktest.Deliver(t, s, s.naming, sinktest.Delivery(t, "d1", "acme", "CALL", `{"enabled":true,"events":[]}`))
	if err := acks["d1"]; err == nil || sdk.IsPermanent(err) {
		t.Errorf("Deliver while not configured acked %v, want a retryable error", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestOpenBadURLNamesTheVariable(t *testing.T) {
	err := New().Open(context.Background(), sdk.Config{Settings: map[string]string{"url": "amqp://127.0.0.1:4222"}})
	if err == nil || !strings.Contains(err.Error(), "EVORELAY_NATS_URL") || !strings.Contains(err.Error(), "nats://host:4222") {
		t.Fatalf("Open with an amqp URL: %v, want an error naming EVORELAY_NATS_URL and the expected form", err)
	}
}

// With the server unreachable, Open still succeeds (the connection retries
// in the background), Deliver answers at once with retryable errors,
// Health says why, and Validate accepts without a mode.
func TestUnreachableServerRetriesAtOnce(t *testing.T) {
	s := New()
	if err := s.Open(context.Background(), sdk.Config{Settings: map[string]string{"url": "nats://127.0.0.1:1"}, Logger: testLogger()}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close(context.Background())
	h := s.Health(context.Background())
	if h.Ready || !strings.Contains(h.Detail, "not connected to nats://127.0.0.1:1") {
		t.Errorf("Health = %+v, want not ready and why", h)
	}
	acks := sinktest.Deliver(t, s, s.naming, sinktest.Delivery(t, "d1", "acme", "CALL", `{"enabled":true,"events":[]}`))
	if err := acks["d1"]; err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("ack = %v, want a retryable not-connected error", err)
	}
	in := `{"enabled":true,"events":[],"mode":"jetstream"}`
	out, err := s.Validate(context.Background(), "acme", json.RawMessage(in))
	if err != nil || strings.Contains(string(out), "mode") {
		t.Errorf("Validate while disconnected = %s, %v; want accepted, the stale mode dropped", out, err)
	}
	_, err = s.Validate(context.Background(), "my shop", json.RawMessage(`{"enabled":true,"events":[]}`))
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || fe[0].Field != "instance" {
		t.Errorf("Validate of an instance name with a space = %v, want a field error on instance", err)
	}
}
