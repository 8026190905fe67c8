package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	missingHeader = `missing API key; send it in the "apikey" header`
	missingAny    = `missing API key; send it in the "apikey" header or the apikey query parameter`
	invalidHeader = `invalid API key; send the key the sidecar is configured with (EVORELAY_API_KEY) in the "apikey" header`
	invalidAny    = `invalid API key; send the key the sidecar is configured with (EVORELAY_API_KEY) in the "apikey" header or the apikey query parameter`
)

// Every authenticated route answers 401 to a missing or wrong key before it
// looks anything up: an unknown sink, an unknown route or a wrong method
// with a bad key is 401, not 404 or 405, and says nothing of what exists.
func TestAuthRunsBeforeAnyLookup(t *testing.T) {
	cases := []struct {
		method, path, body string
		query              bool // the route also takes ?apikey=
	}{
		{"GET", "/plugins", "", false},
		{"POST", "/webhook/set/inst", `{"enabled":true}`, false},
		{"GET", "/webhook/find/inst", "", false},
		{"POST", "/kafka/set/inst", `{"enabled":true}`, true}, // unknown sink: the 404 handler
		{"GET", "/kafka/find/inst", "", true},
		{"GET", "/no/such/route", "", true},
		{"DELETE", "/webhook/set/inst", "", true}, // wrong method: the 405 handler
		{"OPTIONS", "/webhook/set/inst", "", true},
		{"POST", "/events", `{"event":"CALL","instance":"i"}`, true},
		{"POST", "/events/messages-upsert", `{"event":"CALL","instance":"i"}`, true},
		{"POST", "/webhook/evolution/inst", `{"event":"CALL"}`, true},
	}
	f := newFixture(t)
	for _, c := range cases {
		t.Run(c.method+c.path, func(t *testing.T) {
			missing, invalid := missingHeader, invalidHeader
			if c.query {
				missing, invalid = missingAny, invalidAny
			}
			for key, want := range map[string]string{"": missing, "wrong": invalid, testKey + "x": invalid, testKey[:3]: invalid} {
				res := f.doKey(c.method, c.path, c.body, key)
				expect(t, res, http.StatusUnauthorized, envelope(401, want))
				if a := res.header.Get("Allow"); a != "" {
					t.Errorf("key %q: Allow %q tells a stranger the route exists", key, a)
				}
			}
		})
	}
	if n := len(f.spool.appended()); n != 0 {
		t.Errorf("%d batches appended without a key", n)
	}
	if n := len(f.sinks.validated()); n != 0 {
		t.Errorf("%d settings validated without a key", n)
	}
}

func TestAPIKeyInQueryOnlyOnIngestRoutes(t *testing.T) {
	f := newFixture(t)
	q := "?apikey=" + testKey
	expect(t, f.doKey("POST", "/events"+q, `{"event":"CALL","instance":"i"}`, ""), 202, `{"accepted":1,"ids":["ID1"]}`+"\n")
	expect(t, f.doKey("POST", "/events/call"+q, `{"event":"CALL","instance":"i"}`, ""), 202, `{"accepted":1,"ids":["ID2"]}`+"\n")
	expect(t, f.doKey("POST", "/webhook/evolution/i"+q, `{"event":"CALL"}`, ""), 202, `{"accepted":1,"ids":["ID3"]}`+"\n")
	expect(t, f.doKey("POST", "/webhook/set/i"+q, `{}`, ""), 401, envelope(401, missingHeader))
	expect(t, f.doKey("GET", "/webhook/find/i"+q, ``, ""), 401, envelope(401, missingHeader))
	expect(t, f.doKey("GET", "/plugins"+q, ``, ""), 401, envelope(401, missingHeader))
	// A header, when sent, is the key that counts.
	expect(t, f.doKey("POST", "/events"+q, `{"event":"CALL","instance":"i"}`, "wrong"), 401, envelope(401, invalidAny))
}

func TestEmptyAPIKeyAuthenticatesNobody(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.APIKey = "" })
	expect(t, f.doKey("GET", "/plugins", "", ""), 401, envelope(401, missingHeader))
	expect(t, f.doKey("GET", "/plugins", "", "anything"), 401, envelope(401, invalidHeader))
	expect(t, f.doKey("GET", "/healthz", "", ""), 200, `{"status":"ok"}`+"\n")
}

