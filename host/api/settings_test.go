package api

import (
	"github.com/evorelay/evorelay/host/store"

	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const seedBody = `{"url": "https://example.com/hook", "enabled": true,
 "events": ["MESSAGES_UPSERT", "CONNECTION_UPDATE"],
 "webhook_by_events": false, "webhook_base64": false}`

const seedStored = `{"enabled":true,"events":["MESSAGES_UPSERT","CONNECTION_UPDATE"],"url":"https://example.com/hook","webhook_by_events":false,"webhook_base64":false}`

func TestSetFlatThenFind(t *testing.T) {
	f := newFixture(t)
	expect(t, f.do("GET", "/webhook/find/inst1", ""), 200, "null\n")
	expect(t, f.do("POST", "/webhook/set/inst1", seedBody), 201, seedStored+"\n")
	expect(t, f.do("GET", "/webhook/find/inst1", ""), 200, seedStored+"\n")
	// Another sink, another instance: still unset.
	expect(t, f.do("GET", "/rabbitmq/find/inst1", ""), 200, "null\n")
	expect(t, f.do("GET", "/webhook/find/inst2", ""), 200, "null\n")

	calls := f.sinks.validated()
	if len(calls) != 1 || calls[0] != (validateCall{"webhook", "inst1", seedStored}) {
		t.Errorf("Validate calls = %+v", calls)
	}
	st, _ := f.settings.Get("webhook", "inst1")
	if !st.Enabled || !st.Wants("CONNECTION_UPDATE") || st.Wants("CALL") {
		t.Errorf("stored %+v", st)
	}
}

// Evolution API v2 clients wrap the settings in the sink's name and write
// camelCase; the plugin sees the fields as sent, enabled and events
// normalized.
func TestSetWrappedCamelCasePassesThrough(t *testing.T) {
	f := newFixture(t)
	body := `{"webhook": {"enabled": true, "url": "https://x.example/h", "byEvents": true, "base64": false,
		"webhookByEvents": true, "headers": {"Authorization": "Bearer t"}, "events": ["messages.upsert", "group-participants.update"]}}`
	want := `{"enabled":true,"events":["MESSAGES_UPSERT","GROUP_PARTICIPANTS_UPDATE"],"url":"https://x.example/h","byEvents":true,"base64":false,"webhookByEvents":true,"headers":{"Authorization": "Bearer t"}}`
	// The answer masks the header's credential (TestCredentialsMasked).
	answer := strings.Replace(want, `"Authorization": "Bearer t"`, `"Authorization":"********"`, 1)
	expect(t, f.do("POST", "/webhook/set/inst", body), 201, answer+"\n")
	if calls := f.sinks.validated(); len(calls) != 1 || calls[0].settings != want {
		t.Errorf("Validate got %+v\nwant %s", calls, want)
	}

	// Wrapped in another sink's name is not unwrapped: it is a field.
	f = newFixture(t)
	expect(t, f.do("POST", "/rabbitmq/set/inst", `{"webhook": {"enabled": true}}`), 201, `{"enabled":false,"events":[],"webhook":{"enabled": true}}`+"\n")
	// Beside other fields it is not unwrapped either.
	expect(t, f.do("POST", "/webhook/set/inst", `{"webhook": {"enabled": true}, "enabled": true}`), 201, `{"enabled":true,"events":[],"webhook":{"enabled": true}}`+"\n")
}

func TestSetEnabledAndEvents(t *testing.T) {
	cases := []struct {
		name, body, stored string
	}{
		{"enabled absent is false", `{"url":"u"}`, `{"enabled":false,"events":[],"url":"u"}`},
		{"enabled null is false", `{"enabled":null}`, `{"enabled":false,"events":[]}`},
		{"enabled with no events is all", `{"enabled":true}`, `{"enabled":true,"events":[]}`},
		{"events null is all", `{"enabled":true,"events":null}`, `{"enabled":true,"events":[]}`},
		{"empty events is all", `{"enabled":true,"events":[]}`, `{"enabled":true,"events":[]}`},
		{"both spellings, aliases, de-duplicated in order", `{"enabled":true,"events":["messages.upsert","MESSAGES_UPSERT","groups.update","GROUPS_UPDATE","GROUP_UPDATE","typebot.change-status","new.jwt","CALL","call"]}`,
			`{"enabled":true,"events":["MESSAGES_UPSERT","GROUP_UPDATE","TYPEBOT_CHANGE_STATUS","NEW_JWT_TOKEN","CALL"]}`},
		{"wrapped", `{"rabbitmq":{"enabled":false,"events":["send.message"]}}`, `{"enabled":false,"events":["SEND_MESSAGE"]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			expect(t, f.do("POST", "/rabbitmq/set/i", c.body), 201, c.stored+"\n")
			expect(t, f.do("GET", "/rabbitmq/find/i", ""), 200, c.stored+"\n")
		})
	}
}

func TestSetBadBodies(t *testing.T) {
	big := `{"url":"` + strings.Repeat("a", maxSettingsBytes) + `"}`
	cases := []struct {
		name, body string
		status     int
		messages   []string // exact; nil checks only the envelope
		contains   string
	}{
		{"unknown events, all named, sorted, once", `{"enabled":true,"events":["messages.upsert","FOO","bar.baz","FOO","GROUPS_UPSERTT"]}`, 400,
			[]string{`events: unknown event names "FOO", "GROUPS_UPSERTT", "bar.baz"; use constants such as MESSAGES_UPSERT or wire names such as messages.upsert`}, ""},
		{"enabled not a bool", `{"enabled":"yes"}`, 400, []string{`enabled: must be true or false, not "yes"`}, ""},
		{"enabled a number", `{"enabled":1}`, 400, []string{`enabled: must be true or false, not 1`}, ""},
		{"events a string", `{"events":"MESSAGES_UPSERT"}`, 400, []string{`events: must be a list of event names such as ["MESSAGES_UPSERT"], not "MESSAGES_UPSERT"`}, ""},
		{"event not a string", `{"events":["CALL",1,null]}`, 400, []string{`events[1]: must be an event name (a string), not 1`, `events[2]: must be an event name (a string), not null`}, ""},
		{"every problem at once", `{"enabled":"no","events":["NOPE"]}`, 400,
			[]string{`enabled: must be true or false, not "no"`, `events: unknown event names "NOPE"; use constants such as MESSAGES_UPSERT or wire names such as messages.upsert`}, ""},
		{"case variant of enabled", `{"enabled":true,"Enabled":false}`, 400, []string{`Enabled: field names are case-sensitive; write enabled`}, ""},
		{"case variant of events", `{"EVENTS":["X"]}`, 400, []string{`EVENTS: field names are case-sensitive; write events`}, ""},
		{"a field twice", `{"enabled":true,"enabled":false}`, 400, []string{`enabled: the field is given twice; send it once`}, ""},
		{"wrapped not an object", `{"rabbitmq":true}`, 400, []string{`rabbitmq: must be an object holding the settings, as in {"rabbitmq": {"enabled": true, "events": [...]}}`}, ""},
		{"invalid JSON", `{"enabled": tru}`, 400, []string{`the body is not valid JSON: invalid character '}' in literal true (expecting 'e') (at byte 16)`}, ""},
		{"truncated", `{"enabled": true`, 400, []string{`the body is not valid JSON: it ends before the value is complete`}, ""},
		{"empty", ``, 400, []string{`the body is empty; send a JSON object with the settings, such as {"enabled": true, "events": ["MESSAGES_UPSERT"]}`}, ""},
		{"an array", `[{"enabled":true}]`, 400, []string{`the body must be a JSON object with the settings, such as {"enabled": true, "events": ["MESSAGES_UPSERT"]}`}, ""},
		{"null", `null`, 400, []string{`the body must be a JSON object with the settings, such as {"enabled": true, "events": ["MESSAGES_UPSERT"]}`}, ""},
		{"two objects", `{} {}`, 400, []string{`the body is not valid JSON: invalid character '{' after top-level value (at byte 4)`}, ""},
		{"over 1 MiB", big, 413, []string{`the request body is over the limit of 1048576 bytes; settings are a few fields; send only the settings object`}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			res := f.do("POST", "/rabbitmq/set/i", c.body)
			expect(t, res, c.status, envelope(c.status, c.messages...))
			if n := len(f.sinks.validated()); n != 0 {
				t.Errorf("a bad body reached Validate")
			}
			expect(t, f.do("GET", "/rabbitmq/find/i", ""), 200, "null\n")
		})
	}
}

func TestSetInstanceNames(t *testing.T) {
	f := newFixture(t)
	for path, msg := range map[string]string{
		"/rabbitmq/set/%20x":                        `instance: " x" starts or ends with white space; remove it`,
		"/rabbitmq/set/x%07":                        `instance: "x\a" contains a control character; an instance name cannot`,
		"/rabbitmq/set/a%2Fb":                       ``, // decoded to a/b: no such route
		"/rabbitmq/set/" + strings.Repeat("a", 129): `instance: is 129 bytes long; an instance name has at most 128`,
		"/rabbitmq/set/%FF":                         `instance: is not valid UTF-8`,
		"/rabbitmq/find/%20x":                       `instance: " x" starts or ends with white space; remove it`,
	} {
		res := f.do(map[bool]string{true: "GET", false: "POST"}[strings.Contains(path, "/find/")], path, `{}`)
		if msg == "" {
			expectError(t, res, 404)
			continue
		}
		expect(t, res, 400, envelope(400, msg))
	}
	for _, name := range []string{"a", "Loja 01", "my-instance_2.prod", "ünïcödé", "5511999999999", strings.Repeat("a", 128)} {
		res := f.do("POST", "/rabbitmq/set/"+pathEscape(name), `{"enabled":true}`)
		if res.status != 201 {
			t.Errorf("instance %q: %d %s", name, res.status, res.body)
		}
	}
}

func pathEscape(s string) string { return strings.ReplaceAll(s, " ", "%20") }

func TestSetPluginAnswers(t *testing.T) {
	f := newFixture(t)
	f.sinks.validate = func(sink, _ string, _ json.RawMessage) (json.RawMessage, []FieldError, error) {
		return nil, []FieldError{{"url", "must be an http(s) URL, such as https://example.com/hook"}, {"", "give url or disable the sink"}}, nil
	}
	expect(t, f.do("POST", "/webhook/set/i", `{"url":"ftp://x"}`), 400,
		envelope(400, "url: must be an http(s) URL, such as https://example.com/hook", "give url or disable the sink"))

	f.sinks.validate = func(string, string, json.RawMessage) (json.RawMessage, []FieldError, error) {
		return json.RawMessage(`{"enabled":true,"events":[],"url":"https://x","webhook_by_events":false}`), nil, nil
	}
	expect(t, f.do("POST", "/webhook/set/i", `{"url":"https://x","enabled":true}`), 201, `{"enabled":true,"events":[],"url":"https://x","webhook_by_events":false}`+"\n")

	f.sinks.validate = func(string, string, json.RawMessage) (json.RawMessage, []FieldError, error) {
		return nil, nil, errors.New("plugin webhook is restarting")
	}
	res := f.do("POST", "/webhook/set/j", `{"enabled":true}`)
	expect(t, res, 503, envelope(503, "the webhook plugin could not validate the settings: plugin webhook is restarting; check GET /plugins and retry"))
	if res.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}

	f.sinks.validate = func(string, string, json.RawMessage) (json.RawMessage, []FieldError, error) {
		return json.RawMessage(`["not","an","object"]`), nil, nil
	}
	expect(t, f.do("POST", "/webhook/set/j", `{"enabled":true}`), 502, envelope(502, "the webhook plugin returned settings that are not a JSON object with enabled and events; this is a bug in the plugin, nothing was stored"))

	f.sinks.validate = nil
	f.settings.err = errors.New("redis: connection refused")
	res = f.do("POST", "/webhook/set/j", `{"enabled":true}`)
	expect(t, res, 503, envelope(503, "the settings could not be stored: redis: connection refused; retry later"))
	if res.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	f.settings.err = nil
	expect(t, f.do("GET", "/webhook/find/j", ""), 200, "null\n")
}

func TestSecretsMasked(t *testing.T) {
	f := newFixture(t)
	body := `{"pusher":{"enabled":true,"appId":"123","key":"k","secret":"shh","cluster":"mt1","useTLS":true}}`
	masked := `{"enabled":true,"events":[],"appId":"123","key":"k","secret":"********","cluster":"mt1","useTLS":true}`
	expect(t, f.do("POST", "/pusher/set/i", body), 201, masked+"\n")
	expect(t, f.do("GET", "/pusher/find/i", ""), 200, masked+"\n")
	if st, _ := f.settings.Get("pusher", "i"); !strings.Contains(string(st.Raw), `"secret":"shh"`) {
		t.Errorf("stored %s; the secret itself must be stored", st.Raw)
	}

	// What find answered can be posted back: the mask keeps the secret.
	expect(t, f.do("POST", "/pusher/set/i", strings.Replace(masked, `"cluster":"mt1"`, `"cluster":"us2"`, 1)), 201, strings.Replace(masked, "mt1", "us2", 1)+"\n")
	calls := f.sinks.validated()
	if last := calls[len(calls)-1].settings; !strings.Contains(last, `"secret":"shh"`) {
		t.Errorf("Validate got %s; want the stored secret back in place of the mask", last)
	}
	// A mask with no secret behind it is refused.
	expect(t, f.do("POST", "/pusher/set/other", `{"secret":"********"}`), 400,
		envelope(400, `secret: "********" is the mask find answers with, not a secret; send the secret itself`))

	// An empty secret is shown as it is.
	expect(t, f.do("POST", "/webhook/set/i", `{"url":"https://x","secret":""}`), 201, `{"enabled":false,"events":[],"url":"https://x","secret":""}`+"\n")
	// A sink without secret fields answers what is stored.
	expect(t, f.do("POST", "/rabbitmq/set/i", `{"secret":"visible"}`), 201, `{"enabled":false,"events":[],"secret":"visible"}`+"\n")
}

// Credentials outside the declared secret fields — a header that carries
// one, a URL's password and token-like query values — are masked by find
// like secrets, and what find answered can be posted back.
func TestCredentialsMasked(t *testing.T) {
	f := newFixture(t)
	body := `{"url":"https://user:pa55@x.example/h?token=abc&tenant=7&api_key=k1","headers":{"Authorization":"Bearer t","X-Tenant":"acme","X-Api-Key":"k2"}}`
	masked := `{"enabled":false,"events":[],"url":"https://user:********@x.example/h?token=********&tenant=7&api_key=********","headers":{"Authorization":"********","X-Tenant":"acme","X-Api-Key":"********"}}`
	expect(t, f.do("POST", "/webhook/set/i", body), 201, masked+"\n")
	expect(t, f.do("GET", "/webhook/find/i", ""), 200, masked+"\n")
	if st, _ := f.settings.Get("webhook", "i"); !strings.Contains(string(st.Raw), "pa55") || !strings.Contains(string(st.Raw), "Bearer t") {
		t.Errorf("stored %s; the credentials themselves must be stored", st.Raw)
	}

	// Posted back with one change: the stored credentials come back.
	expect(t, f.do("POST", "/webhook/set/i", strings.Replace(masked, `"enabled":false`, `"enabled":true`, 1)), 201,
		strings.Replace(masked, `"enabled":false`, `"enabled":true`, 1)+"\n")
	calls := f.sinks.validated()
	last := calls[len(calls)-1].settings
	for _, want := range []string{`https://user:pa55@x.example/h?token=abc&tenant=7&api_key=k1`, `"Authorization":"Bearer t"`, `"X-Api-Key":"k2"`} {
		if !strings.Contains(last, want) {
			t.Errorf("Validate got %s; want %s restored in place of the mask", last, want)
		}
	}

	// A mask with nothing stored behind it, or a changed masked URL, is refused.
	expect(t, f.do("POST", "/webhook/set/other", `{"headers":{"Authorization":"********"}}`), 400,
		envelope(400, `headers.Authorization: "********" is the mask find answers with, not a value; send the header's value itself`))
	expect(t, f.do("POST", "/webhook/set/i", `{"url":"https://user:********@y.example/h"}`), 400,
		envelope(400, `url: holds "********", the mask find answers with; send the URL with its credentials`))
}

// The parser on its own: what the plugin receives for each body.
func TestParseSettings(t *testing.T) {
	cases := []struct{ body, want string }{
		{`{}`, `{"enabled":false,"events":[]}`},
		{` { "a" : 1 , "b":[1, 2] } `, `{"enabled":false,"events":[],"a":1,"b":[1, 2]}`},
		{`{"webhook":{}}`, `{"enabled":false,"events":[]}`},
		{`{"webhook":{"webhook":{"enabled":true}}}`, `{"enabled":false,"events":[],"webhook":{"enabled":true}}`},
		{`{"k\u00e9y":"v","events":["CALL"],"enabled":true}`, `{"enabled":true,"events":["CALL"],"kéy":"v"}`},
	}
	for _, c := range cases {
		b, msgs := parseSettings("webhook", []byte(c.body))
		if len(msgs) > 0 {
			t.Errorf("%s: %v", c.body, msgs)
			continue
		}
		if got := string(b.json()); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.body, got, c.want)
		}
	}
}

// What find answers may be posted back: the members the host writes
// (disabled_*) and those Evolution API's own find adds never reach the
// plugin, which refuses members it does not own.
func TestSetDropsMembersThatAreNotThePlugins(t *testing.T) {
	f := newFixture(t)
	res := f.do("POST", "/rabbitmq/set/inst", `{"enabled":true,"disabled_reason":"gone","disabled_at":"2024-01-01T00:00:00Z",`+
		`"id":"clx1","instanceId":"i-1","createdAt":"2024-01-01T00:00:00Z","updatedAt":null,"exchange":"x"}`)
	expect(t, res, 201, `{"enabled":true,"events":[],"exchange":"x"}`+"\n")
	if calls := f.sinks.validated(); len(calls) != 1 || calls[0].settings != `{"enabled":true,"events":[],"exchange":"x"}` {
		t.Fatalf("the plugin was asked to validate %v; want only its own members", calls)
	}
}

// An instance's own retry policy is the host's: checked and normalized by
// the API, kept out of the plugin's settings, stored with them.
func TestSetRetryOverride(t *testing.T) {
	f := newFixture(t)
	res := f.do("POST", "/rabbitmq/set/inst", `{"enabled":true,"retry":{"schedule":["0s","90s","1h30m"],"max_age":"36h"}}`)
	expect(t, res, 201, `{"enabled":true,"events":[],"retry":{"schedule":["0s","1m30s","1h30m0s"],"max_age":"36h0m0s"}}`+"\n")
	if calls := f.sinks.validated(); len(calls) != 1 || calls[0].settings != `{"enabled":true,"events":[]}` {
		t.Fatalf("the plugin was asked to validate %v; want it not to see retry", calls)
	}
	// A later set without retry drops it.
	expect(t, f.do("POST", "/rabbitmq/set/inst", `{"enabled":true}`), 201, `{"enabled":true,"events":[]}`+"\n")

	for body, mentions := range map[string]string{
		`{"retry":{"schedule":[]}}`:       "retry.schedule",
		`{"retry":{"schedule":["soon"]}}`: "retry.schedule[0]",
		`{"retry":{"schedule":["-1s"]}}`:  "retry.schedule[0]",
		`{"retry":{"max_age":"x"}}`:       "retry.max_age",
		`{"retry":{"tries":3}}`:           "retry:",
		`{"retry":"fast"}`:                "retry:",
		`{"Retry":{"schedule":["0s"]}}`:   "case-sensitive",
	} {
		msgs := expectError(t, f.do("POST", "/rabbitmq/set/inst", body), 400)
		if !strings.Contains(strings.Join(msgs, " "), mentions) {
			t.Errorf("%s: %v does not mention %q", body, msgs, mentions)
		}
	}
}

// A sink whose plugin failed to start answers set and find with a 503 that
// says why; the other sinks are untouched.
func TestFailedSinkRoutes(t *testing.T) {
	f := newFixture(t)
	why := "the pusher plugin failed to start: launch: Unrecognized remote plugin message: hello; it is retried with backoff (see GET /plugins)"
	f.sinks.failed = map[string]string{"pusher": why}
	for _, res := range []response{
		f.do("POST", "/pusher/set/acme", `{"enabled":true}`),
		f.do("GET", "/pusher/find/acme", ""),
	} {
		expect(t, res, 503, envelope(503, why))
		if res.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	expect(t, f.do("POST", "/webhook/set/acme", `{"enabled":false}`), 201, `{"enabled":false,"events":[]}`+"\n")
}

// Every member the API parses as the host's is one the store keeps from
// the plugins, and every one the store keeps is parsed here or written by
// the store itself.
func TestHostMembersAreTheStoresHostOwned(t *testing.T) {
	for _, m := range hostMembers {
		if !contains(store.HostOwned, m.name) {
			t.Errorf("%s is parsed as the host's but missing from store.HostOwned: plugins would receive it", m.name)
		}
	}
	for _, name := range store.HostOwned {
		if _, ok := hostMemberNamed(name); !ok && name != store.DisabledReasonKey && name != store.DisabledAtKey {
			t.Errorf("store.HostOwned has %s, which the API does not parse", name)
		}
	}
}
