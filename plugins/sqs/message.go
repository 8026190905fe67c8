package main

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/evorelay/evorelay/sdk"
)

// SQS size limits: one message (its body and attributes), and the sum of
// the messages of one SendMessageBatch call.
const (
	maxMessageBytes = 256 << 10
	maxBatchBytes   = 256 << 10
	maxBatchEntries = 10
)

// entry is one delivery ready to send.
type entry struct {
	delivery string // the delivery id
	queue    string
	body     string
	event    string // as written per EVORELAY_NAMING
	instance string
	group    string
	dedup    string
	size     int // what SQS counts against its limit
}

// newEntry builds the message of a delivery. A malformed envelope and a
// message over SQS's size limit are permanent failures: no retry can fix
// them, and a message is never truncated.
func (s *Sink) newEntry(d sdk.Delivery) (entry, error) {
	e := entry{
		delivery: d.ID,
		queue:    queueName(s.proc.naming, d.Instance, d.Event),
		body:     string(d.Envelope),
		event:    s.naming.Name(d.Event),
		instance: d.Instance,
		group:    groupID(s.proc.groupBy, d.Instance, d.Envelope),
		dedup:    messageID(d.ID),
	}
	if err := checkQueueName(e.queue); err != nil {
		return entry{}, sdk.Permanent(fmt.Errorf("sqs: %w", err))
	}
	// SQS counts the body and each attribute's name, type and value.
	e.size = len(e.body) +
		len("event") + len("String") + len(e.event) +
		len("instance") + len("String") + len(e.instance)
	if e.size > maxMessageBytes {
		return entry{}, sdk.Permanent(fmt.Errorf(
			"sqs: message is %d bytes (body and attributes); SQS accepts at most %d (256 KiB); not sent, and never truncated",
			e.size, maxMessageBytes))
	}
	return e, nil
}

// request is the entry as a SendMessageBatch entry with batch id id.
func (e entry) request(id string) types.SendMessageBatchRequestEntry {
	return types.SendMessageBatchRequestEntry{
		Id:                     aws.String(id),
		MessageBody:            aws.String(e.body),
		MessageGroupId:         aws.String(e.group),
		MessageDeduplicationId: aws.String(e.dedup),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"event":    {DataType: aws.String("String"), StringValue: aws.String(e.event)},
			"instance": {DataType: aws.String("String"), StringValue: aws.String(e.instance)},
		},
	}
}

// chunks splits the entries of one queue, in order, into SendMessageBatch
// calls of at most 10 entries and 256 KiB.
func chunks(es []entry) [][]entry {
	var out [][]entry
	start, size := 0, 0
	for i, e := range es {
		if i > start && (i-start == maxBatchEntries || size+e.size > maxBatchBytes) {
			out = append(out, es[start:i])
			start, size = i, 0
		}
		size += e.size
	}
	if start < len(es) {
		out = append(out, es[start:])
	}
	return out
}
