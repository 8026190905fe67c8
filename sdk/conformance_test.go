package sdk_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// TestExampleConformance runs the suite against the example's sink with
// an HTTP receiver as its destination, as a plugin's own test does.
func TestExampleConformance(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/busy":
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/gone":
			w.WriteHeader(http.StatusGone)
		default:
			mu.Lock()
			got = append(got, r.Header.Get("Webhook-Id"))
			mu.Unlock()
		}
	}))
	defer srv.Close()
	settings := func(path string) json.RawMessage {
		return json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT"],"url":"` + srv.URL + path + `"}`)
	}
	sinktest.Run(t, sinktest.Config{
		New:  func() sdk.Sink { return &postSink{} },
		Open: map[string]string{"timeout": "5s"},
		Good: []json.RawMessage{settings("/hook")},
		Bad:  map[string]json.RawMessage{"url": json.RawMessage(`{"enabled":true,"events":[],"url":"ftp://x"}`)},
		Deliver: &sinktest.DeliverCase{
			Settings: settings("/hook"),
			Received: func(testing.TB, []string) []string {
				mu.Lock()
				defer mu.Unlock()
				return append([]string(nil), got...)
			},
		},
		Retry:  &sinktest.Failure{Settings: settings("/busy")},
		Reject: &sinktest.Failure{Settings: settings("/gone"), Disable: true},
	})
}
