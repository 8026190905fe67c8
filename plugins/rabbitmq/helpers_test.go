package main

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// brokerURI is the RabbitMQ on this machine. The integration tests fail,
// not skip, when it cannot be reached.
const (
	brokerAddr = "127.0.0.1:5672"
	brokerURI  = "amqp://guest:guest@" + brokerAddr + "/"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openSink opens a sink on the local broker with extra process settings,
// which may name another broker's uri.
func openSink(t testing.TB, naming events.Naming, extra map[string]string) *Sink {
	t.Helper()
	return sinktest.OpenWith(t, New(), naming, map[string]string{"uri": brokerURI}, extra)
}

// broker is a plain client connection the tests observe the broker with.
type broker struct {
	t    testing.TB
	conn *amqp.Connection
}

func dialBroker(t testing.TB) *broker {
	t.Helper()
	conn, err := amqp.Dial(brokerURI)
	if err != nil {
		t.Fatalf("RabbitMQ at %s is not reachable (start it: rabbitmq-server -detached): %v", brokerURI, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &broker{t: t, conn: conn}
}

// onBroker runs f with a connection of its own, closed when f returns: for
// a test that must leave no connection open when it checks for leaked
// goroutines.
func onBroker(t testing.TB, f func(b *broker)) {
	t.Helper()
	conn, err := amqp.Dial(brokerURI)
	if err != nil {
		t.Fatalf("dial %s: %v", brokerURI, err)
	}
	defer conn.Close()
	f(&broker{t: t, conn: conn})
}

// channel opens a channel closed with the test; a failed operation closes
// a channel, so tests take a fresh one per check that may fail.
func (b *broker) channel() *amqp.Channel {
	b.t.Helper()
	ch, err := b.conn.Channel()
	if err != nil {
		b.t.Fatalf("open channel: %v", err)
	}
	b.t.Cleanup(func() { _ = ch.Close() })
	return ch
}

// exists reports whether queue exists.
func (b *broker) queueExists(queue string) bool {
	b.t.Helper()
	_, err := b.channel().QueueDeclarePassive(queue, true, false, false, false, nil)
	return err == nil
}

// messages returns every message now in queue (n of them, waiting up to
// a minute for them to arrive) and fails if more are there.
func (b *broker) messages(queue string, n int) []amqp.Delivery {
	b.t.Helper()
	ch := b.channel()
	var got []amqp.Delivery
	sinktest.Eventually(b.t, fmt.Sprintf("%d messages in %s", n, queue), time.Minute, func() bool {
		got = append(got, b.drainFrom(ch, queue, n-len(got))...)
		return len(got) == n
	})
	if m, ok, _ := ch.Get(queue, true); ok {
		b.t.Fatalf("queue %s holds more than %d messages: extra %s", queue, n, m.Body)
	}
	return got
}

// drain returns every message now in queue.
func (b *broker) drain(queue string) []amqp.Delivery {
	b.t.Helper()
	return b.drainFrom(b.channel(), queue, -1)
}

// drainFrom takes up to max messages (all if max < 0) now in queue on ch.
func (b *broker) drainFrom(ch *amqp.Channel, queue string, max int) []amqp.Delivery {
	b.t.Helper()
	var got []amqp.Delivery
	for max < 0 || len(got) < max {
		m, ok, err := ch.Get(queue, true)
		if err != nil {
			b.t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			break
		}
		got = append(got, m)
	}
	return got
}

// tap binds a new exclusive queue to exchange with routing key # and
// returns its name: it sees every message the exchange routes.
func (b *broker) tap(exchange string) string {
	b.t.Helper()
	ch := b.channel()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		b.t.Fatalf("declare tap queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
		b.t.Fatalf("bind tap queue to %s: %v", exchange, err)
	}
	return q.Name
}

// cleanupBroker deletes, when the test ends, an exchange and queues the
// test created, on a connection of its own.
func cleanupBroker(t testing.TB, exchange string, queues ...string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(brokerURI)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		for _, q := range queues {
			if ch, err := conn.Channel(); err == nil {
				if _, err := ch.QueueDelete(q, false, false, false); err != nil {
					t.Logf("cleanup: delete queue %s: %v", q, err)
				}
				_ = ch.Close()
			}
		}
		if ch, err := conn.Channel(); err == nil && exchange != "" {
			_ = ch.ExchangeDelete(exchange, false, false)
			_ = ch.Close()
		}
	})
}

// newInstance returns an instance name no other test uses; its exchange
// and queues are deleted when the test ends.
func newInstance(t testing.TB, prefix string) string {
	i := sinktest.Unique(prefix)
	cleanupBroker(t, i, instanceQueues(i)...)
	return i
}

// instanceQueues are the names of every queue instance i may get.
func instanceQueues(i string) []string {
	var qs []string
	for _, e := range events.All() {
		qs = append(qs, i+"."+events.Wire(e))
	}
	return qs
}
