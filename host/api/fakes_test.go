package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/host/store"
)

const testKey = "s3cret-key"

// fakeSinks stands in for the plugin host.
type fakeSinks struct {
	names   []string
	secrets map[string][]string
	// failed maps a sink to why its plugin failed to start.
	failed map[string]string
	// validate, when set, answers Validate; the default returns the
	// settings unchanged.
	validate func(sink, instance string, settings json.RawMessage) (json.RawMessage, []FieldError, error)
	// validateCtx, when set, is shown the context of each Validate.
	validateCtx func(ctx context.Context)

	mu    sync.Mutex
	calls []validateCall
}

type validateCall struct {
	sink, instance string
	settings       string
}

func (f *fakeSinks) Names() []string { return f.names }

func (f *fakeSinks) Validate(ctx context.Context, sink, instance string, settings json.RawMessage) (json.RawMessage, []FieldError, error) {
	if f.validateCtx != nil {
		f.validateCtx(ctx)
	}
	f.mu.Lock()
	f.calls = append(f.calls, validateCall{sink, instance, string(settings)})
	f.mu.Unlock()
	if f.validate != nil {
		return f.validate(sink, instance, settings)
	}
	return settings, nil, nil
}

func (f *fakeSinks) SecretFields(sink string) []string { return f.secrets[sink] }

func (f *fakeSinks) Unavailable(sink string) error {
	if why, ok := f.failed[sink]; ok {
		return errors.New(why)
	}
	return nil
}

func (f *fakeSinks) Plugins() any {
	return []map[string]any{{"name": "webhook", "version": "1.0.0", "state": "running", "restarts": 0}}
}

func (f *fakeSinks) validated() []validateCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]validateCall(nil), f.calls...)
}

// fakeSettings is an in-memory settings store.
type fakeSettings struct {
	mu  sync.Mutex
	m   map[string]store.Settings
	err error
}

func (f *fakeSettings) Get(sink, instance string) (store.Settings, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.m[sink+"/"+instance]
	return s, ok
}

func (f *fakeSettings) Set(_ context.Context, sink, instance string, raw json.RawMessage) (store.Settings, error) {
	if f.err != nil {
		return store.Settings{}, f.err
	}
	s, err := store.Parse(raw)
	if err != nil {
		return store.Settings{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]store.Settings{}
	}
	f.m[sink+"/"+instance] = s
	return s, nil
}

// fakeSpool records what was appended, or fails with err.
type fakeSpool struct {
	mu      sync.Mutex
	batches [][]spool.Event
	err     error
}

func (f *fakeSpool) Append(_ context.Context, evs []spool.Event) error {
	if f.err != nil {
		return f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, evs)
	return nil
}

func (f *fakeSpool) appended() [][]spool.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]spool.Event(nil), f.batches...)
}

// fixture is one API under test with its fakes.
type fixture struct {
	t        *testing.T
	h        http.Handler
	sinks    *fakeSinks
	settings *fakeSettings
	spool    *fakeSpool
}

var testNow = time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.FixedZone("BRT", -3*3600))

// newFixture builds the API with sinks webhook and pusher (secret "secret").
func newFixture(t *testing.T, edit ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{
		t: t,
		sinks: &fakeSinks{
			names:   []string{"webhook", "pusher", "rabbitmq"},
			secrets: map[string][]string{"pusher": {"secret"}, "webhook": {"secret"}},
		},
		settings: &fakeSettings{},
		spool:    &fakeSpool{},
	}
	var (
		idMu sync.Mutex
		n    int
	)
	o := Options{
		APIKey:    testKey,
		ServerURL: "http://sidecar.local",
		Sinks:     f.sinks,
		Settings:  f.settings,
		Spool:     f.spool,
		Now:       func() time.Time { return testNow },
		NewID: func() string {
			idMu.Lock()
			defer idMu.Unlock()
			n++
			return fmt.Sprintf("ID%d", n)
		},
	}
	for _, e := range edit {
		e(&o)
	}
	f.h = New(o)
	return f
}

// response is what a client observes.
type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request with the API key in the header.
func (f *fixture) do(method, path, body string) response {
	return f.doKey(method, path, body, testKey)
}

// doKey sends a request with key in the apikey header ("" for none).
func (f *fixture) doKey(method, path, body, key string) response {
	f.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if key != "" {
		req.Header.Set("apikey", key)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, string(b)}
}

// envelope is the exact error body for status and messages.
func envelope(status int, messages ...string) string {
	e := errorEnvelope{Status: status, Error: http.StatusText(status)}
	e.Response.Message = messages
	b, _ := json.Marshal(e)
	return string(b) + "\n"
}

// expect fails unless res has status and body exactly.
func expect(t *testing.T, res response, status int, body string) {
	t.Helper()
	if res.status != status || res.body != body {
		t.Errorf("got %d %s\nwant %d %s", res.status, res.body, status, body)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && res.status != http.StatusNoContent {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

// expectError fails unless res is the error envelope with status, whatever
// its messages, and returns the messages.
func expectError(t *testing.T, res response, status int) []string {
	t.Helper()
	var e struct {
		Status   *int    `json:"status"`
		Error    *string `json:"error"`
		Response *struct {
			Message []string `json:"message"`
		} `json:"response"`
	}
	dec := json.NewDecoder(strings.NewReader(res.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Status == nil || e.Error == nil || e.Response == nil {
		t.Fatalf("got %d %q; want the error envelope (%v)", res.status, res.body, err)
	}
	if res.status != status || *e.Status != status || *e.Error != http.StatusText(status) || len(e.Response.Message) == 0 {
		t.Fatalf("got %d %s; want the %d envelope with messages", res.status, res.body, status)
	}
	return e.Response.Message
}
