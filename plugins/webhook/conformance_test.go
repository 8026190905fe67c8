package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// idReceiver is a real HTTP receiver for the conformance suite: / answers
// 204, /busy 503 with Retry-After, /refuse 400, /gone 410. It reports the
// webhook-id of every request it accepted.
type idReceiver struct {
	*httptest.Server
	mu  sync.Mutex
	ids []string
}

func newIDReceiver(t *testing.T) *idReceiver {
	rc := &idReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Event, Instance string
			Data            json.RawMessage
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Event == "" || body.Instance == "" {
			t.Errorf("receiver: body is not a webhook body: %v", err)
		}
		switch r.URL.Path {
		case "/busy":
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/refuse":
			http.Error(w, `{"error":"unknown tenant"}`, http.StatusBadRequest)
		case "/gone":
			w.WriteHeader(http.StatusGone)
		default:
			rc.mu.Lock()
			rc.ids = append(rc.ids, r.Header.Get("webhook-id"))
			rc.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *idReceiver) received(testing.TB, []string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.ids...)
}

func (rc *idReceiver) settings(path string, extra string) json.RawMessage {
	return json.RawMessage(`{"enabled":true,"events":[],"url":"` + rc.URL + path + `"` + extra + `}`)
}

func TestConformance(t *testing.T) {
	rc := newIDReceiver(t)
	// Nothing listens on port 1. (A port freed here could be taken by
	// another process before the Retry case runs.)
	const refusedURL = "http://127.0.0.1:1/hook"

	good := []json.RawMessage{
		json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT","CONNECTION_UPDATE"],"url":"https://example.com/hook","webhook_by_events":false,"webhook_base64":false}`),
		json.RawMessage(`{"enabled":true,"events":[],"url":"https://example.com/hook","byEvents":true,"base64":true,"headers":{"Authorization":"Bearer x"}}`),
		json.RawMessage(`{"enabled":true,"events":[],"url":"https://example.com/hook","webhookByEvents":false,"webhookBase64":true,"secret":"` + goodSecret + `"}`),
		json.RawMessage(`{"enabled":false,"events":["MESSAGES_UPSERT"]}`),
	}
	bad := map[string]json.RawMessage{
		"url":     json.RawMessage(`{"enabled":true,"events":[],"url":"http://169.254.169.254/latest"}`),
		"secret":  json.RawMessage(`{"enabled":true,"events":[],"url":"https://example.com","secret":"not-whsec"}`),
		"headers": json.RawMessage(`{"enabled":true,"events":[],"url":"https://example.com","headers":{"webhook-id":"x"}}`),
		"color":   json.RawMessage(`{"enabled":true,"events":[],"url":"https://example.com","color":"red"}`),
	}

	t.Run("seed", func(t *testing.T) {
		sinktest.Run(t, sinktest.Config{
			New:         func() sdk.Sink { return New() },
			EgressAllow: []string{"127.0.0.0/8"}, // the receiver's
			Good:        good,
			Bad:         bad,
			Deliver: &sinktest.DeliverCase{
				Settings: rc.settings("/", `,"webhook_base64":true,"secret":"`+goodSecret+`"`),
				Received: rc.received,
			},
			Retry:  &sinktest.Failure{Settings: rc.settings("/busy", "")},
			Reject: &sinktest.Failure{Settings: rc.settings("/refuse", "")},
		})
	})
	t.Run("evolution", func(t *testing.T) {
		sinktest.Run(t, sinktest.Config{
			New:         func() sdk.Sink { return New() },
			EgressAllow: []string{"127.0.0.0/8"}, // the receiver's
			Naming:      events.NamingEvolution,
			Good:        good,
			Bad:         bad,
			Deliver: &sinktest.DeliverCase{
				Settings: rc.settings("", `,"byEvents":true`),
				Received: rc.received,
			},
			// nothing listens there: connection refused
			Retry: &sinktest.Failure{Settings: json.RawMessage(`{"enabled":true,"events":[],"url":"` + refusedURL + `"}`)},
			// 410 also disables the instance's webhook
			Reject: &sinktest.Failure{Settings: rc.settings("/gone", ""), Disable: true},
		})
	})
}
