package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
)

// benchBody is a 1 KB message event.
var benchData = `{"key":{"remoteJid":"5511999999999@s.whatsapp.net","id":"ABC"},"message":{"conversation":"` + strings.Repeat("x", 1024) + `"}}`

func benchReceiver(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkDeliver sends batches of 100 deliveries of one instance, in
// order, as the host hands them over. Compare with BenchmarkBareClient.
func BenchmarkDeliver(b *testing.B) {
	srv := benchReceiver(b)
	s := New()
	if err := s.Open(context.Background(), sdk.Config{Naming: events.NamingSeed, Egress: egress.New(loopbackPrefixes, nil)}); err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	set, err := s.Validate(context.Background(), "bench", json.RawMessage(`{"url":"`+srv.URL+`","enabled":true,"events":[]}`))
	if err != nil {
		b.Fatal(err)
	}
	env, _ := json.Marshal(events.Envelope{Event: "MESSAGES_UPSERT", Instance: "bench", Data: json.RawMessage(benchData), DateTime: "2024-01-01T12:00:00.000Z"})
	batch := make([]sdk.Delivery, 100)
	for i := range batch {
		batch[i] = sdk.Delivery{ID: fmt.Sprint(i), Instance: "bench", Event: "MESSAGES_UPSERT", Attempt: 1, Envelope: env, Settings: set}
	}
	acks := &countAcks{}
	b.SetBytes(int64(len(env)))
	b.ResetTimer()
	for range b.N / len(batch) {
		_ = s.Deliver(context.Background(), batch, acks)
	}
	b.StopTimer()
	if acks.failed > 0 {
		b.Fatalf("%d deliveries failed", acks.failed)
	}
}

// BenchmarkBareClient posts the same body one after the other with a
// plain http.Client: the baseline of BenchmarkDeliver.
func BenchmarkBareClient(b *testing.B) {
	srv := benchReceiver(b)
	body := `{"event":"MESSAGES_UPSERT","instance":"bench","data":` + benchData + `,"destination":"` + srv.URL + `","date_time":"2024-01-01T12:00:00.000Z","sender":null,"server_url":null,"apikey":null}`
	client := &http.Client{}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := range b.N {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", fmt.Sprint(i))
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

type countAcks struct{ failed int }

func (a *countAcks) Done(_ string, err error) {
	if err != nil {
		a.failed++
	}
}

// loopbackPrefixes allow the receiver on 127.0.0.1 (EVORELAY_EGRESS_ALLOW).
var loopbackPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
