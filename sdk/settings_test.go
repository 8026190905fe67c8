package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

type hookSettings struct {
	Subscription
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Retries int               `json:"retries"`
	ignored string
}

func TestParseSettings(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string // FieldErrors as text; "" for none
	}{
		{`{"enabled":true,"events":["MESSAGES_UPSERT"],"url":"https://x"}`, ""},
		{`{"enabled":true,"events":[],"url":"https://x","headers":{"A":"b"},"retries":3}`, ""},
		{`{"enabled":true,"events":[],"url":"https://x","exchnage":"x","retry":{}}`,
			"exchnage: unknown field; these settings take enabled, events, url, headers, retries; " +
				"retry: unknown field; these settings take enabled, events, url, headers, retries"},
		{`{"enabled":true,"URL":"https://x"}`, "URL: unknown field; these settings take enabled, events, url, headers, retries"},
		{`{"enabled":"yes"}`, "enabled: got a JSON string, want true or false"},
		{`{"events":"MESSAGES_UPSERT"}`, "events: got a JSON string, want a list, each a string"},
		{`{"retries":1.5}`, "retries: got a JSON number 1.5, want a whole number"},
		{`{"headers":{"A":1}}`, "headers: got a JSON number, want a string"},
		{`[1]`, `settings: must be a JSON object, e.g. {"enabled": true, "events": ["MESSAGES_UPSERT"]}`},
		{`null`, `settings: must be a JSON object, e.g. {"enabled": true, "events": ["MESSAGES_UPSERT"]}`},
	} {
		st, err := ParseSettings[hookSettings](json.RawMessage(tc.raw))
		var fe FieldErrors
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.raw, err)
		case tc.want == "" && st.URL != "https://x":
			t.Errorf("%s: decoded %+v", tc.raw, st)
		case tc.want != "" && !errors.As(err, &fe):
			t.Errorf("%s: %v, want FieldErrors", tc.raw, err)
		case tc.want != "" && fe.Error() != tc.want:
			t.Errorf("%s:\n got %s\nwant %s", tc.raw, fe.Error(), tc.want)
		}
	}
}

func TestSettingsOfIgnoresMembersItDoesNotOwnAndCaches(t *testing.T) {
	d := Delivery{Instance: "shop", Settings: json.RawMessage(`{"enabled":true,"events":[],"url":"https://a","retry":{"schedule":["1s"]},"rate_limit":5}`)}
	st, err := SettingsOf[hookSettings](d)
	if err != nil || st.URL != "https://a" || !st.Enabled {
		t.Fatalf("SettingsOf: %+v, %v", st, err)
	}
	d.Settings = json.RawMessage(`{"enabled":true,"events":[],"url":"https://b"}`)
	if st, err := SettingsOf[hookSettings](d); err != nil || st.URL != "https://b" {
		t.Errorf("after the settings changed: %+v, %v; want the new url", st, err)
	}
	if st, err := SettingsOf[Subscription](d); err != nil || !st.Enabled {
		t.Errorf("another type for the same instance: %+v, %v", st, err)
	}
	d.Settings = json.RawMessage(`{"url":1}`)
	if _, err := SettingsOf[hookSettings](d); err == nil || !IsPermanent(err) || err.Error() != "instance settings: url: got a JSON number, want a string" {
		t.Errorf("settings that do not fit: %v, want a permanent error naming url", err)
	}
}

func BenchmarkSettingsOf(b *testing.B) {
	d := Delivery{Instance: "shop", Settings: json.RawMessage(`{"enabled":true,"events":["MESSAGES_UPSERT"],"url":"https://example.com/hook","headers":{"Authorization":"Bearer x"}}`)}
	for i := 0; b.Loop(); i++ {
		if _, err := SettingsOf[hookSettings](d); err != nil {
			b.Fatal(fmt.Sprint(i), err)
		}
	}
}
