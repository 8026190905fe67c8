package sinktest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/evorelay/evorelay/sdk/events"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// BatchSize is how many deliveries the Deliver case sends, in two batches
// on one stream (the adapter runs them concurrently).
const BatchSize = 8

// DefaultEvents are the events the Deliver case sends when
// DeliverCase.Events is nil, in this order. They cover a hyphenated wire
// name (group-participants.update), an event whose wire name differs from
// its constant's spelling (GROUP_UPDATE is groups.update) and a media
// message with a base64 payload.
var DefaultEvents = []string{
	"MESSAGES_UPSERT",
	"MESSAGES_UPSERT", // with an image and its base64
	"SEND_MESSAGE",
	"MESSAGES_UPDATE",
	"CONNECTION_UPDATE",
	"GROUP_PARTICIPANTS_UPDATE",
	"GROUP_UPDATE",
	"TYPEBOT_CHANGE_STATUS",
}

// DefaultInstance is the instance of every delivery when Config.Instance
// is empty.
const DefaultInstance = "sinktest"

// Values the envelopes carry, so a destination test can compare them.
const (
	Sender    = "5511988880000@s.whatsapp.net"
	ServerURL = "https://engine.example.com"
	APIKey    = "sinktest-api-key"
)

// newRunTag returns a random tag that makes this run's delivery ids unique,
// so messages left in a shared broker by an earlier run are not counted.
func newRunTag() string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// deliveries builds n deliveries of the given events (cycled), with ids
// prefix-01, prefix-02, ….
func deliveries(prefix, instance string, evs []string, n int) []*sinkv1.Delivery {
	if len(evs) == 0 {
		evs = DefaultEvents
	}
	at := events.FormatTime(time.Now())
	out := make([]*sinkv1.Delivery, n)
	for i := range out {
		id := fmt.Sprintf("%s-%02d", prefix, i+1)
		ev := evs[i%len(evs)]
		env := events.Envelope{
			Event:     ev,
			Instance:  instance,
			Data:      eventData(ev, id, instance, i),
			DateTime:  at,
			Sender:    Sender,
			ServerURL: ServerURL,
			APIKey:    APIKey,
		}
		b := env.Append(nil)
		out[i] = &sinkv1.Delivery{
			Id:       id,
			Instance: instance,
			Event:    ev,
			Attempt:  1,
			Envelope: b,
		}
	}
	return out
}

// DeliveryID returns the id of the delivery whose envelope a destination
// received: the suite writes it into the event's data, at data.key.id. It
// is for DeliverCase.Received; an error means msg is not such an envelope.
func DeliveryID(msg []byte) (string, error) {
	var e struct {
		Data struct {
			Key struct {
				ID string `json:"id"`
			} `json:"key"`
		} `json:"data"`
	}
	if err := json.Unmarshal(msg, &e); err != nil {
		return "", fmt.Errorf("sinktest: not an envelope: %w", err)
	}
	if e.Data.Key.ID == "" {
		return "", fmt.Errorf("sinktest: no data.key.id in %.200s", msg)
	}
	return e.Data.Key.ID, nil
}

// eventData is a realistic data object for event, shaped as Evolution API
// sends it. Every one carries the delivery id at data.key.id.
func eventData(event, id, instance string, i int) json.RawMessage {
	const peer = "5511977776666@s.whatsapp.net"
	const group = "120363025246125486@g.us"
	key := map[string]any{"remoteJid": peer, "fromMe": false, "id": id}
	var d map[string]any
	switch event {
	case "MESSAGES_UPSERT":
		d = map[string]any{
			"key":              key,
			"pushName":         "Ana Souza",
			"message":          map[string]any{"conversation": "Olá! Is my order on its way? 🚚"},
			"messageType":      "conversation",
			"messageTimestamp": 1704110400 + i,
			"instanceId":       "6f1c2a4e-0d3b-4c55-9a8e-1b2c3d4e5f60",
			"source":           "android",
		}
		if i == 1 {
			d["message"] = map[string]any{
				"imageMessage": map[string]any{
					"mimetype":   "image/jpeg",
					"caption":    "receipt",
					"fileLength": "36864",
				},
				"base64": base64.StdEncoding.EncodeToString(media()),
			}
			d["messageType"] = "imageMessage"
		}
	case "SEND_MESSAGE":
		key["fromMe"] = true
		d = map[string]any{
			"key":              key,
			"message":          map[string]any{"extendedTextMessage": map[string]any{"text": "Yes, it left the warehouse today."}},
			"messageType":      "extendedTextMessage",
			"messageTimestamp": 1704110460 + i,
			"status":           "PENDING",
		}
	case "MESSAGES_UPDATE":
		key["fromMe"] = true
		d = map[string]any{
			"key":        key,
			"keyId":      id,
			"remoteJid":  peer,
			"fromMe":     true,
			"status":     "READ",
			"instanceId": "6f1c2a4e-0d3b-4c55-9a8e-1b2c3d4e5f60",
		}
	case "CONNECTION_UPDATE":
		d = map[string]any{"key": map[string]any{"id": id}, "instance": instance, "state": "open", "statusReason": 200}
	case "GROUP_PARTICIPANTS_UPDATE":
		d = map[string]any{"key": map[string]any{"id": id}, "id": group, "participants": []string{peer}, "action": "add"}
	case "GROUP_UPDATE":
		d = map[string]any{"key": map[string]any{"id": id}, "id": group, "subject": "Orders — São Paulo", "announce": false}
	case "TYPEBOT_CHANGE_STATUS":
		d = map[string]any{"key": map[string]any{"id": id}, "remoteJid": peer, "status": "paused", "url": "https://typebot.example.com", "typebot": "support"}
	default:
		d = map[string]any{"key": map[string]any{"id": id}, "instance": instance}
	}
	b, err := json.Marshal(d)
	if err != nil {
		panic(err)
	}
	return b
}

// media is 36 KiB of stand-in image bytes (48 KiB in base64).
func media() []byte {
	b := make([]byte, 36<<10)
	copy(b, []byte{0xff, 0xd8, 0xff, 0xe0})
	for i := 4; i < len(b); i++ {
		b[i] = byte(i * 31)
	}
	return b
}

// everyEvent are the settings of an instance enabled for every event, as
// the host passes them to a sink that takes no other settings.
func everyEvent() json.RawMessage { return json.RawMessage(`{"enabled":true,"events":[]}`) }

// SubscriptionGood is Config.Good for a sink whose instance settings are a
// bare sdk.Subscription: enabled for every event, for two, and disabled.
func SubscriptionGood() []json.RawMessage {
	return []json.RawMessage{
		everyEvent(),
		json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT","CONNECTION_UPDATE"]}`),
		json.RawMessage(`{"enabled":false,"events":[]}`),
	}
}

// SubscriptionBad is Config.Bad for a sink whose instance settings are a
// bare sdk.Subscription: enabled and events of the wrong type.
func SubscriptionBad() map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"enabled": json.RawMessage(`{"enabled":"yes","events":[]}`),
		"events":  json.RawMessage(`{"enabled":true,"events":"MESSAGES_UPSERT"}`),
	}
}
