package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestParseProcessSettings(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(creds, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	sinktest.ParseSettings(t, parseProcessSettings, []sinktest.SettingsCase[processSettings]{
		{Name: "defaults", In: map[string]string{"url": "nats://127.0.0.1:4222"}, Check: func(t *testing.T, ps processSettings) {
			if ps.addr != "nats://127.0.0.1:4222" || ps.prefix != "" || ps.maxInFlight != 1000 ||
				ps.ackTimeout != 30*time.Second || ps.streamTTL != 5*time.Second {
				t.Errorf("defaults: %+v", ps)
			}
		}},
		{Name: "no url is not an error", In: map[string]string{}, Check: func(t *testing.T, ps processSettings) {
			if ps.url != "" {
				t.Errorf("url = %q", ps.url)
			}
		}},
		{Name: "several servers, credentials hidden", In: map[string]string{"url": "nats://u:s3cret@a:4222, tls://b:4223", "creds": creds,
			"subject_prefix": "evolution", "stream_cache_ttl": "1", "max_in_flight": "5"},
			Check: func(t *testing.T, ps processSettings) {
				if ps.addr != "nats://a:4222,tls://b:4223" || ps.creds != creds || ps.prefix != "evolution" ||
					ps.streamTTL != time.Second || ps.maxInFlight != 5 {
					t.Errorf("got %+v", ps)
				}
			}},
		{Name: "bad scheme", In: map[string]string{"url": "http://h:4222"}, Err: "EVORELAY_NATS_URL: scheme \"http\""},
		{Name: "no host", In: map[string]string{"url": "nats://"}, Err: "EVORELAY_NATS_URL: no host"},
		{Name: "bad url hides the password", In: map[string]string{"url": "nats://u:s3cret@h:port"}, Err: "EVORELAY_NATS_URL: "},
		{Name: "missing creds file", In: map[string]string{"creds": "/nonexistent/x.creds"}, Err: "EVORELAY_NATS_CREDS: "},
		{Name: "cert without key", In: map[string]string{"tls_cert": creds}, Err: "EVORELAY_NATS_TLS_CERT and EVORELAY_NATS_TLS_KEY"},
		{Name: "wildcard prefix", In: map[string]string{"subject_prefix": "evo.>"}, Err: "EVORELAY_NATS_SUBJECT_PREFIX: "},
		{Name: "bad timeout", In: map[string]string{"ack_timeout": "soon"}, Err: "EVORELAY_NATS_ACK_TIMEOUT: "},
		{Name: "typo is reported", In: map[string]string{"uri": "nats://h"}, Unknown: "EVORELAY_NATS_URI"},
	})
}

// Without EVORELAY_NATS_URL the plugin runs, says what to set, refuses to
// enable the sink and retries what it is given.
func TestNotConfigured(t *testing.T) {
	sinktest.NotConfigured(t, New(), "EVORELAY_NATS_URL")
}

func TestOpenBadURLNamesTheVariable(t *testing.T) {
	sinktest.OpenFails(t, New(), map[string]string{"url": "amqp://127.0.0.1:4222"}, "EVORELAY_NATS_URL", "nats://host:4222")
}

// With the server unreachable, Open still succeeds (the connection retries
// in the background), Deliver answers at once with retryable errors,
// Health says why, and Validate accepts without a mode.
func TestUnreachableServerRetriesAtOnce(t *testing.T) {
	s := sinktest.Unreachable(t, New(), map[string]string{"url": "nats://127.0.0.1:1"}, "not connected to nats://127.0.0.1:1")
	in := `{"enabled":true,"events":[],"mode":"jetstream"}`
	out, err := s.Validate(t.Context(), "acme", json.RawMessage(in))
	if err != nil || strings.Contains(string(out), "mode") {
		t.Errorf("Validate while disconnected = %s, %v; want accepted, the stale mode dropped", out, err)
	}
	_, err = s.Validate(t.Context(), "my shop", json.RawMessage(`{"enabled":true,"events":[]}`))
	sinktest.FieldError(t, err, "instance", "cannot stand in a NATS subject")
}
