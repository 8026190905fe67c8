package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

const version = "0.1.0"

// settings are one instance's SQS settings: Evolution API's
// {"enabled", "events"}. Where its events go is the process's choice
// (EVORELAY_SQS_*), not the instance's.
type settings = sdk.Subscription

// Sink relays events to Amazon SQS FIFO queues (or any server that speaks
// SQS's query protocol).
type Sink struct {
	sdk.UnimplementedSink

	// httpClient, when set before Open, carries every SQS request (tests
	// record and alter traffic with it).
	httpClient *http.Client

	log      hclog.Logger
	naming   events.Naming
	proc     process
	client   *sqs.Client // nil until Open finds a region
	notReady string      // why client is nil
	idle     interface{ CloseIdleConnections() }

	mu   sync.Mutex
	urls map[string]string // queue name → queue URL
}

// New returns an SQS sink; Open configures it.
func New() *Sink {
	return &Sink{log: hclog.NewNullLogger(), notReady: "not opened", urls: map[string]string{}}
}

// Describe names the sink.
func (s *Sink) Describe() sdk.Description {
	return sdk.Description{Name: "sqs", Version: version}
}

// Open reads the EVORELAY_SQS_* variables and builds the SQS client.
// Without EVORELAY_SQS_REGION the sink loads but is not ready: enabling it
// for an instance is refused with a message saying what to set.
func (s *Sink) Open(ctx context.Context, cfg sdk.Config) error {
	p, err := parseProcess(cfg)
	if err != nil {
		return err
	}
	s.log, s.naming, s.proc = cfg.Log(), cfg.Naming, p
	if p.region == "" {
		s.notReady = envName("region") + " is not set"
		s.log.Warn("SQS is not configured: set " + envName("region") + " (e.g. us-east-1)")
		return nil
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(p.region)}
	if p.accessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(p.accessKeyID, p.secretAccessKey, p.sessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("sqs: load AWS configuration (%s, AWS_* variables, shared config files): %w", envName("region"), err)
	}
	hc := s.httpClient
	if hc == nil {
		// The SDK's transport (AWS_CA_BUNDLE and the like applied) in a
		// client of our own, so that Close can close its connections.
		b, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient)
		if !ok {
			return fmt.Errorf("sqs: unexpected AWS HTTP client %T", awsCfg.HTTPClient)
		}
		hc = &http.Client{
			Transport: b.GetTransport(),
			Timeout:   b.GetTimeout(),
			// SQS does not redirect; a redirect is answered as it is.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	hc = withOwnBodies(hc)
	awsCfg.HTTPClient = hc
	s.idle = hc
	s.client = sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		if p.endpoint != "" {
			o.BaseEndpoint = aws.String(p.endpoint)
		}
	})
	s.notReady = ""
	s.log.Info("SQS sink configured", "region", p.region, "endpoint", p.endpoint,
		"static_credentials", p.accessKeyID != "", "global", p.naming.Global, "global_queue", p.naming.Single)
	return nil
}

