package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk"
)

// keysFixture is the API with a real settings store keeping the keys, dead
// letters and a websocket handler that records who reached it.
type keysFixture struct {
	*fixture
	dead *fakeDead
	ws   []string // identity header of each request the websocket handler got
}

func newKeysFixture(t *testing.T) *keysFixture {
	t.Helper()
	b, err := store.OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kf := &keysFixture{dead: &fakeDead{}}
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kf.ws = append(kf.ws, r.URL.Path+" "+r.Header.Get(sdk.IdentityHeader))
		w.WriteHeader(http.StatusOK)
	})
	kf.fixture = newFixture(t, func(o *Options) {
		o.Keys = st
		o.DeadLetters = kf.dead
		o.Websocket = ws
	})
	return kf
}

// create makes a key for instance with the admin key and returns it.
func (f *keysFixture) create(instance string) (id, key string) {
	f.t.Helper()
	res := f.do("POST", "/keys/"+instance, "")
	var got struct{ ID, Key, Instance string }
	if err := json.Unmarshal([]byte(res.body), &got); err != nil || res.status != http.StatusCreated || got.ID == "" || got.Key == "" || got.Instance != instance {
		f.t.Fatalf("POST /keys/%s: %d %s; want 201 {id, key, instance}", instance, res.status, res.body)
	}
	return got.ID, got.Key
}

// doQuery sends a request with key in the apikey query parameter only.
func (f *keysFixture) doQuery(method, path, key string) response {
	f.t.Helper()
	req := httptest.NewRequest(method, path+"?apikey="+key, nil)
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, string(b)}
}

// The admin key creates, lists and revokes an instance's keys; the key is
// answered once and never listed; an unknown id (or another instance's)
// is 404.
func TestKeysCreateListRevoke(t *testing.T) {
	f := newKeysFixture(t)
	id1, key1 := f.create("acme")
	id2, _ := f.create("acme")
	idOther, _ := f.create("other")
	if id1 == id2 || !strings.HasPrefix(key1, id1+".") || len(key1) < len(id1)+40 {
		t.Fatalf("ids %q %q, key %q: want distinct ids and a long random key", id1, id2, key1)
	}

	res := f.do("GET", "/keys/acme", "")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(res.body), &listed); err != nil || res.status != 200 || len(listed) != 2 {
		t.Fatalf("GET /keys/acme: %d %s; want 200 and two keys", res.status, res.body)
	}
	for i, want := range []string{id1, id2} {
		if listed[i]["id"] != want || listed[i]["created"] != "2024-01-02T06:04:05.678Z" || len(listed[i]) != 2 {
			t.Errorf("key %d listed as %v; want id %s and created only", i, listed[i], want)
		}
	}
	if strings.Contains(res.body, key1[len(id1)+1:]) {
		t.Errorf("the list shows the key: %s", res.body)
	}
	expect(t, f.do("GET", "/keys/nobody", ""), 200, "[]\n")

	expect(t, f.do("DELETE", "/keys/acme/"+idOther, ""), 404,
		envelope(404, `instance "acme" has no key "`+idOther+`"; GET /keys/acme lists its keys`))
	expect(t, f.do("DELETE", "/keys/acme/nope", ""), 404,
		envelope(404, `instance "acme" has no key "nope"; GET /keys/acme lists its keys`))
	expect(t, f.do("DELETE", "/keys/acme/"+id1, ""), 200, `{"id":"`+id1+`","instance":"acme","revoked":true}`+"\n")
	expect(t, f.do("GET", "/keys/acme", ""), 200, `[{"id":"`+id2+`","created":"2024-01-02T06:04:05.678Z"}]`+"\n")
}

// A scoped key acts on its own instance: set (told to the plugin as
// scoped), find, dead letters and its stream, in the header or, where the
// admin key may be, the query. Revoking it takes effect on the next
// request.
func TestScopedKeyActsOnItsInstance(t *testing.T) {
	f := newKeysFixture(t)
	id, key := f.create("acme")

	expect(t, f.doKey("POST", "/webhook/set/acme", `{"enabled":true,"url":"http://r.example"}`, key), 201,
		`{"enabled":true,"events":[],"url":"http://r.example"}`+"\n")
	expect(t, f.doKey("GET", "/webhook/find/acme", "", key), 200,
		`{"enabled":true,"events":[],"url":"http://r.example"}`+"\n")
	if res := f.doKey("GET", "/webhook/deadletters/acme", "", key); res.status != 200 {
		t.Errorf("dead letters: %d %s", res.status, res.body)
	}
	if res := f.doKey("POST", "/webhook/deadletters/acme/replay", `{"ids":["D1"]}`, key); res.status != 200 {
		t.Errorf("replay: %d %s", res.status, res.body)
	}
	if res := f.doKey("DELETE", "/webhook/deadletters/acme", `{"ids":["D1"]}`, key); res.status != 200 {
		t.Errorf("discard: %d %s", res.status, res.body)
	}
	if res := f.doQuery("GET", "/ws/acme", key); res.status != 200 {
		t.Errorf("/ws/acme with the key in the query: %d %s", res.status, res.body)
	}
	if res := f.doKey("GET", "/socket.io/", "", key); res.status != 200 {
		t.Errorf("/socket.io/: %d %s", res.status, res.body)
	}
	if got := strings.Join(f.ws, ","); got != "/ws/acme ,/socket.io/ instance=acme" {
		t.Errorf("the websocket handler got %q; want /ws/acme, then /socket.io/ with identity instance=acme", got)
	}
	if got := strings.Join(f.dead.calls, ","); got != `list webhook acme 51 "",replay webhook acme [D1],discard webhook acme [D1]` {
		t.Errorf("dead letters asked %q", got)
	}

	expect(t, f.do("DELETE", "/keys/acme/"+id, ""), 200, `{"id":"`+id+`","instance":"acme","revoked":true}`+"\n")
	for _, res := range []response{
		f.doKey("GET", "/webhook/find/acme", "", key),
		f.doKey("POST", "/webhook/set/acme", `{"enabled":true}`, key),
	} {
		expect(t, res, 401, envelope(401, invalidHeader))
	}
	expect(t, f.doQuery("GET", "/ws/acme", key), 401, envelope(401, invalidAny))
}

