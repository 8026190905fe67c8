package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestParseProcessSettings(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		check   func(t *testing.T, ps processSettings)
		err     string // the error contains it
		unknown string
	}{
		{name: "defaults", in: map[string]string{"uri": "amqp://guest:guest@127.0.0.1:5672/"}, check: func(t *testing.T, ps processSettings) {
			if ps.addr != "amqp://127.0.0.1:5672/" || ps.queueType != "quorum" || ps.global.on ||
				ps.global.exchange != "evolution_exchange" || ps.heartbeat != 10*time.Second || ps.maxInFlight != 1000 {
				t.Errorf("defaults: %+v", ps)
			}
		}},
		{name: "no uri is not an error", in: map[string]string{}, check: func(t *testing.T, ps processSettings) {
			if ps.uri != "" {
				t.Errorf("uri = %q", ps.uri)
			}
		}},
		{name: "all set", in: map[string]string{
			"uri": "amqps://u:p@mq.example:5671/prod", "global": "true", "global_exchange": "all",
			"global_prefix": "evo", "queue_type": "classic", "heartbeat": "5", "max_in_flight": "10",
			"confirm_timeout": "1m", "reconnect_max_delay": "2s",
		}, check: func(t *testing.T, ps processSettings) {
			want := processSettings{
				uri: "amqps://u:p@mq.example:5671/prod", addr: "amqps://mq.example:5671/prod",
				global:    global{on: true, exchange: "all", prefix: "evo"},
				queueType: "classic", heartbeat: 5 * time.Second, maxInFlight: 10,
				confirmTimeout: time.Minute, reconnectMax: 2 * time.Second,
			}
			if ps != want {
				t.Errorf("got %+v\nwant %+v", ps, want)
			}
		}},
		{name: "missing scheme", in: map[string]string{"uri": "amqp//x"},
			err: "EVORELAY_RABBITMQ_URI: "},
		{name: "bad port does not echo the password", in: map[string]string{"uri": "amqp://u:s3cret@host:port/"},
			err: "; expected amqp://user:pass@host:5672/vhost"},
		{name: "bad global", in: map[string]string{"global": "yes please"}, err: "EVORELAY_RABBITMQ_GLOBAL: "},
		{name: "bad queue type", in: map[string]string{"queue_type": "stream"}, err: "EVORELAY_RABBITMQ_QUEUE_TYPE: "},
		{name: "bad heartbeat", in: map[string]string{"heartbeat": "-1s"}, err: "EVORELAY_RABBITMQ_HEARTBEAT: "},
		{name: "bad max in flight", in: map[string]string{"max_in_flight": "0"}, err: "EVORELAY_RABBITMQ_MAX_IN_FLIGHT: "},
		{name: "typo is reported", in: map[string]string{"uri ": "x", "url": "amqp://h/"}, unknown: "EVORELAY_RABBITMQ_URL"},
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

func TestOpenBadURINamesTheVariable(t *testing.T) {
	err := New().Open(context.Background(), sdk.Config{Settings: map[string]string{"uri": "http://guest:guest@127.0.0.1/"}})
	if err == nil || !strings.Contains(err.Error(), "EVORELAY_RABBITMQ_URI") || !strings.Contains(err.Error(), uriForm) {
		t.Fatalf("Open with an http URI: %v, want an error naming EVORELAY_RABBITMQ_URI and the expected form", err)
	}
}

// Without EVORELAY_RABBITMQ_URI the plugin runs, says what to set, refuses
// to enable the sink and retries what it is given.
func TestNotConfigured(t *testing.T) {
	s := New()
	if err := s.Open(context.Background(), sdk.Config{Settings: map[string]string{}}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	h := s.Health(context.Background())
	if h.Ready || !strings.Contains(h.Detail, "not configured: set EVORELAY_RABBITMQ_URI") {
		t.Errorf("Health = %+v", h)
	}
	_, err := s.Validate(context.Background(), "acme", json.RawMessage(`{"enabled":true,"events":[]}`))
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "enabled" || !strings.Contains(fe[0].Message, "EVORELAY_RABBITMQ_URI") {
		t.Errorf("Validate enabled = %v, want a field error on enabled naming EVORELAY_RABBITMQ_URI", err)
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

func TestValidateRefusesReservedInstanceNames(t *testing.T) {
	s := New()
	// A URI nobody listens on: Validate refuses by name before any I/O.
	if err := s.Open(context.Background(), sdk.Config{Settings: map[string]string{"uri": "amqp://guest:guest@127.0.0.1:1/", "reconnect_max_delay": "1s"}}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close(context.Background())
	for _, inst := range []string{"amq.direct", strings.Repeat("x", 201)} {
		_, err := s.Validate(context.Background(), inst, json.RawMessage(`{"enabled":true,"events":[]}`))
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || fe[0].Field != "instance" {
			t.Errorf("Validate(%.20q) = %v, want a field error on instance", inst, err)
		}
	}
}

// With the broker unreachable, Deliver answers at once with retryable
// errors and Health says why.
func TestUnreachableBrokerRetriesAtOnce(t *testing.T) {
	s := New()
	if err := s.Open(context.Background(), sdk.Config{Settings: map[string]string{"uri": "amqp://guest:guest@127.0.0.1:1/"}, Logger: testLogger()}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close(context.Background())
	h := s.Health(context.Background())
	if h.Ready || !strings.Contains(h.Detail, "disconnected from amqp://127.0.0.1:1/") {
		t.Errorf("Health = %+v, want not ready and why", h)
	}
	acks := sinktest.Deliver(t, s, s.naming, sinktest.Delivery(t, "d1", "acme", "CALL", `{"enabled":true,"events":[]}`))
	if err := acks["d1"]; err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("ack = %v, want a retryable not-connected error", err)
	}
	// Enabling an instance is still accepted: its topology is declared on
	// the first publish once the broker is back.
	if _, err := s.Validate(context.Background(), "acme", json.RawMessage(`{"enabled":true,"events":[]}`)); err != nil {
		t.Errorf("Validate while the broker is down: %v", err)
	}
}
