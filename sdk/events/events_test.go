package events

import (
	"encoding/json"
	"testing"
)

func TestLookupBothSpellings(t *testing.T) {
	cases := []struct{ in, want string }{
		{"MESSAGES_UPSERT", "MESSAGES_UPSERT"},
		{"messages.upsert", "MESSAGES_UPSERT"},
		{"group-participants.update", "GROUP_PARTICIPANTS_UPDATE"},
		{"GROUP_PARTICIPANTS_UPDATE", "GROUP_PARTICIPANTS_UPDATE"},
		{"typebot.change-status", "TYPEBOT_CHANGE_STATUS"},
		{"groups.update", "GROUP_UPDATE"},
		{"GROUPS_UPDATE", "GROUP_UPDATE"},
		{"new.jwt.token", "NEW_JWT_TOKEN"},
		{"call", "CALL"},
		{"send.message.update", "SEND_MESSAGE_UPDATE"},
	}
	for _, c := range cases {
		got, ok := Lookup(c.in)
		if !ok || got != c.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "messages_upsert", "MESSAGES.UPSERT", "nope"} {
		if got, ok := Lookup(bad); ok {
			t.Errorf("Lookup(%q) = %q; want unknown", bad, got)
		}
	}
}

func TestCatalogueRoundTrips(t *testing.T) {
	if n := len(All()); n != 32 {
		t.Fatalf("catalogue has %d events; want the seed's 21 + Evolution v2's 11", n)
	}
	for _, c := range All() {
		if got, _ := Lookup(Wire(c)); got != c {
			t.Errorf("Lookup(Wire(%s)) = %s", c, got)
		}
	}
}

func TestNormalizeUnknownEvents(t *testing.T) {
	cases := map[string]string{
		"messages.upsert":       "MESSAGES_UPSERT",
		"messaging-history.set": "MESSAGING_HISTORY_SET",
		"creds.update":          "CREDS_UPDATE",
		"":                      "",
		"bad name":              "",
		"<script>":              "",
	}
	for in, want := range cases {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestNamingModes(t *testing.T) {
	cases := []struct {
		constant                       string
		seedSuffix, evoName, evoSuffix string
	}{
		{"MESSAGES_UPSERT", "/messages_upsert", "messages.upsert", "/messages-upsert"},
		{"GROUP_PARTICIPANTS_UPDATE", "/group_participants_update", "group-participants.update", "/group-participants-update"},
		{"TYPEBOT_CHANGE_STATUS", "/typebot_change_status", "typebot.change-status", "/typebot-change-status"},
		{"GROUP_UPDATE", "/group_update", "groups.update", "/groups-update"},
	}
	for _, c := range cases {
		if got := NamingSeed.Name(c.constant); got != c.constant {
			t.Errorf("seed name %s = %s", c.constant, got)
		}
		if got := NamingSeed.Suffix(c.constant); got != c.seedSuffix {
			t.Errorf("seed suffix %s = %s; want %s", c.constant, got, c.seedSuffix)
		}
		if got := NamingEvolution.Name(c.constant); got != c.evoName {
			t.Errorf("evolution name %s = %s; want %s", c.constant, got, c.evoName)
		}
		if got := NamingEvolution.Suffix(c.constant); got != c.evoSuffix {
			t.Errorf("evolution suffix %s = %s; want %s", c.constant, got, c.evoSuffix)
		}
	}
}

func TestUnknownNamesThem(t *testing.T) {
	got := Unknown([]string{"MESSAGES_UPSERT", "zeta", "alpha", "messages.upsert"})
	if len(got) != 2 || got[0] != "alpha" || got[1] != "zeta" {
		t.Fatalf("Unknown = %v", got)
	}
}

func TestEnvelopeAppend(t *testing.T) {
	for _, tc := range []struct {
		env  Envelope
		want string
	}{
		{Envelope{Event: "APPLICATION_STARTUP", Instance: "shop", Data: json.RawMessage(`{"status":"started"}`), DateTime: "2024-01-01T12:00:00.000Z", ServerURL: "https://e.example.com"},
			`{"event":"APPLICATION_STARTUP","instance":"shop","data":{"status":"started"},"date_time":"2024-01-01T12:00:00.000Z","sender":null,"server_url":"https://e.example.com","apikey":null}`},
		{Envelope{Event: "MESSAGES_UPSERT", Instance: "a&b", Data: json.RawMessage(`{"t":"<b>"}`), Destination: "https://h.example.com/x?a=1&b=2", DateTime: "d", Sender: "s", ServerURL: "u", APIKey: "k"},
			`{"event":"MESSAGES_UPSERT","instance":"a&b","data":{"t":"<b>"},"destination":"https://h.example.com/x?a=1&b=2","date_time":"d","sender":"s","server_url":"u","apikey":"k"}`},
		{Envelope{Event: "CALL", Instance: "i"},
			`{"event":"CALL","instance":"i","data":null,"date_time":null,"sender":null,"server_url":null,"apikey":null}`},
	} {
		if got := string(tc.env.Append(nil)); got != tc.want {
			t.Errorf("Append:\n got %s\nwant %s", got, tc.want)
		}
	}
}

// Decoding an envelope and encoding it again gives the same bytes: null
// stays null, never "".
func TestEnvelopeRoundTrip(t *testing.T) {
	in := `{"event":"CALL","instance":"i","data":{"x":[1,2]},"date_time":"2024-01-01T12:00:00.000Z","sender":null,"server_url":"https://e.example.com","apikey":null}`
	var e Envelope
	if err := json.Unmarshal([]byte(in), &e); err != nil {
		t.Fatal(err)
	}
	if got := string(e.Append(nil)); got != in {
		t.Errorf("round trip:\n got %s\nwant %s", got, in)
	}
	if got, err := json.Marshal(e); err != nil || string(got) != in {
		t.Errorf("json.Marshal: %s, %v", got, err)
	}
	if _, err := json.Marshal(Envelope{Data: json.RawMessage(`{"x":`)}); err == nil {
		t.Error("json.Marshal of invalid data: no error")
	}
}