// set with a scoped key reaches the plugin's Validate marked scoped
// (sdk.ScopedKey), with the admin key not.
func TestScopedKeyMarksValidate(t *testing.T) {
	f := newKeysFixture(t)
	_, key := f.create("acme")
	var scoped []bool
	f.sinks.validateCtx = func(ctx context.Context) { scoped = append(scoped, sdk.ScopedKey(ctx)) }
	f.doKey("POST", "/webhook/set/acme", `{"enabled":true}`, key)
	f.do("POST", "/webhook/set/acme", `{"enabled":true}`)
	if len(scoped) != 2 || !scoped[0] || scoped[1] {
		t.Errorf("Validate saw scoped = %v; want [true false]", scoped)
	}
}

// Anything but its own instance's set, find, dead letters and stream is
// 403 for a scoped key, in the error envelope, before any lookup; an
// unknown key is 401.
func TestScopedKeyIsForbiddenElsewhere(t *testing.T) {
	f := newKeysFixture(t)
	_, key := f.create("acme")
	_, otherKey := f.create("other")
	f.do("POST", "/webhook/set/other", `{"enabled":true}`)
	other := `this key is scoped to instance "acme"; it may not act on instance "other"`
	elsewhere := `this key is scoped to instance "acme"; it may set, find, read dead letters of and stream only that instance; everything else needs the admin key (EVORELAY_API_KEY)`
	for _, c := range []struct {
		method, path, body, msg string
	}{
		{"POST", "/webhook/set/other", `{"enabled":false}`, other},
		{"GET", "/webhook/find/other", "", other},
		{"GET", "/webhook/deadletters/other", "", other},
		{"POST", "/webhook/deadletters/other/replay", "", other},
		{"DELETE", "/webhook/deadletters/other", `{"ids":["D1"]}`, other},
		{"GET", "/ws/other", "", other},
		{"GET", "/ws", "", elsewhere},
		{"POST", "/keys/acme", "", elsewhere},
		{"GET", "/keys/acme", "", elsewhere},
		{"DELETE", "/keys/other/x", "", elsewhere},
		{"GET", "/plugins", "", elsewhere},
		{"POST", "/events", `{"event":"CALL","instance":"acme"}`, elsewhere},
		{"POST", "/events/call", `{"event":"CALL","instance":"acme"}`, elsewhere},
		{"POST", "/webhook/evolution/acme", `{"event":"CALL"}`, elsewhere},
		{"POST", "/kafka/set/acme", `{"enabled":true}`, elsewhere},
	} {
		expect(t, f.doKey(c.method, c.path, c.body, key), 403, envelope(403, c.msg))
	}
	expect(t, f.doQuery("POST", "/webhook/evolution/acme", key), 403, envelope(403, elsewhere))
	if n := len(f.spool.appended()); n != 0 {
		t.Errorf("%d batches ingested with a scoped key", n)
	}
	if got := f.sinks.validated(); len(got) != 1 {
		t.Errorf("Validate called %d times; want once, for the admin's set", len(got))
	}
	if len(f.dead.calls) != 0 || len(f.ws) != 0 {
		t.Errorf("dead letters %v and websocket %v reached with another instance's key", f.dead.calls, f.ws)
	}
	if st, _ := f.settings.Get("webhook", "other"); !st.Enabled {
		t.Error("another instance's settings were changed")
	}
	// Its own instance's key still works.
	if res := f.doKey("GET", "/webhook/find/other", "", otherKey); res.status != 200 {
		t.Errorf("the other instance's own key: %d %s", res.status, res.body)
	}

	for _, k := range []string{"nope", "ID1.", "ID1.x", key + "x", strings.TrimSuffix(key, key[len(key)-1:])} {
		expect(t, f.doKey("GET", "/webhook/find/acme", "", k), 401, envelope(401, invalidHeader))
	}
}
