package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

const goodSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        string
		allow     string   // EVORELAY_EGRESS_ALLOW
		deny      string   // EVORELAY_EGRESS_DENY
		want      string   // normalized, when it validates
		badFields []string // field errors, when it does not
	}{
		{
			name: "seed shape",
			in:   `{"url":"https://example.com/hook","enabled":true,"events":["MESSAGES_UPSERT","CONNECTION_UPDATE"],"webhook_by_events":true,"webhook_base64":false}`,
			want: `{"url":"https://example.com/hook","enabled":true,"events":["MESSAGES_UPSERT","CONNECTION_UPDATE"],"webhook_by_events":true,"webhook_base64":false,"headers":{}}`,
		},
		{
			name: "evolution v2 byEvents base64",
			in:   `{"url":"https://example.com/hook","enabled":true,"events":[],"byEvents":true,"base64":true,"headers":{"Authorization":"Bearer x"}}`,
			want: `{"url":"https://example.com/hook","enabled":true,"events":[],"webhook_by_events":true,"webhook_base64":true,"headers":{"Authorization":"Bearer x"}}`,
		},
		{
			name: "evolution v2 webhookByEvents webhookBase64",
			in:   `{"url":"https://example.com/hook","enabled":true,"events":[],"webhookByEvents":true,"webhookBase64":true}`,
			want: `{"url":"https://example.com/hook","enabled":true,"events":[],"webhook_by_events":true,"webhook_base64":true,"headers":{}}`,
		},
		{
			name: "two spellings that agree",
			in:   `{"url":"https://example.com/hook","enabled":true,"events":[],"byEvents":true,"webhook_by_events":true,"base64":null,"webhook_base64":true}`,
			want: `{"url":"https://example.com/hook","enabled":true,"events":[],"webhook_by_events":true,"webhook_base64":true,"headers":{}}`,
		},
		{
			name: "disabled without url",
			in:   `{"enabled":false,"events":[]}`,
			want: `{"url":"","enabled":false,"events":[],"webhook_by_events":false,"webhook_base64":false,"headers":{}}`,
		},
		{
			name:  "secret, spaces around url, loopback allowed by the setting",
			in:    `{"url":"  http://127.0.0.1:8080/x ","enabled":true,"events":[],"secret":"` + goodSecret + `"}`,
			allow: "127.0.0.0/8",
			want:  `{"url":"http://127.0.0.1:8080/x","enabled":true,"events":[],"webhook_by_events":false,"webhook_base64":false,"headers":{},"secret":"` + goodSecret + `"}`,
		},
		{
			name: "private address",
			in:   `{"url":"http://10.0.0.5/hook","enabled":true,"events":[]}`,
			want: `{"url":"http://10.0.0.5/hook","enabled":true,"events":[],"webhook_by_events":false,"webhook_base64":false,"headers":{}}`,
		},
		{
			name: "content-type application/json is what is sent anyway",
			in:   `{"url":"https://example.com/","enabled":true,"events":[],"headers":{"content-type":"application/json; charset=utf-8","X-A":"1"}}`,
			want: `{"url":"https://example.com/","enabled":true,"events":[],"webhook_by_events":false,"webhook_base64":false,"headers":{"X-A":"1"}}`,
		},
		{
			name:  "metadata allowed by the setting",
			in:    `{"url":"http://169.254.169.254/hook","enabled":true,"events":[]}`,
			allow: "169.254.169.254/32",
			want:  `{"url":"http://169.254.169.254/hook","enabled":true,"events":[],"webhook_by_events":false,"webhook_base64":false,"headers":{}}`,
		},
		{
			name:  "link-local allowed by the setting",
			in:    `{"url":"http://[fe80::1]:8080/","enabled":true,"events":[]}`,
			allow: "fe80::/10",
			want:  `{"url":"http://[fe80::1]:8080/","enabled":true,"events":[],"webhook_by_events":false,"webhook_base64":false,"headers":{}}`,
		},

		{name: "not an object", in: `[]`, badFields: []string{"settings"}},
		{name: "null", in: `null`, badFields: []string{"settings"}},
		{name: "empty field name", in: `{"":1,"url":"https://e.com","enabled":true,"events":[]}`, badFields: []string{"settings"}},
		{name: "not JSON", in: `{"url":`, badFields: []string{"settings"}},
		{name: "enabled without url", in: `{"enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "url not a string", in: `{"url":5,"enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "ftp", in: `{"url":"ftp://example.com/x","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "no scheme", in: `{"url":"example.com/hook","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "no host", in: `{"url":"https://","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "opaque", in: `{"url":"http:example.com","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "bad url disabled", in: `{"url":"::","enabled":false,"events":[]}`, badFields: []string{"url"}},
		{name: "metadata v4", in: `{"url":"http://169.254.169.254/latest/meta-data","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "link-local v4", in: `{"url":"http://169.254.10.1/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "link-local v6", in: `{"url":"http://[fe80::1]/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "link-local v6 zone", in: `{"url":"http://[fe80::1%25eth0]:80/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "metadata v6", in: `{"url":"http://[fd00:ec2::254]/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "metadata v4 in v6", in: `{"url":"http://[::ffff:169.254.169.254]/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "metadata alibaba", in: `{"url":"http://100.100.100.200/latest/meta-data","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "metadata azure", in: `{"url":"http://168.63.129.16/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "metadata NAT64", in: `{"url":"http://[64:ff9b::a9fe:a9fe]/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "loopback v4", in: `{"url":"http://127.0.0.1:8080/x","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "loopback by name", in: `{"url":"http://localhost:8080/x","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "loopback v6", in: `{"url":"http://[::1]/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "unspecified v4", in: `{"url":"http://0.0.0.0:8080/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "unspecified v6", in: `{"url":"http://[::]:8080/","enabled":true,"events":[]}`, badFields: []string{"url"}},
		{name: "denied by the setting", in: `{"url":"http://10.0.0.5/","enabled":true,"events":[]}`, deny: "10.0.0.0/8", badFields: []string{"url"}},
		{name: "public_only not a bool", in: `{"url":"https://e.com","enabled":true,"events":[],"public_only":1}`, badFields: []string{"public_only"}},
		{name: "secret without prefix", in: `{"url":"https://e.com","enabled":true,"events":[],"secret":"hunter2hunter2hunter2hunter2"}`, badFields: []string{"secret"}},
		{name: "secret not base64", in: `{"url":"https://e.com","enabled":true,"events":[],"secret":"whsec_not base64!"}`, badFields: []string{"secret"}},
		{name: "secret too short", in: `{"url":"https://e.com","enabled":true,"events":[],"secret":"whsec_` + base64.StdEncoding.EncodeToString(make([]byte, 16)) + `"}`, badFields: []string{"secret"}},
		{name: "secret too long", in: `{"url":"https://e.com","enabled":true,"events":[],"secret":"whsec_` + base64.StdEncoding.EncodeToString(make([]byte, 65)) + `"}`, badFields: []string{"secret"}},
		{name: "secret not a string", in: `{"url":"https://e.com","enabled":true,"events":[],"secret":42}`, badFields: []string{"secret"}},
		{name: "unknown field", in: `{"url":"https://e.com","enabled":true,"events":[],"webhook_base_64":true}`, badFields: []string{"webhook_base_64"}},
		{name: "flag not a bool", in: `{"url":"https://e.com","enabled":true,"events":[],"byEvents":"yes"}`, badFields: []string{"byEvents"}},
		{name: "two spellings that disagree", in: `{"url":"https://e.com","enabled":true,"events":[],"byEvents":true,"webhook_by_events":false}`, badFields: []string{"webhook_by_events"}},
		{name: "enabled not a bool", in: `{"url":"https://e.com","enabled":"on","events":[]}`, badFields: []string{"enabled"}},
		{name: "events not a list", in: `{"url":"https://e.com","enabled":true,"events":"MESSAGES_UPSERT"}`, badFields: []string{"events"}},
		{name: "headers not an object", in: `{"url":"https://e.com","enabled":true,"events":[],"headers":["a"]}`, badFields: []string{"headers"}},
		{name: "header value not a string", in: `{"url":"https://e.com","enabled":true,"events":[],"headers":{"X-N":1}}`, badFields: []string{"headers"}},
		{name: "header name", in: `{"url":"https://e.com","enabled":true,"events":[],"headers":{"Bad Name":"x"}}`, badFields: []string{"headers"}},
		{name: "header value line break", in: `{"url":"https://e.com","enabled":true,"events":[],"headers":{"X-A":"a\r\nInjected: 1"}}`, badFields: []string{"headers"}},
		{name: "header reserved", in: `{"url":"https://e.com","enabled":true,"events":[],"headers":{"Webhook-Signature":"v1,x"}}`, badFields: []string{"headers"}},
		{name: "header host", in: `{"url":"https://e.com","enabled":true,"events":[],"headers":{"Host":"other"}}`, badFields: []string{"headers"}},
		{name: "header content type", in: `{"url":"https://e.com","enabled":true,"events":[],"headers":{"Content-Type":"text/plain"}}`, badFields: []string{"headers"}},
		{name: "header twice", in: `{"url":"https://e.com","enabled":true,"events":[],"headers":{"X-A":"1","x-a":"2"}}`, badFields: []string{"headers"}},
		{name: "several at once", in: `{"url":"ftp://x","enabled":true,"events":[],"secret":"x","color":"red"}`, badFields: []string{"color", "secret", "url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			s.egress = policy(t, tc.allow, tc.deny)
			out, err := s.Validate(context.Background(), "shop-1", json.RawMessage(tc.in))
			if tc.badFields != nil {
				if got := fields(err); !reflect.DeepEqual(got, tc.badFields) {
					t.Fatalf("field errors %v (%v), want %v", got, err, tc.badFields)
				}
				var fe sdk.FieldErrors
				errors.As(err, &fe)
				for _, e := range fe {
					if e.Message == "" {
						t.Errorf("field %s: empty message", e.Field)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if string(out) != tc.want {
				t.Errorf("normalized\n %s\nwant\n %s", out, tc.want)
			}
			again, err := s.Validate(context.Background(), "shop-1", out)
			if err != nil || string(again) != string(out) {
				t.Errorf("validating the normalized settings again: %s, %v", again, err)
			}
		})
	}
}

// TestValidateMessages checks the messages say what to do, and never
// repeat a secret.
func TestValidateMessages(t *testing.T) {
	s := New()
	for _, tc := range []struct {
		in, want, never string
	}{
		{`{"secret":"whsec_c2hvcnQ="}`, `"whsec_" followed by the base64`, "c2hvcnQ="},
		{`{"secret":"whsec_c2hvcnQ="}`, "Standard Webhooks", ""},
		{`{"url":"http://169.254.169.254/"}`, "add 169.254.169.254/32 to EVORELAY_EGRESS_ALLOW", ""},
		{`{"url":"http://[64:ff9b::a9fe:a9fe]/"}`, "NAT64 form of 169.254.169.254, a cloud metadata address", ""},
		{`{"color":1}`, "webhook_base64", ""},
		{`{"enabled":true}`, "required when enabled", ""},
	} {
		_, err := s.Validate(context.Background(), "i", json.RawMessage(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%s): %v, want a message saying %q", tc.in, err, tc.want)
		}
		if tc.never != "" && err != nil && strings.Contains(err.Error(), tc.never) {
			t.Errorf("Validate(%s): %v repeats %q", tc.in, err, tc.never)
		}
	}
}

func TestDescribe(t *testing.T) {
	d := New().Describe()
	if d.Name != "webhook" || d.Version == "" || !reflect.DeepEqual(d.SecretFields, []string{"secret"}) {
		t.Errorf("Describe %+v", d)
	}
}

func TestProcessSettings(t *testing.T) {
	def := defaultProcessConfig()
	for _, tc := range []struct {
		in      map[string]string
		want    func(*processConfig)
		errWith string
	}{
		{in: nil, want: func(*processConfig) {}},
		{in: map[string]string{"timeout": "5s"}, want: func(c *processConfig) { c.timeout = 5 * time.Second }},
		{in: map[string]string{"timeout": "2.5"}, want: func(c *processConfig) { c.timeout = 2500 * time.Millisecond }},
		{in: map[string]string{"media_timeout": "1m"}, want: func(c *processConfig) { c.mediaTimeout = time.Minute }},
		{in: map[string]string{"media_max_bytes": "1048576"}, want: func(c *processConfig) { c.mediaMaxBytes = 1 << 20 }},
		{in: map[string]string{"media_max_bytes": "16MiB"}, want: func(c *processConfig) { c.mediaMaxBytes = 16 << 20 }},
		{in: map[string]string{"max_conns_per_host": "4"}, want: func(c *processConfig) { c.maxConnsPerHost = 4 }},
		{in: map[string]string{"timeout": "soon"}, errWith: "EVORELAY_WEBHOOK_TIMEOUT: "},
		{in: map[string]string{"timeout": "0s"}, errWith: "EVORELAY_WEBHOOK_TIMEOUT: "},
		{in: map[string]string{"timeout": "-3"}, errWith: "EVORELAY_WEBHOOK_TIMEOUT: "},
		{in: map[string]string{"timeout": "1e300"}, errWith: "EVORELAY_WEBHOOK_TIMEOUT: "},
		{in: map[string]string{"media_timeout": "x"}, errWith: "EVORELAY_WEBHOOK_MEDIA_TIMEOUT: "},
		{in: map[string]string{"media_max_bytes": "0"}, errWith: "EVORELAY_WEBHOOK_MEDIA_MAX_BYTES: "},
		{in: map[string]string{"media_max_bytes": "64MB"}, errWith: "EVORELAY_WEBHOOK_MEDIA_MAX_BYTES: "},
		{in: map[string]string{"max_conns_per_host": "0"}, errWith: "EVORELAY_WEBHOOK_MAX_CONNS_PER_HOST: "},
		{in: map[string]string{"max_conns_per_host": "many"}, errWith: "EVORELAY_WEBHOOK_MAX_CONNS_PER_HOST: "},
	} {
		got, err := parseProcessConfig(sdk.Config{Settings: tc.in})
		if tc.errWith != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.errWith) {
				t.Errorf("%v: error %v, want one starting %q", tc.in, err, tc.errWith)
			}
			sinktest.OpenFails(t, New(), tc.in, tc.errWith) // and Open refuses it the same way
			continue
		}
		want := def
		tc.want(&want)
		if err != nil || got != want {
			t.Errorf("%v: %+v, %v; want %+v", tc.in, got, err, want)
		}
	}
	var log strings.Builder
	in := map[string]string{"timout": "5s", "timeout": "5s", "allow_link_local": "true"}
	if _, err := parseProcessConfig(sdk.Config{Settings: in, Logger: hclog.New(&hclog.LoggerOptions{Output: &log})}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"unknown setting ignored: setting=EVORELAY_WEBHOOK_TIMOUT", "setting no longer read: setting=EVORELAY_WEBHOOK_ALLOW_LINK_LOCAL"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log %q, want %q", log.String(), want)
		}
	}
}

// TestValidateRefusesWithTheSettingToChange: a receiver on localhost, the
// cloud metadata services and their NAT64 form are refused at set, with a
// message that names the setting that would allow them; the policy is the
// one Open received.
func TestValidateRefusesWithTheSettingToChange(t *testing.T) {
	allow := func(cidr string) string { return "add " + cidr + " to EVORELAY_EGRESS_ALLOW" }
	const metadata = "cloud metadata address"
	s := openSinkWith(t, nil, events.NamingSeed, egress.Policy{})
	for raw, want := range map[string]string{
		"http://localhost:9000/hook":       allow("127.0.0.1/32"),
		"http://127.0.0.1:9000/hook":       allow("127.0.0.1/32"),
		"http://[::1]:9000/hook":           allow("::1/128"),
		"http://0.0.0.0:9000/hook":         allow("0.0.0.0/32"),
		"http://100.100.100.200/":          metadata,
		"http://168.63.129.16/":            metadata,
		"http://[64:ff9b::a9fe:a9fe]/x":    "NAT64 form of 169.254.169.254",
		"http://[fd00:ec2::254]/latest/x":  metadata,
		"http://169.254.169.254/latest/x/": metadata,
	} {
		in := json.RawMessage(`{"url":"` + raw + `","enabled":true,"events":[]}`)
		_, err := s.Validate(context.Background(), "i", in)
		if got := fields(err); !reflect.DeepEqual(got, []string{"url"}) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a url error saying %q", raw, err, want)
		}
	}
	in := json.RawMessage(`{"url":"http://localhost:9000/hook","enabled":true,"events":[]}`)
	if _, err := openSinkWith(t, nil, events.NamingSeed, policy(t, "127.0.0.1/32,::1", "")).Validate(context.Background(), "i", in); err != nil {
		t.Errorf("allowed by EVORELAY_EGRESS_ALLOW, still refused: %v", err)
	}
}

// TestValidateScopedKey: settings sent with an instance-scoped key may not
// name a private network (unless the operator allows it), and are stored
// public_only so deliveries dial under the same rule; the admin key may
// clear it.
func TestValidateScopedKey(t *testing.T) {
	scoped := sdk.WithScopedKey(context.Background())
	s := openSinkWith(t, nil, events.NamingSeed, egress.Policy{})
	for _, raw := range []string{"http://10.1.2.3/hook", "http://192.168.0.7/hook", "http://[fd12::1]/hook"} {
		_, err := s.Validate(scoped, "i", json.RawMessage(`{"url":"`+raw+`","enabled":true,"events":[]}`))
		if got := fields(err); !reflect.DeepEqual(got, []string{"url"}) || !strings.Contains(err.Error(), "instance-scoped") || !strings.Contains(err.Error(), "admin key") {
			t.Errorf("%s with a scoped key: %v, want a url error saying a scoped key may not", raw, err)
		}
		if _, err := s.Validate(context.Background(), "i", json.RawMessage(`{"url":"`+raw+`","enabled":true,"events":[]}`)); err != nil {
			t.Errorf("%s with the admin key: %v, want it accepted", raw, err)
		}
	}
	// a scoped key cannot clear public_only
	out, err := s.Validate(scoped, "i", json.RawMessage(`{"url":"https://example.com/hook","enabled":true,"events":[],"public_only":false}`))
	if err != nil || !strings.Contains(string(out), `"public_only":true`) {
		t.Errorf("scoped set: %s, %v; want public_only true", out, err)
	}
	// the operator's allow list opens a private network to scoped keys too
	allowed := openSinkWith(t, nil, events.NamingSeed, policy(t, "10.1.0.0/16", ""))
	if _, err := allowed.Validate(scoped, "i", json.RawMessage(`{"url":"http://10.1.2.3/hook","enabled":true,"events":[]}`)); err != nil {
		t.Errorf("scoped set to an allowed private network: %v", err)
	}
	// the admin may store public_only itself, or not
	out, err = s.Validate(context.Background(), "i", json.RawMessage(`{"url":"https://example.com/hook","enabled":true,"events":[],"public_only":true}`))
	if err != nil || !strings.Contains(string(out), `"public_only":true`) {
		t.Errorf("admin set public_only: %s, %v", out, err)
	}
}

// FuzzValidate: Validate never panics, answers field errors with a field
// and a message or a JSON object, and what it returns validates to itself.
func FuzzValidate(f *testing.F) {
	for _, seed := range []string{
		`{"url":"https://example.com/hook","enabled":true,"events":["MESSAGES_UPSERT"],"webhook_by_events":true,"webhook_base64":false}`,
		`{"url":"http://[fe80::1%25eth0]/","byEvents":true,"base64":null,"webhookBase64":true}`,
		`{"headers":{"X-A":"1","x-a":"2","Content-Type":"application/json"},"secret":"` + goodSecret + `"}`,
		`{"id":1,"url":" http://127.0.0.1:1 ","enabled":true}`,
		`[]`, `null`, `{}`, `{"url":"http://metadata./"}`,
	} {
		f.Add([]byte(seed))
	}
	s := New()
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := s.Validate(context.Background(), "i", in)
		if err != nil {
			var fe sdk.FieldErrors
			if !errors.As(err, &fe) || len(fe) == 0 {
				t.Fatalf("error %v is not field errors", err)
			}
			for _, e := range fe {
				if e.Field == "" || e.Message == "" {
					t.Fatalf("field error %+v lacks a field or a message", e)
				}
			}
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(out, &m) != nil || m == nil {
			t.Fatalf("normalized settings %q are not a JSON object", out)
		}
		again, err := s.Validate(context.Background(), "i", out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("validating %s again: %s, %v", out, again, err)
		}
	})
}
