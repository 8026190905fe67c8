package main

import (
	"context"
	"encoding/json"
	"regexp"
	"testing"

	"github.com/evorelay/evorelay/host/spool"
	"github.com/evorelay/evorelay/host/store"
)

// APPLICATION_STARTUP is written by the same envelope writer as ingested
// events: null, not "", for what no engine sent.
func TestStartupEnvelopeIsWrittenLikeIngestedOnes(t *testing.T) {
	ctx := context.Background()
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if err := sp.Register("rabbitmq"); err != nil {
		t.Fatal(err)
	}
	backend, err := store.OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, backend)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Set(ctx, "rabbitmq", "shop", json.RawMessage(`{"enabled":true,"events":[]}`)); err != nil {
		t.Fatal(err)
	}
	if err := emitStartup(ctx, sp, st, []string{"rabbitmq"}, "https://engine.example.com"); err != nil {
		t.Fatal(err)
	}
	got, err := sp.Lease(ctx, "rabbitmq", 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("leased %v, %v; want one APPLICATION_STARTUP", got, err)
	}
	want := regexp.MustCompile(`^\{"event":"APPLICATION_STARTUP","instance":"shop","data":\{"status":"started"\},"date_time":"[0-9T:.-]+Z","sender":null,"server_url":"https://engine.example.com","apikey":null\}$`)
	if env := string(got[0].Envelope); !want.MatchString(env) {
		t.Errorf("envelope %s; want %s", env, want)
	}
}
