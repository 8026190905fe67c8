package main

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestValidate(t *testing.T) {
	s := New()
	if err := s.Open(context.Background(), sdk.Config{Settings: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		instance  string
		settings  string
		want      string // normalized; "" when field errors are expected
		wantField []string
		wantMsg   string
	}{
		{name: "complete", instance: "shop", settings: `{"enabled":true,"events":["CALL"],"appId":"1001","key":"k","secret":"s","cluster":"mt1","useTLS":false}`,
			want: `{"enabled":true,"events":["CALL"],"appId":"1001","key":"k","secret":"s","cluster":"mt1","useTLS":false}`},
		{name: "useTLS defaults to true, appId as a number", instance: "shop", settings: `{"enabled":true,"events":[],"appId":1001,"key":"k","secret":"s","cluster":"us2"}`,
			want: `{"enabled":true,"events":[],"appId":"1001","key":"k","secret":"s","cluster":"us2","useTLS":true}`},
		{name: "disabled needs nothing", instance: "shop", settings: `{"enabled":false,"events":[]}`,
			want: `{"enabled":false,"events":[],"appId":"","key":"","secret":"","cluster":"","useTLS":true}`},
		{name: "all four missing", instance: "shop", settings: `{"enabled":true,"events":[]}`,
			wantField: []string{"appId", "key", "secret", "cluster"}, wantMsg: "required when enabled"},
		{name: "secret missing", instance: "shop", settings: `{"enabled":true,"events":[],"appId":"1","key":"k","cluster":"mt1"}`,
			wantField: []string{"secret"}, wantMsg: "required when enabled"},
		{name: "blank cluster", instance: "shop", settings: `{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"  "}`,
			wantField: []string{"cluster"}, wantMsg: "required when enabled"},
		{name: "bad cluster", instance: "shop", settings: `{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"api.pusher.com"}`,
			wantField: []string{"cluster"}, wantMsg: "not a Pusher cluster"},
		{name: "bad appId", instance: "shop", settings: `{"enabled":true,"events":[],"appId":"1/2","key":"k","secret":"s","cluster":"mt1"}`,
			wantField: []string{"appId"}, wantMsg: "not a Pusher app id"},
		{name: "useTLS not bool", instance: "shop", settings: `{"enabled":false,"events":[],"useTLS":"yes"}`,
			wantField: []string{"useTLS"}, wantMsg: "true or false"},
		{name: "unknown field", instance: "shop", settings: `{"enabled":false,"events":[],"channel":"x"}`,
			wantField: []string{"channel"}, wantMsg: "unknown field"},
		{name: "instance is no channel name", instance: "loja centro",
			settings:  `{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"mt1"}`,
			wantField: []string{"instance"}, wantMsg: "Pusher allows only"},
		{name: "encrypted channel", instance: "private-encrypted-shop",
			settings:  `{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"mt1"}`,
			wantField: []string{"instance"}, wantMsg: "encrypted"},
		{name: "not an object", instance: "shop", settings: `"x"`, wantField: []string{"settings"}, wantMsg: "JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := s.Validate(context.Background(), tt.instance, json.RawMessage(tt.settings))
			if len(tt.wantField) > 0 {
				for _, f := range tt.wantField {
					sinktest.FieldError(t, err, f, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.want {
				t.Errorf("Validate = %s, want %s", out, tt.want)
			}
		})
	}
}

func TestParseProcess(t *testing.T) {
	global := map[string]string{"global": "true", "app_id": "1", "key": "k", "secret": "s", "cluster": "eu"}
	with := func(k, v string) map[string]string {
		m := maps.Clone(global)
		m[k] = v
		return m
	}
	sinktest.ParseSettings(t, parseProcess, []sinktest.SettingsCase[process]{
		{Name: "nothing", In: map[string]string{}, Check: func(t *testing.T, p process) {
			if p.global != nil || p.host != "" || p.timeout != 10*time.Second {
				t.Errorf("defaults: %+v", p)
			}
		}},
		{Name: "host", In: map[string]string{"host": "127.0.0.1:6001"}, Check: func(t *testing.T, p process) {
			if p.host != "127.0.0.1:6001" {
				t.Errorf("host = %q", p.host)
			}
		}},
		{Name: "host with scheme", In: map[string]string{"host": "http://127.0.0.1:6001"}, Err: "EVORELAY_PUSHER_HOST: "},
		{Name: "host with path", In: map[string]string{"host": "pusher.local/x"}, Err: "EVORELAY_PUSHER_HOST: "},
		{Name: "global", In: global, Check: func(t *testing.T, p process) {
			if p.global == nil || *p.global != (app{AppID: "1", Key: "k", Secret: "s", Cluster: "eu", UseTLS: true}) {
				t.Errorf("global app = %+v", p.global)
			}
		}},
		{Name: "global not bool", In: map[string]string{"global": "si"}, Err: "EVORELAY_PUSHER_GLOBAL: "},
		{Name: "global without secret", In: with("secret", ""), Err: "EVORELAY_PUSHER_SECRET: "},
		{Name: "global without app id", In: map[string]string{"global": "1", "key": "k", "secret": "s", "cluster": "eu"}, Err: "EVORELAY_PUSHER_APP_ID: "},
		{Name: "app without global", In: map[string]string{"app_id": "1"}, Err: "EVORELAY_PUSHER_APP_ID: "},
		{Name: "use_tls", In: with("use_tls", "maybe"), Err: "EVORELAY_PUSHER_USE_TLS: "},
		{Name: "timeout", In: map[string]string{"timeout": "soon"}, Err: "EVORELAY_PUSHER_TIMEOUT: "},
		{Name: "timeout seconds", In: map[string]string{"timeout": "5"}, Check: func(t *testing.T, p process) {
			if p.timeout != 5*time.Second {
				t.Errorf("timeout = %v", p.timeout)
			}
		}},
		{Name: "typo is reported", In: map[string]string{"clustr": "eu"}, Unknown: "EVORELAY_PUSHER_CLUSTR"},
	})
}

func TestOpenNeverLogsSecrets(t *testing.T) {
	var log strings.Builder
	s := New()
	err := s.Open(context.Background(), sdk.Config{
		Settings: map[string]string{"global": "true", "app_id": "1", "key": "k", "secret": "s3cr3t-value", "cluster": "eu", "colour": "blue"},
		Logger:   newLogger(&log),
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "s3cr3t-value") {
		t.Errorf("the log holds the secret: %s", log.String())
	}
	if !strings.Contains(log.String(), "EVORELAY_PUSHER_COLOUR") {
		t.Errorf("an unknown variable was not warned about: %s", log.String())
	}
}