func TestProbesNeedNoKey(t *testing.T) {
	details := map[string]any{"spool": "ok", "plugins": map[string]any{"webhook": "running"}}
	ready := true
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte("evorelay_up 1\n"))
	})
	f := newFixture(t, func(o *Options) {
		o.Metrics = metrics
		o.Ready = readyFunc(&ready, details)
	})
	expect(t, f.doKey("GET", "/healthz", "", ""), 200, `{"status":"ok"}`+"\n")
	expect(t, f.doKey("GET", "/readyz", "", ""), 200, `{"status":"ok","details":{"plugins":{"webhook":"running"},"spool":"ok"}}`+"\n")
	ready = false
	details["spool"] = "full"
	expect(t, f.doKey("GET", "/readyz", "", ""), 503, `{"status":"unavailable","details":{"plugins":{"webhook":"running"},"spool":"full"}}`+"\n")

	res := f.doKey("GET", "/metrics", "", "")
	if res.status != 200 || res.body != "evorelay_up 1\n" {
		t.Errorf("GET /metrics = %d %q; want the metrics handler's answer", res.status, res.body)
	}
	// A probe with the wrong method is told so without a key.
	res = f.doKey("POST", "/healthz", "", "")
	expect(t, res, 405, envelope(405, "POST is not allowed on /healthz; use GET"))
	if a := res.header.Get("Allow"); a != "GET" {
		t.Errorf("Allow = %q, want GET", a)
	}

	bare := newFixture(t)
	expect(t, bare.doKey("GET", "/readyz", "", ""), 200, `{"status":"ok","details":{}}`+"\n")
	expect(t, bare.doKey("GET", "/metrics", "", ""), 404, envelope(404, "metrics are not served by this sidecar"))
}

func readyFunc(ready *bool, details map[string]any) func(context.Context) (bool, map[string]any) {
	return func(context.Context) (bool, map[string]any) { return *ready, details }
}

func TestPlugins(t *testing.T) {
	f := newFixture(t)
	expect(t, f.do("GET", "/plugins", ""), 200, `[{"name":"webhook","restarts":0,"state":"running","version":"1.0.0"}]`+"\n")
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	f := newFixture(t)
	expect(t, f.do("POST", "/kafka/set/inst", `{}`), 404, envelope(404, `unknown sink "kafka"; the loaded sinks are: pusher, rabbitmq, webhook`))
	expect(t, f.do("GET", "/kafka/find/inst", ``), 404, envelope(404, `unknown sink "kafka"; the loaded sinks are: pusher, rabbitmq, webhook`))
	expect(t, f.do("GET", "/nothing/here", ``), 404, envelope(404, `no route for GET /nothing/here; the sidecar's README lists the routes`))
	expect(t, f.do("GET", "/", ``), 404, envelope(404, `no route for GET /; the sidecar's README lists the routes`))
	// No redirect to the route without the slash: the answer is the envelope.
	expect(t, f.do("GET", "/webhook/find/inst/", ``), 404, envelope(404, `no route for GET /webhook/find/inst/; the sidecar's README lists the routes`))
	expect(t, f.do("GET", "/webhook/evolution/", ``), 404, envelope(404, `no route for GET /webhook/evolution/; the sidecar's README lists the routes`))

	res := f.do("GET", "/webhook/set/inst", ``)
	expect(t, res, 405, envelope(405, `GET is not allowed on /webhook/set/inst; use POST`))
	if a := res.header.Get("Allow"); a != "POST" {
		t.Errorf("Allow = %q, want POST", a)
	}
	res = f.do("OPTIONS", "/webhook/find/inst", ``)
	expect(t, res, 405, envelope(405, `OPTIONS is not allowed on /webhook/find/inst; use GET`))
	expect(t, f.do("GET", "/events", ``), 405, envelope(405, `GET is not allowed on /events; use POST`))
}

func TestPanicIsAnEnvelope(t *testing.T) {
	logs := &strings.Builder{}
	f := newFixture(t, func(o *Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: logs})
	})
	f.sinks.validate = func(string, string, json.RawMessage) (json.RawMessage, []FieldError, error) {
		panic("boom")
	}
	expect(t, f.do("POST", "/webhook/set/inst", `{"enabled":true}`), 500, envelope(500, "internal error; the sidecar's log has the details"))
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("the panic is not in the log: %q", logs.String())
	}
}

