package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// Keys are kept in the backend under KeysSink, found again on reopening,
// follow another replica's changes (Watch), and never show up as settings.
func TestKeysPersistAndFollowReplicas(t *testing.T) {
	ctx := context.Background()
	b := newMem()
	s := mustOpen(t, b)
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	k := Key{ID: "K1", Instance: "acme", Hash: []byte("0123456789abcdef0123456789abcdef"), Created: created}
	if err := s.PutKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.stored(KeysSink, "K1"); !ok {
		t.Fatal("the key is not in the backend")
	}
	if got := s.Instances(KeysSink); len(got) != 0 {
		t.Errorf("keys listed as settings: %v", got)
	}
	if _, err := s.Set(ctx, KeysSink, "K1", []byte(`{"enabled":true}`)); err == nil {
		t.Error("Set wrote settings under the keys' reserved name")
	}

	var logs bytes.Buffer
	again, err := Open(ctx, b, quietLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := again.Key("K1")
	if !ok || got.Instance != "acme" || !bytes.Equal(got.Hash, k.Hash) || !got.Created.Equal(created) {
		t.Fatalf("reopened: %+v %v; want %+v", got, ok, k)
	}
	if logs.Len() != 0 {
		t.Errorf("reopening logged: %s", logs.String())
	}

	if err := s.DeleteKey(ctx, "other", "K1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking another instance's key: %v; want ErrNotFound", err)
	}
	if err := s.DeleteKey(ctx, "acme", "K1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Key("K1"); ok {
		t.Error("revoked key still known")
	}
	// Another replica revoked it: the watcher tells the first store.
	b.watch(KeysSink, "K1", nil)
	if _, ok := again.Key("K1"); ok {
		t.Error("a key revoked by another replica is still known")
	}
	b.watch(KeysSink, "K2", []byte(`{"instance":"acme","hash":"AAAA","created":"2024-01-02T03:04:05Z"}`))
	if ks := again.Keys("acme"); len(ks) != 1 || ks[0].ID != "K2" {
		t.Errorf("a key created by another replica: %+v", ks)
	}
}
