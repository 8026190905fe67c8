package main

import (
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
	"github.com/evorelay/evorelay/sdk/sinktest/testtls"
)

// With a tls:// URL and EVORELAY_NATS_TLS_CA naming a private CA, the sink
// publishes through a nats-server that speaks only TLS (one this test
// starts); without the CA it does not connect.
func TestTLS(t *testing.T) {
	ca := testtls.NewCA(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	ca.Issue(t).Write(t, cert, key)
	srv := startServer(t, "--tls", "--tlscert", cert, "--tlskey", key)
	url := "tls://127.0.0.1:" + srv.port

	s := openSink(t, url, events.NamingSeed, map[string]string{"tls_ca": ca.File})
	c := dial(t, url, nats.RootCAs(ca.File))
	inst := sinktest.Unique("t-tls")
	st := c.stream(sinktest.Unique("T-TLS"), inst+".messages.upsert")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT"]}`
	validate(t, s, inst, settings)
	d := sinktest.Delivery(t, sinktest.Unique("id"), inst, "MESSAGES_UPSERT", settings)
	if err := sinktest.Deliver(t, s, s.naming, d)[d.ID]; err != nil {
		t.Fatalf("delivery over TLS: %v", err)
	}
	holds(t, st, d)

	// The machine's CAs do not vouch for the test's: no connection.
	plain := sinktest.Unreachable(t, New(), map[string]string{"url": url}, "certificate signed by unknown authority")
	d2 := sinktest.Delivery(t, sinktest.Unique("id"), inst, "MESSAGES_UPSERT", settings)
	sinktest.Deliver(t, plain, plain.naming, d2)
	holds(t, st, d) // and not d2
}