func TestSinkNamesThatCannotBeRouted(t *testing.T) {
	logs := &strings.Builder{}
	f := newFixture(t, func(o *Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: logs})
	})
	f.sinks.names = []string{"webhook", "events", "plugins", "healthz", "readyz", "metrics", "ws", "Bad Name", "", "webhook"}
	// New must not panic on names that collide with its routes, or twice.
	f.h = New(Options{APIKey: testKey, Sinks: f.sinks, Settings: f.settings, Spool: f.spool,
		Logger: hclog.New(&hclog.LoggerOptions{Output: logs})})
	for _, n := range []string{`events`, `plugins`, `ws`, `"Bad Name"`} {
		if !strings.Contains(logs.String(), "sink="+n) {
			t.Errorf("no error logged for sink %s: %s", n, logs.String())
		}
	}
	// The webhook sink's routes live beside /webhook/evolution/{instance}.
	if res := f.do("POST", "/webhook/set/evolution", `{"enabled":true}`); res.status != 201 {
		t.Errorf("set webhook for instance evolution: %d %s", res.status, res.body)
	}
	if res := f.do("POST", "/webhook/evolution/inst", `{"event":"CALL"}`); res.status != 202 {
		t.Errorf("ingest beside the webhook sink: %d %s", res.status, res.body)
	}
	expect(t, f.do("GET", "/plugins/find/inst", ``), 404, envelope(404, `unknown sink "plugins"; the loaded sinks are: webhook`))
	expect(t, f.do("GET", "/plugins", ``), 200, `[{"name":"webhook","restarts":0,"state":"running","version":"1.0.0"}]`+"\n")
}

func TestWebsocketRoutes(t *testing.T) {
	var got []string
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path)
		w.WriteHeader(http.StatusSwitchingProtocols)
	})
	f := newFixture(t, func(o *Options) { o.Websocket = ws })
	expect(t, f.doKey("GET", "/ws", "", ""), 401, envelope(401, missingAny))
	expect(t, f.doKey("GET", "/ws/inst?apikey=nope", "", ""), 401, envelope(401, invalidAny))
	if res := f.doKey("GET", "/ws?apikey="+testKey, "", ""); res.status != 101 {
		t.Errorf("GET /ws with the key: %d", res.status)
	}
	if res := f.do("GET", "/ws/inst", ""); res.status != 101 {
		t.Errorf("GET /ws/inst with the key: %d", res.status)
	}
	if strings.Join(got, " ") != "/ws /ws/inst" {
		t.Errorf("websocket handler saw %q", got)
	}

	none := newFixture(t)
	expect(t, none.do("GET", "/ws", ""), 404, envelope(404, `no route for GET /ws; the sidecar's README lists the routes`))
}

// The statusWriter must not hide the connection from a websocket upgrade.
func TestStatusWriterKeepsHijacker(t *testing.T) {
	hijacked := false
	srv := httptest.NewServer(New(Options{
		APIKey: testKey, Sinks: &fakeSinks{}, Settings: &fakeSettings{}, Spool: &fakeSpool{},
		Websocket: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			hijacked = true
			_, _ = c.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
			_ = c.Close()
		}),
	}))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/ws?apikey=" + testKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if !hijacked || res.StatusCode != 204 {
		t.Errorf("hijacked=%v status=%d", hijacked, res.StatusCode)
	}
}

func TestMetricsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, func(o *Options) { o.Registerer = reg })
	body := `[{"event":"CALL","instance":"i"},{"event":"CALL","instance":"i"}]`
	f.do("POST", "/events", body)
	f.do("POST", "/events", `{}`)
	f.doKey("GET", "/webhook/find/i", "", "")
	f.do("GET", "/webhook/find/i", "")

	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += " " + l.GetName() + "=" + l.GetValue()
			}
			got[name] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"evorelay_api_events_accepted_total":                               2,
		"evorelay_api_ingest_bytes_total":                                  float64(len(body) + 2),
		"evorelay_api_requests_total code=202 route=/events":               1,
		"evorelay_api_requests_total code=400 route=/events":               1,
		"evorelay_api_requests_total code=401 route=/:sink/find/:instance": 1,
		"evorelay_api_requests_total code=200 route=/:sink/find/:instance": 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	// A second handler on the same registry shares the metrics.
	newFixture(t, func(o *Options) { o.Registerer = reg })
}

// TestAcceptedWritesWhatJSONWould: the 202 put together by hand is
// byte for byte what writeJSON writes, whatever the ids.
func TestAcceptedWritesWhatJSONWould(t *testing.T) {
	for _, ids := range [][]string{
		{},
		{"01JEXAMPLE0000000000000000"},
		{"a", "B-1_2.3~"},
		{`quote"`, `back\slash`, "tab\t", "é", "\u2028", "<&>"},
	} {
		a := accepted{Accepted: len(ids), IDs: ids}
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		a.write(got)
		writeJSON(want, http.StatusAccepted, a)
		if got.Code != want.Code || got.Body.String() != want.Body.String() || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
			t.Errorf("ids %q: wrote %d %q %q, writeJSON %d %q %q", ids, got.Code, got.Header().Get("Content-Type"), got.Body, want.Code, want.Header().Get("Content-Type"), want.Body)
		}
	}
}
