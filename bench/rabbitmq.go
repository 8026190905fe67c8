package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// amqpURI is the RabbitMQ the tool measures: this machine's only.
const amqpURI = "amqp://guest:guest@127.0.0.1:5672/"

// runRabbitMQ measures a bare client, then the sidecar, on one broker
// and the same exchanges, routing key and queues: per instance i a topic
// exchange i, key messages.upsert and a quorum queue i.messages.upsert, as
// the plugin names and declares them.
func runRabbitMQ(l load) (row, error) {
	conn, err := amqp.Dial(amqpURI)
	if err != nil {
		return row{}, fmt.Errorf("RabbitMQ at %s: %w", amqpURI, err)
	}
	defer conn.Close()
	id := runID()
	for i := range l.names {
		l.names[i] = fmt.Sprintf("bench-%s-%d", id, i)
	}
	defer deleteRabbit(l.names)
	if err := declareRabbit(conn, l.names); err != nil {
		return row{}, err
	}
	c := newCounter()
	for _, name := range l.names {
		ch, err := conn.Channel()
		if err != nil {
			return row{}, err
		}
		msgs, err := ch.Consume(name+".messages.upsert", "", true, false, false, false, nil)
		if err != nil {
			return row{}, fmt.Errorf("consume %s.messages.upsert: %w", name, err)
		}
		go func() {
			for m := range msgs {
				c.see(m.MessageId)
			}
		}()
	}

	cpu := startMeter(0)
	bare, err := bareRabbit(conn, l, c)
	if err != nil {
		return row{}, err
	}
	line("bare: amqp091 client → RabbitMQ (confirms)", bare, 0, "")
	printCPU(cpu, l.n)
	return sidecarBroker("rabbitmq", []string{"EVORELAY_RABBITMQ_URI=" + amqpURI}, l, c, "POST /events → rabbitmq → broker", bare, "≥0.8×")
}

// sidecarBroker starts evorelay with one broker plugin, enables it for
// every instance, and compares the load through it, counted by c, with
// bare.
func sidecarBroker(plugin string, env []string, l load, c *counter, path string, bare float64, goal string) (row, error) {
	s, err := startSidecar(plugin, l.scenario, env...)
	if err != nil {
		return row{}, err
	}
	defer s.stop()
	for _, name := range l.names {
		if err := s.set(name, map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}}); err != nil {
			return row{}, err
		}
	}
	c.expect(l.n)
	return s.compare(l, c, path, bare, goal)
}

// declareRabbit declares what the plugin declares for each instance.
func declareRabbit(conn *amqp.Connection, names []string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for _, name := range names {
		queue := name + ".messages.upsert"
		if err := ch.ExchangeDeclare(name, "topic", true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			return err
		}
		if err := ch.QueueBind(queue, "messages.upsert", name, false, nil); err != nil {
			return err
		}
	}
	return nil
}

// deleteRabbit deletes the run's queues and exchanges, on a connection of
// its own.
func deleteRabbit(names []string) {
	conn, err := amqp.Dial(amqpURI)
	if err != nil {
		fmt.Println("bench: clean up:", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		fmt.Println("bench: clean up:", err)
		return
	}
	defer ch.Close()
	for _, name := range names {
		if _, err := ch.QueueDelete(name+".messages.upsert", false, false, false); err != nil {
			fmt.Println("bench: clean up:", err)
			return
		}
		if err := ch.ExchangeDelete(name, false, false); err != nil {
			fmt.Println("bench: clean up:", err)
			return
		}
	}
}

// bareRabbit publishes the events as the plugin does: the same body and
// properties, mandatory, with publisher confirms, at most 1000 unconfirmed
// in all (the plugin's default window), one channel per instance, each in
// order. It ends when c counted every message in the queues.
func bareRabbit(conn *amqp.Connection, l load, c *counter) (float64, error) {
	return bareBroker(l, c, func(ctx context.Context, name string, window int) (publisher, error) {
		ch, err := conn.Channel()
		if err != nil {
			return publisher{}, err
		}
		if err := ch.Confirm(false); err != nil {
			ch.Close()
			return publisher{}, err
		}
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window))
		return publisher{
			publish: func(i int, body []byte) error {
				return ch.PublishWithContext(ctx, name, "messages.upsert", true, false, amqp.Publishing{
					ContentType: "application/json", DeliveryMode: amqp.Persistent,
					MessageId: fmt.Sprintf("bare-%d", i), Timestamp: time.Now(), AppId: "evorelay",
					Headers: amqp.Table{"instance": name, "event": "MESSAGES_UPSERT"},
					Body:    body,
				})
			},
			settle: func() error {
				select {
				case conf, ok := <-confirms:
					if !ok {
						return errors.New("the channel closed")
					}
					if !conf.Ack {
						return fmt.Errorf("publish %d nacked", conf.DeliveryTag)
					}
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			},
			close: func() { ch.Close() },
		}, nil
	})
}
