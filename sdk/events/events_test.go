package events

import "testing"

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
