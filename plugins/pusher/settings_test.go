package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

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
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // the variable the error must start with; "" means none
	}{
		{"nothing", map[string]string{}, ""},
		{"host", map[string]string{"host": "127.0.0.1:6001"}, ""},
		{"host with scheme", map[string]string{"host": "http://127.0.0.1:6001"}, "EVORELAY_PUSHER_HOST"},
		{"host with path", map[string]string{"host": "pusher.local/x"}, "EVORELAY_PUSHER_HOST"},
		{"global", map[string]string{"global": "true", "app_id": "1", "key": "k", "secret": "s", "cluster": "eu"}, ""},
		{"global not bool", map[string]string{"global": "si"}, "EVORELAY_PUSHER_GLOBAL"},
		{"global without secret", map[string]string{"global": "true", "app_id": "1", "key": "k", "cluster": "eu"}, "EVORELAY_PUSHER_SECRET"},
		{"global without app id", map[string]string{"global": "1", "key": "k", "secret": "s", "cluster": "eu"}, "EVORELAY_PUSHER_APP_ID"},
		{"app without global", map[string]string{"app_id": "1"}, "EVORELAY_PUSHER_APP_ID"},
		{"use_tls", map[string]string{"global": "true", "app_id": "1", "key": "k", "secret": "s", "cluster": "eu", "use_tls": "maybe"}, "EVORELAY_PUSHER_USE_TLS"},
		{"timeout", map[string]string{"timeout": "soon"}, "EVORELAY_PUSHER_TIMEOUT"},
		{"timeout seconds", map[string]string{"timeout": "5"}, ""},
	}
	for _, tt := range tests {
		_, err := parseProcess(tt.env)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr+":")):
			t.Errorf("%s: %v, want an error naming %s", tt.name, err, tt.wantErr)
		}
	}
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
