package events

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Cut and Raw.Append give the bytes Envelope.Append gives for the same
// members, whatever the strings and data hold.
func TestCutThenAppendIsAppend(t *testing.T) {
	for _, e := range []Envelope{
		{Event: "MESSAGES_UPSERT", Instance: "i", Data: json.RawMessage(`{"key":{"id":"A"}}`), DateTime: "2024-01-01T12:00:00.000Z"},
		{Event: "messages.upsert", Instance: `we"ird\name`, Data: json.RawMessage(`{"text":"a,\"date_time\":\"x\"","date_time":"inside"}`),
			DateTime: "2024-01-01T12:00:00.000Z", Sender: `,"date_time":`, ServerURL: "https://e.example/<a>", APIKey: "k\\"},
		{Event: "CONNECTION_UPDATE", Instance: "ünï", Data: nil},
		{Event: "SEND_MESSAGE", Instance: "i", Data: json.RawMessage(`"a string"`), APIKey: "\u2028"},
		{Event: "E", Instance: "i", Data: json.RawMessage(`{"destination":"inside data"}`)},
	} {
		r, ok := Cut(e.Append(nil))
		if !ok {
			t.Fatalf("Cut(%s): not cut", e.Append(nil))
		}
		if got, want := string(r.Data), string(appendData(nil, e.Data, "")); got != want {
			t.Errorf("Data = %s, want %s", got, want)
		}
		for _, dest := range []string{"", "https://hook.example/x?a=1&b=<2>", `quo"te`} {
			withDest := e
			withDest.Destination = dest
			if got, want := r.Append(nil, dest), withDest.Append(nil); !bytes.Equal(got, want) {
				t.Errorf("Raw.Append(%q)\n got %s\nwant %s", dest, got, want)
			}
		}
		r.Data = []byte(`{"replaced":true}`)
		e.Data = r.Data
		if got, want := r.Append(nil, ""), e.Append(nil); !bytes.Equal(got, want) {
			t.Errorf("with data replaced\n got %s\nwant %s", got, want)
		}
	}
}

// Envelopes of another shape are not cut: the caller decodes them.
func TestCutRefusesOtherShapes(t *testing.T) {
	for _, env := range []string{
		``,
		`{}`,
		`{"instance":"i","event":"E","data":{},"date_time":null,"sender":null,"server_url":null,"apikey":null}`,
		`{"event":"E","instance":"i","data":{},"destination":"d","date_time":null,"sender":null,"server_url":null,"apikey":null}`,
		`{"event":"E","instance":"i","data":{}}`,
		`{"event":"E","instance":"i","data":{},"date_time":null`,
		`{"event":"E,"instance":"i","data":{},"date_time":null}`,
		`{"event":E,"instance":"i","data":{},"date_time":null}`,
		`{"event":"E\"}`,
	} {
		if r, ok := Cut([]byte(env)); ok {
			t.Errorf("Cut(%s) = %+v, want not cut", env, r)
		}
	}
}

func FuzzCut(f *testing.F) {
	f.Add("MESSAGES_UPSERT", "i", `{"a":1}`, "2024-01-01T12:00:00.000Z", "", "", "", "https://x")
	f.Add("e", `in"st`, `[",\"date_time\":"]`, "", `s\`, "u", "k", "")
	f.Fuzz(func(t *testing.T, event, instance, data, dateTime, sender, serverURL, apikey, dest string) {
		if data != "" && !json.Valid([]byte(data)) {
			return
		}
		e := Envelope{Event: event, Instance: instance, Data: json.RawMessage(data), DateTime: dateTime, Sender: sender, ServerURL: serverURL, APIKey: apikey}
		env := e.Append(nil)
		r, ok := Cut(env)
		if !ok {
			if bytes.Contains(env, rawDest) {
				return // data holds what looks like a destination: decoded instead
			}
			t.Fatalf("Cut(%s): not cut", env)
		}
		e.Destination = dest
		if got, want := r.Append(nil, dest), e.Append(nil); !bytes.Equal(got, want) {
			t.Fatalf("Raw.Append\n got %s\nwant %s", got, want)
		}
	})
}
