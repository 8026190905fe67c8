package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk"
)

// Keys keeps the instance-scoped API keys; *store.Store satisfies it.
type Keys interface {
	PutKey(ctx context.Context, k store.Key) error
	// DeleteKey returns an error wrapping store.ErrNotFound when instance
	// has no key id.
	DeleteKey(ctx context.Context, instance, id string) error
	Key(id string) (store.Key, bool)
	Keys(instance string) []store.Key
}

// A scoped key is its id, a dot, and 32 random bytes in unpadded
// base64url: the id finds the record, whose hash is then compared in
// constant time.
const keySecretBytes = 32

// identifyScoped returns the instance of scoped key key, if it is one.
func (s *server) identifyScoped(key string) (sdk.Identity, bool) {
	if s.opts.Keys == nil {
		return sdk.Identity{}, false
	}
	id, _, ok := strings.Cut(key, ".")
	if !ok {
		return sdk.Identity{}, false
	}
	k, found := s.opts.Keys.Key(id)
	if !found {
		return sdk.Identity{}, false
	}
	sum := sha256.Sum256([]byte(key))
	if subtle.ConstantTimeCompare(sum[:], k.Hash) != 1 {
		return sdk.Identity{}, false
	}
	return sdk.Identity{Instance: k.Instance}, true
}

// createdKey is the answer of POST /keys/{instance}: the only time the key
// is shown.
type createdKey struct {
	ID       string    `json:"id"`
	Key      string    `json:"key"`
	Instance string    `json:"instance"`
	Created  time.Time `json:"created"`
}

// listedKey is one key in GET /keys/{instance}.
type listedKey struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

// createKey answers POST /keys/{instance}.
func (s *server) createKey(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	instance := ps.ByName("instance")
	if msg := checkInstance(instance); msg != "" {
		writeError(w, http.StatusBadRequest, "instance: "+msg)
		return
	}
	secret := make([]byte, keySecretBytes)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails
	id := s.newID()
	key := id + "." + base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(key))
	k := store.Key{ID: id, Instance: instance, Hash: sum[:], Created: s.now().UTC()}
	if err := s.opts.Keys.PutKey(r.Context(), k); err != nil {
		s.log.Error("storing an API key failed", "instance", instance, "error", err)
		writeUnavailable(w, fmt.Sprintf("the key could not be stored: %v; retry later", err))
		return
	}
	writeJSON(w, http.StatusCreated, createdKey{ID: id, Key: key, Instance: instance, Created: k.Created})
}

// listKeys answers GET /keys/{instance}.
func (s *server) listKeys(w http.ResponseWriter, _ *http.Request, ps httprouter.Params) {
	instance := ps.ByName("instance")
	if msg := checkInstance(instance); msg != "" {
		writeError(w, http.StatusBadRequest, "instance: "+msg)
		return
	}
	out := []listedKey{}
	for _, k := range s.opts.Keys.Keys(instance) {
		out = append(out, listedKey{ID: k.ID, Created: k.Created})
	}
	writeJSON(w, http.StatusOK, out)
}

// revokeKey answers DELETE /keys/{instance}/{id}.
func (s *server) revokeKey(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	instance, id := ps.ByName("instance"), ps.ByName("id")
	err := s.opts.Keys.DeleteKey(r.Context(), instance, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("instance %q has no key %q; GET /keys/%s lists its keys", instance, id, instance))
	case err != nil:
		s.log.Error("revoking an API key failed", "instance", instance, "id", id, "error", err)
		writeUnavailable(w, fmt.Sprintf("the key could not be revoked: %v; retry later", err))
	default:
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "instance": instance, "revoked": true})
	}
}
