package main

import (
	"fmt"
	"math"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evorelay/evorelay/sdk"
)

// queueLimits are an instance's broker-side limits on its queues, declared
// as queue arguments: RabbitMQ drops a message that waited longer than
// the TTL, and the oldest messages past the maximum length. RabbitMQ
// never changes the arguments of a queue that exists: a queue declared
// earlier with other ones keeps them (see redeclareHint).
type queueLimits struct {
	// TTL is a Go duration ("6h"); "" means none (x-message-ttl).
	TTL string `json:"queue_ttl,omitempty"`
	// MaxLength is the most messages a queue holds; 0 means no bound
	// (x-max-length).
	MaxLength int64 `json:"queue_max_length,omitempty"`
}

// maxTTL is the largest x-message-ttl RabbitMQ takes, in milliseconds.
const maxTTL = time.Duration(math.MaxUint32) * time.Millisecond

func (q queueLimits) set() bool { return q.TTL != "" || q.MaxLength > 0 }

// check validates the limits and writes the TTL in its normal form. In
// global mode the queues are every instance's, so an instance cannot
// limit them.
func (q *queueLimits) check(global bool) error {
	var fe sdk.FieldErrors
	if global && q.set() {
		fe.Add("queue_ttl", "EVORELAY_RABBITMQ_GLOBAL shares its queues among every instance: one instance cannot limit them; set a RabbitMQ policy on them instead")
		return fe.Err()
	}
	if q.TTL != "" {
		d, err := time.ParseDuration(q.TTL)
		switch {
		case err != nil:
			fe.Add("queue_ttl", "%q is not a duration such as 6h or 90s", q.TTL)
		case d < time.Millisecond || d > maxTTL:
			fe.Add("queue_ttl", "%q is out of range: RabbitMQ takes 1ms to %s", q.TTL, maxTTL)
		default:
			q.TTL = d.String()
		}
	}
	if q.MaxLength < 0 {
		fe.Add("queue_max_length", "%d is not a length; want 1 or more, or leave it out for no bound", q.MaxLength)
	}
	return fe.Err()
}

// args are the queue arguments for a queue of type queueType (quorum or
// classic) with these limits.
func (q queueLimits) args(queueType string) amqp.Table {
	t := amqp.Table{}
	if queueType == "quorum" {
		t["x-queue-type"] = "quorum"
	}
	if d, err := time.ParseDuration(q.TTL); err == nil && q.TTL != "" {
		t["x-message-ttl"] = d.Milliseconds()
	}
	if q.MaxLength > 0 {
		t["x-max-length"] = q.MaxLength
	}
	if len(t) == 0 {
		return nil
	}
	return t
}

// redeclareHint explains RabbitMQ's refusal to declare a queue again with
// other arguments.
func redeclareHint(err error) string {
	return fmt.Sprintf("RabbitMQ refused the queue limits: %v. One of the instance's queues exists with other arguments (declared earlier, with other limits or none), and RabbitMQ never changes a queue's arguments; delete the queue (its messages go with it) and set again, or leave the limits out here and set them with a RabbitMQ policy (rabbitmqctl set_policy), which applies to existing queues", err)
}
