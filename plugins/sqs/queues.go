package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// queueURL returns the URL of a queue: from the cache, built from
// EVORELAY_SQS_QUEUE_URL_PREFIX, or looked up with GetQueueUrl; a queue
// that does not exist yet is created.
func (s *Sink) queueURL(ctx context.Context, name string) (string, error) {
	s.mu.Lock()
	u, ok := s.urls[name]
	s.mu.Unlock()
	if ok {
		return u, nil
	}
	if s.proc.queueURLPrefix != "" {
		u = s.proc.queueURLPrefix + "/" + name
		s.remember(name, u)
		return u, nil
	}
	in := &sqs.GetQueueUrlInput{QueueName: aws.String(name)}
	if s.proc.accountID != "" {
		in.QueueOwnerAWSAccountId = aws.String(s.proc.accountID)
	}
	out, err := s.client.GetQueueUrl(ctx, in)
	switch {
	case err == nil:
		u = aws.ToString(out.QueueUrl)
		s.remember(name, u)
		return u, nil
	case isQueueMissing(err):
		return s.createQueue(ctx, name)
	}
	return "", fmt.Errorf("get the URL of queue %s: %w", name, err)
}

// createQueue creates a FIFO queue (CreateQueue is idempotent for the same
// attributes) and caches its URL. Deduplication is by the delivery id the
// sink sends, never by content: two identical events are two messages.
// With EVORELAY_SQS_MESSAGE_RETENTION the queue keeps messages that long;
// a queue that exists keeps its own retention.
func (s *Sink) createQueue(ctx context.Context, name string) (string, error) {
	attrs := map[string]string{
		string(types.QueueAttributeNameFifoQueue):                 "true",
		string(types.QueueAttributeNameContentBasedDeduplication): "false",
	}
	if s.proc.retention > 0 {
		attrs[string(types.QueueAttributeNameMessageRetentionPeriod)] = strconv.Itoa(int(s.proc.retention.Seconds()))
	}
	out, err := s.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return "", fmt.Errorf("sqs: create queue %s: %w", name, err)
	}
	u := aws.ToString(out.QueueUrl)
	if s.remember(name, u) {
		s.log.Info("queue ready", "queue", name)
	}
	return u, nil
}

// remember caches a queue's URL and reports whether it was new.
func (s *Sink) remember(name, u string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, known := s.urls[name]
	s.urls[name] = u
	return !known
}

func (s *Sink) forget(name string) {
	s.mu.Lock()
	delete(s.urls, name)
	s.mu.Unlock()
}
