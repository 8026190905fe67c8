package main

import (
	"encoding/json"
	"testing"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

func TestConformance(t *testing.T) {
	r := newReceiver(t)
	r.addApp("1001", "app-key", "app-secret")
	r.addApp("1002", "busy-key", "busy-secret")
	r.force("1002", forced{code: 503, retryAfter: "2"})

	sinktest.Run(t, sinktest.Config{
		New:  func() sdk.Sink { return New() },
		Open: map[string]string{"host": r.host()},
		Good: []json.RawMessage{
			json.RawMessage(appSettings("1001", "app-key", "app-secret")),
			json.RawMessage(`{"enabled":false,"events":[],"appId":"","key":"","secret":"","cluster":"","useTLS":true}`),
		},
		Bad: map[string]json.RawMessage{
			"secret":  json.RawMessage(`{"enabled":true,"events":[],"appId":"1","key":"k","cluster":"mt1"}`),
			"cluster": json.RawMessage(`{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"a b"}`),
			"useTLS":  json.RawMessage(`{"enabled":true,"events":[],"appId":"1","key":"k","secret":"s","cluster":"mt1","useTLS":"no"}`),
		},
		Deliver: &sinktest.DeliverCase{
			Settings: json.RawMessage(appSettings("1001", "app-key", "app-secret")),
			Received: func(t testing.TB, want []string) []string {
				got, _ := r.received()
				var ids []string
				for _, e := range got {
					id, err := sinktest.DeliveryID([]byte(e.Data))
					if err != nil {
						t.Errorf("event data: %v", err)
					}
					if e.Channel != sinktest.DefaultInstance {
						t.Errorf("event on channel %q, want %q", e.Channel, sinktest.DefaultInstance)
					}
					ids = append(ids, id)
				}
				return ids
			},
		},
		// Pusher answers 503 (with Retry-After) for app 1002.
		Retry: &sinktest.Failure{Settings: json.RawMessage(appSettings("1002", "busy-key", "busy-secret"))},
		// A wrong secret: Pusher answers 401.
		Reject: &sinktest.Failure{Settings: json.RawMessage(appSettings("1001", "app-key", "not-the-secret"))},
	})
}
