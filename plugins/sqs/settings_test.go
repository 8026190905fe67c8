package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestParseProcess(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // the variable the error must name; "" means no error
		check   func(t *testing.T, p process)
	}{
		{name: "nothing set", env: map[string]string{}},
		{name: "full", env: map[string]string{
			"region": "sa-east-1", "endpoint": "http://127.0.0.1:4100",
			"access_key_id": "AKID", "secret_access_key": "SECRET", "account_id": "123456789012",
			"queue_url_prefix": "https://sqs.sa-east-1.amazonaws.com/123456789012/", "group_by": "chat",
		}, check: func(t *testing.T, p process) {
			if p.queueURLPrefix != "https://sqs.sa-east-1.amazonaws.com/123456789012" || p.groupBy != groupByChat || p.endpoint != "http://127.0.0.1:4100" {
				t.Errorf("got %+v", p)
			}
		}},
		{name: "retention", env: map[string]string{"message_retention": "6h"}, check: func(t *testing.T, p process) {
			if p.retention != 6*time.Hour {
				t.Errorf("retention %v", p.retention)
			}
		}},
		{name: "retention under SQS's minimum", env: map[string]string{"message_retention": "30s"}, wantErr: "EVORELAY_SQS_MESSAGE_RETENTION"},
		{name: "retention over SQS's maximum", env: map[string]string{"message_retention": "15d"}, wantErr: "EVORELAY_SQS_MESSAGE_RETENTION"},
		{name: "retention not whole seconds", env: map[string]string{"message_retention": "90.5s"}, wantErr: "EVORELAY_SQS_MESSAGE_RETENTION"},
		{name: "endpoint without scheme", env: map[string]string{"endpoint": "127.0.0.1:4100"}, wantErr: "EVORELAY_SQS_ENDPOINT"},
		{name: "endpoint ftp", env: map[string]string{"endpoint": "ftp://x"}, wantErr: "EVORELAY_SQS_ENDPOINT"},
		{name: "endpoint with credentials", env: map[string]string{"endpoint": "http://AKID:SECRET@127.0.0.1:4100"}, wantErr: "EVORELAY_SQS_ENDPOINT"},
		{name: "key without secret", env: map[string]string{"access_key_id": "AKID"}, wantErr: "EVORELAY_SQS_SECRET_ACCESS_KEY"},
		{name: "secret without key", env: map[string]string{"secret_access_key": "S"}, wantErr: "EVORELAY_SQS_ACCESS_KEY_ID"},
		{name: "token alone", env: map[string]string{"session_token": "T"}, wantErr: "EVORELAY_SQS_SESSION_TOKEN"},
		{name: "account id", env: map[string]string{"account_id": "12345"}, wantErr: "EVORELAY_SQS_ACCOUNT_ID"},
		{name: "queue url prefix", env: map[string]string{"queue_url_prefix": "sqs/123"}, wantErr: "EVORELAY_SQS_QUEUE_URL_PREFIX"},
		{name: "global not bool", env: map[string]string{"global": "yes please"}, wantErr: "EVORELAY_SQS_GLOBAL"},
		{name: "global without prefix", env: map[string]string{"global": "true"}, wantErr: "EVORELAY_SQS_GLOBAL_PREFIX"},
		{name: "global prefix too long", env: map[string]string{"global": "true", "global_prefix": strings.Repeat("p", 50)}, wantErr: "EVORELAY_SQS_GLOBAL_PREFIX"},
		{name: "global prefix charset", env: map[string]string{"global": "true", "global_prefix": "my.app"}, wantErr: "EVORELAY_SQS_GLOBAL_PREFIX"},
		{name: "global queue without global", env: map[string]string{"global_queue": "all"}, wantErr: "EVORELAY_SQS_GLOBAL_QUEUE"},
		{name: "global queue charset", env: map[string]string{"global": "true", "global_queue": "all events"}, wantErr: "EVORELAY_SQS_GLOBAL_QUEUE"},
		{name: "global queue gets .fifo", env: map[string]string{"global": "true", "global_queue": "all"}, check: func(t *testing.T, p process) {
			if p.naming.Single != "all.fifo" {
				t.Errorf("Single = %q, want all.fifo", p.naming.Single)
			}
		}},
		{name: "group by", env: map[string]string{"group_by": "contact"}, wantErr: "EVORELAY_SQS_GROUP_BY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseProcess(sdk.Config{Settings: tt.env})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want one naming %s", tt.wantErr)
			case tt.wantErr != "" && !strings.HasPrefix(err.Error(), tt.wantErr+":"):
				t.Fatalf("error %q does not name %s", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

func TestOpenRefusesBadSettings(t *testing.T) {
	sinktest.OpenFails(t, New(), map[string]string{"region": "us-east-1", "group_by": "nope"}, "EVORELAY_SQS_GROUP_BY")
}

func TestNotConfigured(t *testing.T) {
	s := New()
	if err := s.Open(context.Background(), sdk.Config{Settings: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	if h := s.Health(context.Background()); h.Ready || !strings.Contains(h.Detail, "EVORELAY_SQS_REGION") {
		t.Errorf("Health = %+v, want not ready naming EVORELAY_SQS_REGION", h)
	}
	_, err := s.Validate(context.Background(), "inst", json.RawMessage(`{"enabled":true,"events":[]}`))
	sinktest.FieldError(t, err, "enabled", "EVORELAY_SQS_REGION")
	// Disabled settings can still be stored.
	if _, err := s.Validate(context.Background(), "inst", json.RawMessage(`{"enabled":false,"events":[]}`)); err != nil {
		t.Errorf("Validate(disabled) = %v", err)
	}
	acks := sinktest.NewAcks()
	err = s.Deliver(context.Background(), []sdk.Delivery{{ID: "d1", Instance: "inst", Event: "CALL"}}, acks)
	if err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "EVORELAY_SQS_REGION") {
		t.Errorf("Deliver = %v, want a retryable error naming EVORELAY_SQS_REGION", err)
	}
}

func TestValidateSettings(t *testing.T) {
	s, _ := openSink(t, nil)
	sinktest.Validate(t, s, []sinktest.ValidateCase{
		{Name: "disabled", Instance: "inst", Settings: `{"enabled":false,"events":["CALL"]}`, Want: `{"enabled":false,"events":["CALL"]}`},
		{Name: "unknown field", Instance: "inst", Settings: `{"enabled":false,"queue":"x"}`, Fields: []string{"queue"}, Msg: "unknown field"},
		{Name: "enabled not bool", Instance: "inst", Settings: `{"enabled":"yes"}`, Fields: []string{"enabled"}, Msg: "true or false"},
		{Name: "not an object", Instance: "inst", Settings: `[]`, Fields: []string{"settings"}, Msg: "JSON object"},
		{Name: "instance too long for a queue name", Instance: strings.Repeat("i", 50),
			Settings: `{"enabled":true,"events":["GROUP_PARTICIPANTS_UPDATE"]}`, Fields: []string{"instance"}, Msg: "at most 80"},
		{Name: "instance charset", Instance: "loja centro",
			Settings: `{"enabled":true,"events":["CALL"]}`, Fields: []string{"instance"}, Msg: "A-Z, a-z, 0-9"},
		// Every event counts when none is listed: the longest decides.
		{Name: "fits for one event", Instance: strings.Repeat("j", 50),
			Settings: `{"enabled":true,"events":["CALL"]}`, Want: `{"enabled":true,"events":["CALL"]}`},
		{Name: "all events, longest too long", Instance: strings.Repeat("j", 50),
			Settings: `{"enabled":true,"events":[]}`, Fields: []string{"instance"}, Msg: "at most 80"},
	})
}

func TestChunks(t *testing.T) {
	sized := func(sizes ...int) []entry {
		es := make([]entry, len(sizes))
		for i, n := range sizes {
			es[i] = entry{delivery: string(rune('a' + i)), size: n}
		}
		return es
	}
	repeat := func(n, size int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = size
		}
		return out
	}
	const k = 1 << 10
	tests := []struct {
		name  string
		sizes []int
		want  []int // entries per chunk
	}{
		{"none", nil, nil},
		{"one", []int{10}, []int{1}},
		{"ten", repeat(10, 1), []int{10}},
		{"eleven", repeat(11, 1), []int{10, 1}},
		{"twenty-five", repeat(25, 1), []int{10, 10, 5}},
		{"by size", repeat(5, 100*k), []int{2, 2, 1}},
		{"exactly 256 KiB", []int{128 * k, 128 * k, 1}, []int{2, 1}},
		{"one at the limit", []int{1, 256 * k, 1}, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		var got []int
		for _, c := range chunks(sized(tt.sizes...)) {
			got = append(got, len(c))
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: chunks %v, want %v", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: chunks %v, want %v", tt.name, got, tt.want)
				break
			}
		}
	}
}
