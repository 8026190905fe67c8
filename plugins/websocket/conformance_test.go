package main

import (
	"encoding/json"
	"testing"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// TestConformance runs the SDK's suite with a real websocket client on
// the socket as the destination: it connects before the deliveries and
// reports the ids it received (data.key.id carries each delivery id).
func TestConformance(t *testing.T) {
	sock := socketPath(t)
	var client *wsClient
	settings := json.RawMessage(`{"enabled":true,"events":[]}`)
	sinktest.Run(t, sinktest.Config{
		New:          func() sdk.Sink { return New() },
		Open:         map[string]string{"ping_interval": "30s"},
		ListenSocket: sock,
		Good: []json.RawMessage{
			json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT","GROUP_UPDATE"]}`),
			json.RawMessage(`{"enabled":false,"events":[]}`),
			settings,
		},
		Bad: map[string]json.RawMessage{
			"url":     json.RawMessage(`{"enabled":true,"events":[],"url":"ws://example.com"}`),
			"enabled": json.RawMessage(`{"enabled":"yes","events":[]}`),
		},
		Deliver: &sinktest.DeliverCase{
			Settings: settings,
			Before: func(t testing.TB) {
				conn, _, err := dialer(sock).Dial("ws://evorelay/ws/"+sinktest.DefaultInstance, nil)
				if err != nil {
					t.Fatalf("connect a client: %v", err)
				}
				client = &wsClient{reader: newReader[msg](conn)}
				go client.read(client.record)
				// No wait: a client is joined before its handshake
				// completes, so every later delivery reaches it.
				t.Cleanup(client.close)
			},
			Received: func(t testing.TB, want []string) []string {
				// The suite's two batches run concurrently: wait for each.
				for _, id := range want {
					client.waitFor(t, id)
				}
				var ids []string
				for _, m := range client.received() {
					id, err := sinktest.DeliveryID(m.raw)
					if err != nil || id != m.ID {
						t.Errorf("message %s: data.key.id %q, want the message's id (%v)", m.ID, id, err)
					}
					ids = append(ids, id)
				}
				return ids
			},
		},
		// Retry and Reject stay nil: websocket is live delivery. A delivery
		// is done once queued to the clients connected now (or when none
		// is), so there is no destination that can fail transiently or
		// refuse one; nothing is ever retried or dead-lettered but an
		// envelope that is not JSON (TestMalformedEnvelopeDeadLettered).
	})
}
