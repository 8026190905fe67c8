package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// natsURL is the NATS server the tool measures: this machine's only.
const natsURL = "nats://127.0.0.1:4222"

// runNATS measures a bare client, then the sidecar, on one server and one
// file stream over the run's instances' subjects (i.messages.upsert),
// counted by an ordered consumer of it.
func runNATS(l load) (row, error) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return row{}, fmt.Errorf("NATS at %s: %w", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2000))
	if err != nil {
		return row{}, err
	}
	id := runID()
	subjects := make([]string, len(l.names))
	for i := range l.names {
		l.names[i] = fmt.Sprintf("bench-%s-%d", id, i)
		subjects[i] = l.names[i] + ".>"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	streamName := "BENCH_" + id
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streamName, Subjects: subjects, Storage: jetstream.FileStorage})
	if err != nil {
		return row{}, fmt.Errorf("create stream: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, streamName); err != nil {
			fmt.Println("bench: clean up:", err)
		}
	}()
	c := newCounter()
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return row{}, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { c.see(m.Headers().Get("Nats-Msg-Id")) })
	if err != nil {
		return row{}, err
	}
	defer cc.Stop()

	cpu := startMeter(0)
	bare, err := bareNATS(js, l, c)
	if err != nil {
		return row{}, err
	}
	line("bare: nats.go client → JetStream (acks)", bare, 0, "")
	printCPU(cpu, l.n)
	return sidecarBroker("nats", []string{"EVORELAY_NATS_URL=" + natsURL}, l, c, "POST /events → nats → stream", bare, "≥0.5×")
}

// bareNATS publishes the events as the plugin does: the same subject,
// body and headers, through JetStream asynchronously, at most 1000
// unacknowledged in all (the plugin's default window; the client's own
// bound is twice that, as the plugin sets it, so it never stalls), one
// publisher per instance, each in order. Every PubAck must come back without error; it
// ends when c counted every message in the stream.
func bareNATS(js jetstream.JetStream, l load, c *counter) (float64, error) {
	return bareBroker(l, c, func(ctx context.Context, name string, _ int) (publisher, error) {
		subject := name + ".messages.upsert"
		var pending []jetstream.PubAckFuture // oldest first
		return publisher{
			publish: func(i int, body []byte) error {
				msg := nats.NewMsg(subject)
				msg.Data = body
				msg.Header.Set("Nats-Msg-Id", fmt.Sprintf("bare-%d", i))
				msg.Header.Set("Content-Type", "application/json")
				msg.Header.Set("instance", name)
				msg.Header.Set("event", "MESSAGES_UPSERT")
				paf, err := js.PublishMsgAsync(msg)
				if err == nil {
					pending = append(pending, paf)
				}
				return err
			},
			settle: func() error {
				paf := pending[0]
				pending = pending[1:]
				select {
				case <-paf.Ok():
					return nil
				case err := <-paf.Err():
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			},
		}, nil
	})
}

// publisher is one instance's bare publisher: publish sends event i,
// settle waits for the oldest answer not yet awaited, close (if any)
// releases what it holds.
type publisher struct {
	publish func(i int, body []byte) error
	settle  func() error
	close   func()
}

// bareBroker measures bare publishers of l's events: one per instance
// (made by open), each publishing its instance's events in order with at
// most window unanswered (1000 in all, the plugins' default), until c
// has counted every event at the broker. It returns that rate.
func bareBroker(l load, c *counter, open func(ctx context.Context, name string, window int) (publisher, error)) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	bodies := make([][]byte, l.n)
	for i := range bodies {
		bodies[i] = l.envelope(i)
	}
	c.expect(l.n)
	window := max(1, 1000/len(l.names))
	start := time.Now()
	var g errgroup.Group
	for w, name := range l.names {
		p, err := open(ctx, name, window)
		if err != nil {
			return 0, err
		}
		if p.close != nil {
			defer p.close()
		}
		g.Go(func() error {
			waiting := 0
			for i := w; i < l.n; i += len(l.names) {
				if waiting == window {
					if err := p.settle(); err != nil {
						return err
					}
					waiting--
				}
				if err := p.publish(i, bodies[i]); err != nil {
					return err
				}
				waiting++
			}
			for ; waiting > 0; waiting-- {
				if err := p.settle(); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if err := c.wait(ctx); err != nil {
		return 0, err
	}
	return rate(l.n, time.Since(start)), nil
}
