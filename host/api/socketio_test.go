package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/evorelay/evorelay/sdk"
)

// The plugin learns who a Socket.IO client is only from the host: the
// identity header is the host's, never the client's.
func TestSocketIORoutesPassTheIdentity(t *testing.T) {
	type seen struct{ method, identity string }
	var got []seen
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, seen{r.Method, r.Header.Get(sdk.IdentityHeader)})
		w.WriteHeader(http.StatusOK)
	})
	f := newFixture(t, func(o *Options) { o.Websocket = ws })
	send := func(method, path, key, spoof string) int {
		req := httptest.NewRequest(method, path, nil)
		if key != "" {
			req.Header.Set("apikey", key)
		}
		if spoof != "" {
			req.Header.Set(sdk.IdentityHeader, spoof)
		}
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		return w.Code
	}
	for _, c := range []struct {
		name, method, path, key string
		status                  int
		want                    *seen
	}{
		{"no key: proxied without identity (the auth payload may carry one)", "GET", "/socket.io/?EIO=4&transport=polling", "", 200, &seen{"GET", ""}},
		{"the key in the header", "GET", "/socket.io/?EIO=4&transport=websocket", testKey, 200, &seen{"GET", "admin"}},
		{"the key in the query", "POST", "/socket.io/?EIO=4&transport=polling&sid=x&apikey=" + testKey, "", 200, &seen{"POST", "admin"}},
		{"a wrong key is refused here", "GET", "/socket.io/?EIO=4&transport=polling&apikey=nope", "", 401, nil},
		{"a CORS preflight", "OPTIONS", "/socket.io/?EIO=4&transport=polling", "", 200, &seen{"OPTIONS", ""}},
	} {
		got = nil
		if status := send(c.method, c.path, c.key, "admin"); status != c.status {
			t.Errorf("%s: %d, want %d", c.name, status, c.status)
		}
		switch {
		case c.want == nil && len(got) != 0:
			t.Errorf("%s: the plugin saw %v; want nothing", c.name, got)
		case c.want != nil && (len(got) != 1 || got[0] != *c.want):
			t.Errorf("%s: the plugin saw %v; want %v (a client's own %s header is dropped)", c.name, got, *c.want, sdk.IdentityHeader)
		}
	}
	got = nil
	if status := send("GET", "/ws/inst", testKey, "instance=other"); status != 200 || len(got) != 1 || got[0].identity != "" {
		t.Errorf("GET /ws/inst with a spoofed identity: %d, the plugin saw %v; want it dropped", status, got)
	}
}

func TestIdentify(t *testing.T) {
	h := NewIdentify(Options{APIKey: testKey})
	for _, c := range []struct {
		key    string
		status int
		body   string
	}{
		{testKey, 200, "admin"},
		{"nope", 401, ""},
		{"", 401, ""},
	} {
		req := httptest.NewRequest("POST", sdk.IdentifyPath, nil)
		req.Header.Set("apikey", c.key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.status || strings.TrimSpace(w.Body.String()) != c.body {
			t.Errorf("identify %q: %d %q; want %d %q", c.key, w.Code, w.Body.String(), c.status, c.body)
		}
	}
	if id, err := sdk.ParseIdentity("admin"); err != nil || !id.Admin() {
		t.Errorf("ParseIdentity(admin) = %v, %v", id, err)
	}
}
