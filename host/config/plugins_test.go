package config

import (
	"reflect"
	"testing"
)

func TestPluginSettings(t *testing.T) {
	path := writeYAML(t, sampleYAML)
	c := mustLoad(t, []string{"-config", path}, base(t,
		"EVORELAY_RABBITMQ_URI=amqp://env/",      // wins over the file
		"EVORELAY_RABBITMQ_PREFETCH_COUNT=10",    // only in env
		"EVORELAY_RABBITMQ_=ignored",             // no key after the prefix
		"EVORELAY_MY_SINK_REGION=x",              // '-' in the name is '_'
		"EVORELAY_KAFKA_BROKERS=k1:9092,k2:9092", // a third-party plugin
		"EVORELAY_NATS_URL=nats://localhost:4222",
		"EVORELAY_RABBITMQURI=nope", // no '_' after the name
	))
	cases := []struct {
		name string
		want map[string]string
	}{
		{"rabbitmq", map[string]string{
			"uri":            "amqp://env/",
			"exchange_type":  "topic",
			"prefetch_count": "10",
		}},
		{"sqs", map[string]string{"region": "eu-west-1", "queues": "a,b"}},
		{"my-sink", map[string]string{"token": "abc", "region": "x"}},
		{"MY-SINK", map[string]string{"token": "abc", "region": "x"}},
		{"kafka", map[string]string{"brokers": "k1:9092,k2:9092"}},
		{"nats", map[string]string{"url": "nats://localhost:4222"}},
		{"empty", map[string]string{}},
		{"pusher", map[string]string{}},
	}
	for _, tc := range cases {
		got := c.PluginSettings(tc.name)
		if got == nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("PluginSettings(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}

	// The result is the caller's.
	c.PluginSettings("rabbitmq")["uri"] = "changed"
	if got := c.PluginSettings("rabbitmq")["uri"]; got != "amqp://env/" {
		t.Errorf("mutating a result changed the config: %q", got)
	}
}

func TestPluginSettingsNeverGetHostVariables(t *testing.T) {
	c := mustLoad(t, nil, base(t,
		"EVORELAY_API_KEY=the-host-key",
		"EVORELAY_REDIS_URL=redis://localhost:6379/0",
		"EVORELAY_SPOOL_MAX_EVENTS=5",
		"EVORELAY_SPOOL_COLOR=blue",
	))
	for _, tc := range []struct {
		name string
		want map[string]string
	}{
		{"api", map[string]string{}},
		{"redis", map[string]string{}},
		{"spool", map[string]string{"color": "blue"}},
	} {
		if got := c.PluginSettings(tc.name); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("PluginSettings(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
