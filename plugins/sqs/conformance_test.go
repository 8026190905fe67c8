package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// refusedEndpoint is where the Retry case's sink sends: nothing listens
// on port 1, so every connection is refused. (A port freed at the start of
// the test could be taken by another process before the case ran: once,
// it answered 401, which Validate rightly reported as a refusal.)
const refusedEndpoint = "http://127.0.0.1:1"

// rejectRegion marks the sink the Reject case opens: its SendMessageBatch
// calls (signed for this region) get every entry refused with SenderFault,
// as SQS refuses a message for good. goaws never refuses an entry, so the
// refusal is injected around it; everything else reaches goaws.
const rejectRegion = "us-reject-1"

func TestConformance(t *testing.T) {
	rec := newRecorder()
	rec.alter = func(c call, req *http.Request, next http.RoundTripper) (*http.Response, error) {
		if c.Action != "SendMessageBatch" || !strings.Contains(req.Header.Get("Authorization"), "/"+rejectRegion+"/") {
			return nil, nil
		}
		var failed strings.Builder
		for _, e := range batchEntries(c) {
			fmt.Fprintf(&failed, "<BatchResultErrorEntry><Id>%s</Id><SenderFault>true</SenderFault><Code>InvalidMessageContents</Code><Message>refused by the test</Message></BatchResultErrorEntry>", e["Id"])
		}
		return xmlResponse(req, http.StatusOK, "<SendMessageBatchResponse><SendMessageBatchResult>"+failed.String()+"</SendMessageBatchResult></SendMessageBatchResponse>"), nil
	}
	failures := json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT","CONNECTION_UPDATE"]}`)

	sinktest.Run(t, sinktest.Config{
		New: func() sdk.Sink {
			s := New()
			s.httpClient = rec.client()
			return s
		},
		Open: processEnv(nil),
		Good: []json.RawMessage{
			json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT"]}`),
			json.RawMessage(`{"enabled":false,"events":[]}`),
		},
		Bad: map[string]json.RawMessage{
			"queue":   json.RawMessage(`{"enabled":true,"events":[],"queue":"mine"}`),
			"enabled": json.RawMessage(`{"enabled":"yes","events":[]}`),
		},
		Deliver: &sinktest.DeliverCase{
			Settings: json.RawMessage(`{"enabled":true,"events":[]}`),
			Received: func(t testing.TB, want []string) []string {
				var got []string
				var seen []string
				for _, ev := range sinktest.DefaultEvents {
					if slices.Contains(seen, ev) {
						continue
					}
					seen = append(seen, ev)
					for _, m := range receiveAll(t, sinktest.DefaultInstance+"_"+events.Snake(ev)+".fifo") {
						id, err := sinktest.DeliveryID([]byte(m.Body))
						if err != nil {
							t.Errorf("a message: %v", err)
						}
						got = append(got, id)
					}
				}
				return got
			},
		},
		Retry: &sinktest.Failure{
			Settings: failures,
			Open:     processEnv(map[string]string{"endpoint": refusedEndpoint}),
		},
		Reject: &sinktest.Failure{
			Settings: failures,
			Open:     processEnv(map[string]string{"region": rejectRegion}),
		},
	})
}
