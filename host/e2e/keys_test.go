package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestInstanceKeysThroughHost: the admin key creates a key scoped to one
// instance; with it a client sets and finds that instance's webhook (a
// private-network URL the admin may set is refused to it: the stricter
// egress policy), is refused (403, in the envelope) another instance and
// ingest, and once the admin revokes it, is unknown (401).
func TestInstanceKeysThroughHost(t *testing.T) {
	s := StartSidecar(t, []string{"webhook"})
	var created struct{ ID, Key string }
	if err := json.Unmarshal(s.MustDo(201, "POST", "/keys/keyed", nil), &created); err != nil || created.ID == "" || created.Key == "" {
		t.Fatalf("POST /keys/keyed: %v %+v", err, created)
	}
	if b := s.MustDo(200, "GET", "/keys/keyed", nil); !strings.Contains(string(b), `"id":"`+created.ID+`"`) || strings.Contains(string(b), created.Key) {
		t.Errorf("GET /keys/keyed = %s; want the id listed, never the key", b)
	}

	settings := map[string]any{"url": "http://203.0.113.7/hook", "enabled": true}
	if code, b := s.DoKey("POST", "/webhook/set/keyed", settings, created.Key); code != 201 || !strings.Contains(string(b), `"url":"http://203.0.113.7/hook"`) {
		t.Errorf("set with the scoped key = %d %s; want 201", code, b)
	}
	if code, b := s.DoKey("GET", "/webhook/find/keyed", nil, created.Key); code != 200 || !strings.Contains(string(b), `"url":"http://203.0.113.7/hook"`) {
		t.Errorf("find with the scoped key = %d %s; want 200 and the settings", code, b)
	}
	private := map[string]any{"url": "http://10.0.0.5:5678/webhook", "enabled": true}
	if code, b := s.DoKey("POST", "/webhook/set/keyed", private, created.Key); code != 400 || decode(t, b)["status"] != float64(400) {
		t.Errorf("set of a private-network URL with the scoped key = %d %s; want 400", code, b)
	}
	setWebhook(t, s, "keyed-admin", private)

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/webhook/set/someone-else", settings},
		{"GET", "/webhook/find/someone-else", nil},
		{"POST", "/webhook/evolution/keyed", event("keyed", "CALL", `{}`)},
		{"POST", "/events", event("keyed", "CALL", `{}`)},
		{"GET", "/keys/keyed", nil},
	} {
		code, b := s.DoKey(c.method, c.path, c.body, created.Key)
		env := decode(t, b)
		if code != 403 || env["status"] != float64(403) || env["error"] != "Forbidden" || !strings.Contains(string(b), `scoped to instance \"keyed\"`) {
			t.Errorf("%s %s with the scoped key = %d %s; want 403 in the envelope", c.method, c.path, code, b)
		}
	}

	s.MustDo(200, "DELETE", "/keys/keyed/"+created.ID, nil)
	if code, b := s.DoKey("GET", "/webhook/find/keyed", nil, created.Key); code != 401 {
		t.Errorf("find with the revoked key = %d %s; want 401", code, b)
	}
	if code, b := s.Do("DELETE", "/keys/keyed/"+created.ID, nil); code != 404 {
		t.Errorf("revoking it again = %d %s; want 404", code, b)
	}
}