// Validate checks an instance's settings. When they are enabled it checks
// that every queue name they lead to is one SQS accepts, and creates the
// queues, so that a consumer can subscribe before the first event. SQS
// refusing to create one (wrong credentials, no permission) refuses the
// settings with its reason; SQS out of reach does not: the queues are
// created on the first delivery, which is retried until SQS is back.
func (s *Sink) Validate(ctx context.Context, instance string, raw json.RawMessage) (json.RawMessage, error) {
	st, err := sdk.ParseSettings[settings](raw)
	if err == nil && st.Enabled {
		err = s.prepareQueues(ctx, instance, st.Subscribed())
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(st)
}

// prepareQueues checks that the queue of each event is one SQS accepts and
// creates the queues, for Validate. It returns FieldErrors for a name SQS
// refuses or a creation it refuses, nil when SQS is out of reach.
func (s *Sink) prepareQueues(ctx context.Context, instance string, subscribed []string) error {
	if s.client == nil {
		return sdk.FieldErrors{{Field: "enabled", Message: "the SQS sink is not configured on this sidecar: " + s.notReady}}
	}
	var names []string
	for _, ev := range subscribed {
		name := queueName(s.proc.naming, instance, ev)
		if err := checkQueueName(name); err != nil {
			return sdk.FieldErrors{{Field: "instance", Message: err.Error() + "; rename the instance or use EVORELAY_SQS_GLOBAL"}}
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		_, err := s.createQueue(ctx, name)
		if err == nil {
			continue
		}
		if isRefusal(err) {
			return sdk.FieldErrors{{Field: "enabled", Message: err.Error() + "; check the EVORELAY_SQS_* settings and the credentials' permissions"}}
		}
		s.log.Warn("cannot create the instance's queues now; they will be created on the first delivery",
			"instance", instance, "queue", name, "error", err)
		break
	}
	return nil
}

// Health is ready once a region is configured.
func (s *Sink) Health(context.Context) sdk.Health {
	if s.client == nil {
		return sdk.Health{Ready: false, Detail: "not configured: " + s.notReady}
	}
	return sdk.Health{Ready: true, Detail: "region " + s.proc.region}
}

// maxSenders bounds the SendMessageBatch calls one Deliver has in flight.
const maxSenders = 8

// Deliver sends the batch with SendMessageBatch, queue by queue. Messages
// for one queue are sent in order, up to 10 (and 256 KiB) a call; queues
// are sent to in parallel. Each delivery is acknowledged by the outcome of
// its own entry.
func (s *Sink) Deliver(ctx context.Context, batch []sdk.Delivery, acks sdk.Acks) error {
	if s.client == nil {
		return fmt.Errorf("sqs: not configured: %s", s.notReady)
	}
	var lanes sdk.Lanes[entry]
	for _, d := range batch {
		e, err := s.newEntry(d)
		if err != nil {
			acks.Done(d.ID, err)
			continue
		}
		lanes.Add(e.queue, e)
	}
	lanes.Run(maxSenders, func(queue string, entries []entry) {
		for _, chunk := range chunks(entries) {
			s.send(ctx, queue, chunk, acks)
		}
	})
	return nil
}

// send sends one chunk to a queue and acknowledges each entry. When the
// queue is gone it is created again and the chunk sent once more.
func (s *Sink) send(ctx context.Context, queue string, chunk []entry, acks sdk.Acks) {
	in := &sqs.SendMessageBatchInput{Entries: make([]types.SendMessageBatchRequestEntry, len(chunk))}
	byID := make(map[string]entry, len(chunk))
	for i, e := range chunk {
		id := strconv.Itoa(i)
		in.Entries[i] = e.request(id)
		byID[id] = e
	}
	var out *sqs.SendMessageBatchOutput
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var u string
		if u, err = s.queueURL(ctx, queue); err != nil {
			break
		}
		in.QueueUrl = aws.String(u)
		out, err = s.client.SendMessageBatch(ctx, in)
		if err == nil || !isQueueMissing(err) {
			break
		}
		s.forget(queue)
		if _, err = s.createQueue(ctx, queue); err != nil {
			break
		}
	}
	if err != nil {
		err = fmt.Errorf("sqs: SendMessageBatch to %s: %w", queue, err)
		for _, e := range chunk {
			acks.Done(e.delivery, err)
		}
		return
	}
	for _, r := range out.Successful {
		if e, ok := byID[aws.ToString(r.Id)]; ok {
			acks.Done(e.delivery, nil)
			delete(byID, aws.ToString(r.Id))
		}
	}
	for _, f := range out.Failed {
		e, ok := byID[aws.ToString(f.Id)]
		if !ok {
			continue
		}
		delete(byID, aws.ToString(f.Id))
		err := fmt.Errorf("sqs: %s refused the message: %s: %s", queue, aws.ToString(f.Code), aws.ToString(f.Message))
		if f.SenderFault {
			err = sdk.Permanent(err)
		}
		acks.Done(e.delivery, err)
	}
	for _, e := range byID {
		acks.Done(e.delivery, fmt.Errorf("sqs: SendMessageBatch to %s: the response does not mention this message", queue))
	}
}

// Close closes the client's idle connections and forgets the queue URLs.
func (s *Sink) Close(context.Context) error {
	if s.idle != nil {
		s.idle.CloseIdleConnections()
	}
	s.mu.Lock()
	s.urls = map[string]string{}
	s.mu.Unlock()
	return nil
}

// isRefusal reports whether SQS answered for good: a 4xx that is not
// throttling (the request or the credentials are wrong). Network errors,
// 5xx and throttling may pass.
func isRefusal(err error) bool {
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	code := re.HTTPStatusCode()
	if code < 400 || code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests {
		return false
	}
	var api interface{ ErrorCode() string }
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "Throttling", "ThrottlingException", "RequestThrottled", "RequestThrottledException",
			"RequestLimitExceeded", "SlowDown", "RequestTimeout", "RequestTimeoutException":
			return false
		}
	}
	return true
}

// isQueueMissing reports whether err says the queue does not exist.
func isQueueMissing(err error) bool {
	var missing *types.QueueDoesNotExist
	if errors.As(err, &missing) {
		return true
	}
	var api interface{ ErrorCode() string }
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
			return true
		}
	}
	return false
}
