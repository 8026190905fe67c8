package main

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestValidate(t *testing.T) {
	sinktest.Validate(t, sinktest.OpenWith(t, New(), events.NamingSeed), []sinktest.ValidateCase{
		{Name: "complete", Instance: "shop", Settings: `{"enabled":true,"events":["CALL"],"appId":"1001","key":"k","secret":"s","cluster":"mt1","useTLS":false}`,
			Want: `{"enabled":true,"events":["CALL"],"appId":"1001","key":"k","secret":"s","cluster":"mt1","useTLS":false}`},
		{Name: "useTLS defaults to true, appId as a number", Instance: "shop", Settings: `{"enabled":true,"events":[],"appId":1001,"key":"k","secret":"s","cluster":"us2"}`,
			Want: `{"enabled":true,"events":[],"appId":"1001","key":"k","secret":"s","cluster":"us2","useTLS":true}`},
		{Name: "disabled needs nothing", Instance: "shop", Settings: `{"enabled":false,"events":[]}`,
			Want: `{"enabled":false,"events":[],"appId":"","key":"","secret":"","cluster":"","useTLS":true}`},
		{Name: "all four missing", Instance: "shop", Settings: `{"enabled":true,"events":[]}`,
			Fields: []string{"appId", "key", "secret", "cluster"}, Msg: "required when enabled"},
		{Name: "secret missing", Instance: "shop", Settings: `{"enabled":true,"events":[],"appId":"1","key":"k","cluster":"mt1"}`,
			Fields: []string{"secret"}, Msg: "required when enabled"},
		{Name: "blank cluster", Instance: "shop", Settings: `{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"  "}`,
			Fields: []string{"cluster"}, Msg: "required when enabled"},
		{Name: "bad cluster", Instance: "shop", Settings: `{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"api.pusher.com"}`,
			Fields: []string{"cluster"}, Msg: "not a Pusher cluster"},
		{Name: "bad appId", Instance: "shop", Settings: `{"enabled":true,"events":[],"appId":"1/2","key":"k","secret":"s","cluster":"mt1"}`,
			Fields: []string{"appId"}, Msg: "not a Pusher app id"},
		{Name: "useTLS not bool", Instance: "shop", Settings: `{"enabled":false,"events":[],"useTLS":"yes"}`,
			Fields: []string{"useTLS"}, Msg: "true or false"},
		{Name: "unknown field", Instance: "shop", Settings: `{"enabled":false,"events":[],"channel":"x"}`,
			Fields: []string{"channel"}, Msg: "unknown field"},
		{Name: "instance is no channel name", Instance: "loja centro",
			Settings: `{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"mt1"}`,
			Fields:   []string{"instance"}, Msg: "Pusher allows only"},
		{Name: "encrypted channel", Instance: "private-encrypted-shop",
			Settings: `{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"mt1"}`,
			Fields:   []string{"instance"}, Msg: "encrypted"},
		{Name: "not an object", Instance: "shop", Settings: `"x"`, Fields: []string{"settings"}, Msg: "JSON object"},
	})
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
