package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// amqpURI is the RabbitMQ the tool measures: this machine's only.
const amqpURI = "amqp://guest:guest@127.0.0.1:5672/"

// runRabbitMQ measures a bare client, then the sidecar with and without
// fsync, on one broker and the same exchanges, routing key and queues:
// per instance i a topic exchange i, key messages.upsert and a quorum
// queue i.messages.upsert, as the plugin names and declares them.
func runRabbitMQ(data string) error {
	conn, err := amqp.Dial(amqpURI)
	if err != nil {
		return fmt.Errorf("RabbitMQ at %s: %w", amqpURI, err)
	}
	defer conn.Close()
	id := runID()
	names := make([]string, *instances)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%s-%d", id, i)
	}
	defer deleteRabbit(names)
	if err := declareRabbit(conn, names); err != nil {
		return err
	}
	c := newCounter()
	for _, name := range names {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		msgs, err := ch.Consume(name+".messages.upsert", "", true, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("consume %s.messages.upsert: %w", name, err)
		}
		go func() {
			for m := range msgs {
				c.see(m.MessageId)
			}
		}()
	}

	bare, err := bareRabbit(conn, names, data, c)
	if err != nil {
		return err
	}
	report("bare amqp091 client → RabbitMQ (confirms)", bare, bare, "")
	for _, sc := range []struct {
		name string
		env  []string
	}{
		{"sidecar → rabbitmq (durable)", nil},
		{"sidecar → rabbitmq (EVORELAY_SPOOL_NOSYNC)", []string{"EVORELAY_SPOOL_NOSYNC=true"}},
	} {
		res, err := sidecarBroker("rabbitmq", append(sc.env, "EVORELAY_RABBITMQ_URI="+amqpURI), names, c, data)
		if err != nil {
			return err
		}
		report(sc.name, res, bare, fmt.Sprintf("ingest %.0f events/s", res.ingest))
	}
	return nil
}

// sidecarBroker starts evorelay with one broker plugin, enables it for
// every instance, and measures the events through it until c counted
// them all.
func sidecarBroker(plugin string, env, names []string, c *counter, data string) (result, error) {
	s, err := startSidecar(plugin, env)
	if err != nil {
		return result{}, err
	}
	defer s.stop()
	for _, name := range names {
		if err := s.set(plugin, name, map[string]any{"enabled": true, "events": []string{"MESSAGES_UPSERT"}}); err != nil {
			return result{}, err
		}
	}
	return measureSidecar(s, c, data, func(i int) string { return names[i%len(names)] })
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
func bareRabbit(conn *amqp.Connection, names []string, data string, c *counter) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c.expect(*events)
	window := max(1, 1000/len(names))
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for w, name := range names {
		ch, err := conn.Channel()
		if err != nil {
			return result{}, err
		}
		defer ch.Close()
		if err := ch.Confirm(false); err != nil {
			return result{}, err
		}
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window))
		body := envelope(name, data)
		wg.Go(func() {
			outstanding := 0
			settle := func() error {
				select {
				case conf, ok := <-confirms:
					if !ok {
						return errors.New("the channel closed")
					}
					if !conf.Ack {
						return fmt.Errorf("publish %d nacked", conf.DeliveryTag)
					}
					outstanding--
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			for i := w; i < *events; i += len(names) {
				if outstanding == window {
					if err := settle(); err != nil {
						errs <- err
						return
					}
				}
				err := ch.PublishWithContext(ctx, name, "messages.upsert", true, false, amqp.Publishing{
					ContentType: "application/json", DeliveryMode: amqp.Persistent,
					MessageId: fmt.Sprintf("bare-%d", i), Timestamp: time.Now(), AppId: "evorelay",
					Headers: amqp.Table{"instance": name, "event": "MESSAGES_UPSERT"},
					Body:    body,
				})
				if err != nil {
					errs <- err
					return
				}
				outstanding++
			}
			for outstanding > 0 {
				if err := settle(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	if err := c.wait(); err != nil {
		return result{}, err
	}
	r := rate(start)
	return result{delivered: r, ingest: r}, nil
}
