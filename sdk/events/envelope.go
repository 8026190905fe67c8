package events

import (
	"encoding/json"
	"time"
)

// TimeLayout is how date_time is written: real UTC with milliseconds and
// a Z, e.g. 2024-01-01T12:00:00.000Z.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// FormatTime writes t in TimeLayout, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// Envelope is an accepted event as the host hands it to every sink. Event
// is always the constant; a sink writes it per the naming mode. DateTime is
// the moment the sidecar accepted the event. ServerURL, Sender and APIKey
// are what the engine sent (ServerURL falls back to EVORELAY_SERVER_URL).
type Envelope struct {
	Event     string          `json:"event"`
	Instance  string          `json:"instance"`
	Data      json.RawMessage `json:"data"`
	DateTime  string          `json:"date_time"`
	Sender    string          `json:"sender"`
	ServerURL string          `json:"server_url"`
	APIKey    string          `json:"apikey"`
}
