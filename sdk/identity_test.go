package sdk

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
)

func TestIdentityRoundTrip(t *testing.T) {
	for _, id := range []Identity{{}, {Instance: "sales"}, {Instance: "loja São Paulo & co=1"}} {
		got, err := ParseIdentity(id.String())
		if err != nil || got != id {
			t.Errorf("ParseIdentity(%q) = %v, %v; want %v", id.String(), got, err, id)
		}
	}
	for _, bad := range []string{"", "root", "instance=", "instance=%zz"} {
		if _, err := ParseIdentity(bad); err == nil {
			t.Errorf("ParseIdentity(%q) accepted", bad)
		}
	}
	if !(Identity{}).May("x") || !(Identity{Instance: "x"}).May("x") || (Identity{Instance: "x"}).May("y") || (Identity{Instance: "x"}).May("") {
		t.Error("May: the admin key sees every instance, a scoped key only its own")
	}
}

func TestIdentifyAsksTheHostSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "h.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != "POST" || r.URL.Path != IdentifyPath:
			w.WriteHeader(http.StatusNotFound)
		case r.Header.Get("apikey") == "admin-key":
			_, _ = w.Write([]byte("admin"))
		case r.Header.Get("apikey") == "sales-key":
			_, _ = w.Write([]byte(Identity{Instance: "sales"}.String()))
		case r.Header.Get("apikey") == "broken":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	ctx := context.Background()
	if id, err := Identify(ctx, sock, "admin-key"); err != nil || !id.Admin() {
		t.Errorf("admin key: %v, %v", id, err)
	}
	if id, err := Identify(ctx, sock, "sales-key"); err != nil || id.Instance != "sales" {
		t.Errorf("scoped key: %v, %v", id, err)
	}
	if _, err := Identify(ctx, sock, "nope"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown key: %v; want ErrUnknownKey", err)
	}
	if _, err := Identify(ctx, sock, "broken"); err == nil || errors.Is(err, ErrUnknownKey) {
		t.Errorf("host failing: %v; want an error other than ErrUnknownKey", err)
	}
	if _, err := Identify(ctx, "", "k"); err == nil {
		t.Error("no socket: want an error")
	}
}
