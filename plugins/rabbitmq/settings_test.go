package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestParseProcessSettings(t *testing.T) {
	sinktest.ParseSettings(t, parseProcessSettings, []sinktest.SettingsCase[processSettings]{
		{Name: "defaults", In: map[string]string{"uri": "amqp://guest:guest@127.0.0.1:5672/"}, Check: func(t *testing.T, ps processSettings) {
			if ps.addr != "amqp://127.0.0.1:5672/" || ps.queueType != "quorum" || ps.global.on ||
				ps.global.exchange != "evolution_exchange" || ps.heartbeat != 10*time.Second || ps.maxInFlight != 1000 {
				t.Errorf("defaults: %+v", ps)
			}
		}},
		{Name: "no uri is not an error", In: map[string]string{}, Check: func(t *testing.T, ps processSettings) {
			if ps.uri != "" {
				t.Errorf("uri = %q", ps.uri)
			}
		}},
		{Name: "all set", In: map[string]string{
			"uri": "amqps://u:p@mq.example:5671/prod", "global": "true", "global_exchange": "all",
			"global_prefix": "evo", "queue_type": "classic", "heartbeat": "5", "max_in_flight": "10",
			"confirm_timeout": "1m", "reconnect_max_delay": "2s",
		}, Check: func(t *testing.T, ps processSettings) {
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
		{Name: "missing scheme", In: map[string]string{"uri": "amqp//x"},
			Err: "EVORELAY_RABBITMQ_URI: "},
		{Name: "bad port does not echo the password", In: map[string]string{"uri": "amqp://u:s3cret@host:port/"},
			Err: "; expected amqp://user:pass@host:5672/vhost"},
		{Name: "bad global", In: map[string]string{"global": "yes please"}, Err: "EVORELAY_RABBITMQ_GLOBAL: "},
		{Name: "bad queue type", In: map[string]string{"queue_type": "stream"}, Err: "EVORELAY_RABBITMQ_QUEUE_TYPE: "},
		{Name: "bad heartbeat", In: map[string]string{"heartbeat": "-1s"}, Err: "EVORELAY_RABBITMQ_HEARTBEAT: "},
		{Name: "bad max in flight", In: map[string]string{"max_in_flight": "0"}, Err: "EVORELAY_RABBITMQ_MAX_IN_FLIGHT: "},
		{Name: "typo is reported", In: map[string]string{"uri ": "x", "url": "amqp://h/"}, Unknown: "EVORELAY_RABBITMQ_URL"},
	})
}

func TestOpenBadURINamesTheVariable(t *testing.T) {
	sinktest.OpenFails(t, New(), map[string]string{"uri": "http://guest:guest@127.0.0.1/"}, "EVORELAY_RABBITMQ_URI", uriForm)
}

// Without EVORELAY_RABBITMQ_URI the plugin runs, says what to set, refuses
// to enable the sink and retries what it is given.
func TestNotConfigured(t *testing.T) {
	sinktest.NotConfigured(t, New(), "EVORELAY_RABBITMQ_URI")
}

// With the broker unreachable, Deliver answers at once with retryable
// errors and Health says why. Enabling an instance is still accepted (its
// topology is declared on the first publish once the broker is back),
// unless its name cannot name an exchange: that is refused before any I/O.
func TestUnreachableBrokerRetriesAtOnce(t *testing.T) {
	s := sinktest.Unreachable(t, New(), map[string]string{"uri": "amqp://guest:guest@127.0.0.1:1/"}, "disconnected from amqp://127.0.0.1:1/")
	enabled := json.RawMessage(`{"enabled":true,"events":[]}`)
	if _, err := s.Validate(t.Context(), "acme", enabled); err != nil {
		t.Errorf("Validate while the broker is down: %v", err)
	}
	for _, inst := range []string{"amq.direct", strings.Repeat("x", 201)} {
		_, err := s.Validate(t.Context(), inst, enabled)
		sinktest.FieldError(t, err, "instance", "RabbitMQ exchange")
	}
}
