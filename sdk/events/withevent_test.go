package events

import (
	"strings"
	"testing"
)

func TestWithEvent(t *testing.T) {
	tests := []struct {
		name string
		env  string
		to   string
		want string
		err  string
	}{
		{"first member", `{"event":"MESSAGES_UPSERT","instance":"i","data":{"b":1,"a":2}}`, "messages.upsert",
			`{"event":"messages.upsert","instance":"i","data":{"b":1,"a":2}}`, ""},
		{"unchanged is the same bytes", `{"event":"CALL","data":null}`, "CALL", `{"event":"CALL","data":null}`, ""},
		{"later member, spacing kept", "{ \"data\" : {\"event\":\"inner\"} ,\n \"event\" :  \"GROUP_UPDATE\" , \"x\":[1, 2] }", "groups.update",
			"{ \"data\" : {\"event\":\"inner\"} ,\n \"event\" :  \"groups.update\" , \"x\":[1, 2] }", ""},
		{"html characters kept", `{"event":"SEND_MESSAGE","data":{"url":"https://x/?a=1&b=<2>"}}`, "send.message",
			`{"event":"send.message","data":{"url":"https://x/?a=1&b=<2>"}}`, ""},
		{"escaped event takes the slow path", `{"event":"CA\u004cL","x":1}`, "CALL", `{"event":"CALL","x":1}`, ""},
		{"missing event is added first", `{"instance":"i"}`, "CALL", `{"event":"CALL","instance":"i"}`, ""},
		{"empty object", `{ }`, "CALL", `{"event":"CALL" }`, ""},
		{"not an object", `[1]`, "CALL", "", "not a JSON object"},
		{"broken", `{"event":`, "CALL", "", "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WithEvent([]byte(tt.env), tt.to)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("WithEvent(%s) error = %v, want one containing %q", tt.env, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("WithEvent(%s): %v", tt.env, err)
			}
			if string(got) != tt.want {
				t.Errorf("WithEvent(%s, %q)\n got %s\nwant %s", tt.env, tt.to, got, tt.want)
			}
		})
	}
}
