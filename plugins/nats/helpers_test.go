package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// serverURL is the NATS server (with JetStream) on this machine. The
// integration tests fail, not skip, when it cannot be reached.
const serverURL = "nats://127.0.0.1:4222"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openSink opens a sink on url with extra process settings and waits until
// it is connected.
func openSink(t testing.TB, url string, naming events.Naming, extra map[string]string) *Sink {
	t.Helper()
	return sinktest.OpenWith(t, New(), naming, map[string]string{"url": url}, extra)
}

// client is a plain connection the tests observe the server with.
type client struct {
	t  testing.TB
	nc *nats.Conn
	js jetstream.JetStream
}

func dial(t testing.TB, url string, opts ...nats.Option) *client {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("NATS at %s is not reachable (start it: nats-server -js): %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, nc: nc, js: js}
}

// stream creates a stream over subjects, deleted when the test ends.
func (c *client) stream(name string, subjects ...string) jetstream.Stream {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Storage: jetstream.FileStorage})
	if err != nil {
		c.t.Fatalf("create stream %s: %v", name, err)
	}
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.js.DeleteStream(ctx, name); err != nil {
			c.t.Errorf("delete stream %s: %v", name, err)
		}
	})
	return st
}

// stored returns every message in the stream, in order.
func stored(t testing.TB, st jetstream.Stream) []*nats.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []*nats.Msg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		out = append(out, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return out
}

// holds returns the stream's messages, failing t unless they are the
// deliveries ds, once each and in order (by Nats-Msg-Id).
func holds(t testing.TB, st jetstream.Stream, ds ...sdk.Delivery) []*nats.Msg {
	t.Helper()
	msgs := stored(t, st)
	var got, want []string
	for _, m := range msgs {
		got = append(got, m.Header.Get("Nats-Msg-Id"))
	}
	for _, d := range ds {
		want = append(want, d.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the stream holds %v, want %v", got, want)
	}
	return msgs
}
