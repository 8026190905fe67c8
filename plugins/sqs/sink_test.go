package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
	"github.com/evorelay/evorelay/sdk/sinktest"
)

// processEnv are the EVORELAY_SQS_* settings that point the sink at goaws.
func processEnv(extra map[string]string) map[string]string {
	env := map[string]string{
		"region":            "us-east-1",
		"endpoint":          goawsURL,
		"access_key_id":     "test",
		"secret_access_key": "test",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// openSink opens a sink on goaws whose requests go through a recorder.
func openSink(t testing.TB, extra map[string]string, naming ...events.Naming) (*Sink, *recorder) {
	t.Helper()
	rec := newRecorder()
	s := New()
	s.httpClient = rec.client()
	cfg := sdk.Config{Settings: processEnv(extra), Logger: sinktest.TestLogger(t, hclog.Debug)}
	if len(naming) > 0 {
		cfg.Naming = naming[0]
	}
	if err := s.Open(waitCtx(t), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, rec
}

// consumer is a plain SQS client, as an application reading the queues.
// Its connections are closed when t ends.
func consumer(t testing.TB) *sqs.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(goawsURL),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:   withOwnBodies(&http.Client{Transport: tr}), // see ownBodies
	})
}

var instanceSeq atomic.Int64

// newInstance returns an instance name no other test uses, so that tests
// sharing one goaws never see each other's queues.
func newInstance(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, instanceSeq.Add(1))
}

// received is a message as a consumer reads it.
type received struct {
	Body       string
	Attributes map[string]string
}

// receiveAll reads and deletes every message in a queue, one at a time
// (see the goaws notes in goaws_test.go).
func receiveAll(t testing.TB, name string) []received {
	t.Helper()
	ctx := waitCtx(t)
	c := consumer(t)
	u, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("GetQueueUrl(%s): %v", name, err)
	}
	var out []received
	for {
		r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:              u.QueueUrl,
			MaxNumberOfMessages:   1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			t.Fatalf("ReceiveMessage(%s): %v", name, err)
		}
		if len(r.Messages) == 0 {
			return out
		}
		for _, m := range r.Messages {
			attrs := map[string]string{}
			for k, v := range m.MessageAttributes {
				attrs[k] = aws.ToString(v.StringValue)
			}
			out = append(out, received{Body: aws.ToString(m.Body), Attributes: attrs})
			if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: u.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("DeleteMessage: %v", err)
			}
		}
	}
}

// queueExists asks goaws whether a queue exists.
func queueExists(t testing.TB, name string) bool {
	t.Helper()
	_, err := consumer(t).GetQueueUrl(waitCtx(t), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil && !isQueueMissing(err) {
		t.Fatalf("GetQueueUrl(%s): %v", name, err)
	}
	return err == nil
}

// outcomes are each delivery's ack.
type outcomes map[string]error

// outcome is the ack of id as the host reads it; see sinktest.Outcome.
func (o outcomes) outcome(id string) string { return sinktest.Outcome(o[id]) }

// deliver hands the batch to the sink as the SDK does; every delivery must
// be acknowledged once.
func deliver(t testing.TB, s *Sink, batch []sdk.Delivery) outcomes {
	return sinktest.Deliver(t, s, s.naming, batch...)
}

const subscribed = `{"enabled":true,"events":[]}`

// delivery is one event for instance with the given data, in the
// envelope the host writes (data as sent, null for what the engine did not
// send).
func delivery(id, instance, event, data, settings string) sdk.Delivery {
	env := fmt.Sprintf(`{"event":%q,"instance":%q,"data":%s,"date_time":"2024-01-01T12:00:00.000Z",`+
		`"sender":"5511988880000@s.whatsapp.net","server_url":"https://engine.example.com","apikey":null}`, event, instance, data)
	return sdk.Delivery{ID: id, Instance: instance, Event: event, Attempt: 1, Envelope: []byte(env), Settings: json.RawMessage(settings)}
}

func TestValidateCreatesFIFOQueues(t *testing.T) {
	s, rec := openSink(t, nil)
	inst := newInstance("val")
	settings := `{"enabled":true,"events":["MESSAGES_UPSERT","GROUP_PARTICIPANTS_UPDATE"]}`
	out, err := s.Validate(waitCtx(t), inst, json.RawMessage(settings))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != settings {
		t.Errorf("Validate = %s, want %s", out, settings)
	}
	for _, q := range []string{inst + "_messages_upsert.fifo", inst + "_group_participants_update.fifo"} {
		if !queueExists(t, q) {
			t.Errorf("queue %s was not created", q)
		}
	}
	if queueExists(t, inst+"_connection_update.fifo") {
		t.Errorf("queue for an event not subscribed was created")
	}
	creates := rec.actions("CreateQueue")
	if len(creates) != 2 {
		t.Fatalf("%d CreateQueue calls, want 2", len(creates))
	}
	for _, c := range creates {
		attrs := map[string]string{}
		for i := 1; c.Form.Get(fmt.Sprintf("Attribute.%d.Name", i)) != ""; i++ {
			attrs[c.Form.Get(fmt.Sprintf("Attribute.%d.Name", i))] = c.Form.Get(fmt.Sprintf("Attribute.%d.Value", i))
		}
		if attrs["FifoQueue"] != "true" || attrs["ContentBasedDeduplication"] != "false" || len(attrs) != 2 {
			t.Errorf("CreateQueue %s attributes %v, want FifoQueue=true ContentBasedDeduplication=false", c.Form.Get("QueueName"), attrs)
		}
	}
}

// EVORELAY_SQS_MESSAGE_RETENTION is the retention of the queues the sink
// creates.
func TestCreatedQueuesKeepMessagesForTheRetention(t *testing.T) {
	s, rec := openSink(t, map[string]string{"message_retention": "6h"})
	inst := newInstance("retention")
	if _, err := s.Validate(waitCtx(t), inst, json.RawMessage(`{"enabled":true,"events":["CALL"]}`)); err != nil {
		t.Fatal(err)
	}
	creates := rec.actions("CreateQueue")
	if len(creates) != 1 {
		t.Fatalf("%d CreateQueue calls, want 1", len(creates))
	}
	attrs := map[string]string{}
	for i := 1; creates[0].Form.Get(fmt.Sprintf("Attribute.%d.Name", i)) != ""; i++ {
		attrs[creates[0].Form.Get(fmt.Sprintf("Attribute.%d.Name", i))] = creates[0].Form.Get(fmt.Sprintf("Attribute.%d.Value", i))
	}
	if attrs["MessageRetentionPeriod"] != "21600" || attrs["FifoQueue"] != "true" {
		t.Fatalf("CreateQueue attributes %v, want MessageRetentionPeriod=21600 (6h) on a FIFO queue", attrs)
	}
	if !queueExists(t, inst+"_call.fifo") {
		t.Fatalf("queue not created")
	}
}

func TestDeliverBodyAndAttributes(t *testing.T) {
	for _, naming := range []events.Naming{events.NamingSeed, events.NamingEvolution} {
		t.Run(naming.String(), func(t *testing.T) {
			s, rec := openSink(t, nil, naming)
			inst := newInstance("body")
			data := `{"key":{"remoteJid":"5511977776666@s.whatsapp.net","fromMe":false,"id":"3EB0"},"message":{"conversation":"<b>Olá</b> & 🚚"}}`
			batch := []sdk.Delivery{
				delivery("b1", inst, "MESSAGES_UPSERT", data, subscribed),
				delivery("b2", inst, "GROUP_PARTICIPANTS_UPDATE", `{"id":"120363@g.us","action":"add"}`, subscribed),
			}
			a := deliver(t, s, batch)
			for _, d := range batch {
				if got := a.outcome(d.ID); got != "ok" {
					t.Fatalf("%s: %s", d.ID, got)
				}
			}
			upsert, participants := "MESSAGES_UPSERT", "GROUP_PARTICIPANTS_UPDATE"
			if naming == events.NamingEvolution {
				upsert, participants = "messages.upsert", "group-participants.update"
			}
			got := receiveAll(t, inst+"_messages_upsert.fifo")
			want := `{"event":"` + upsert + `","instance":"` + inst + `","data":` + data +
				`,"date_time":"2024-01-01T12:00:00.000Z","sender":"5511988880000@s.whatsapp.net","server_url":"https://engine.example.com","apikey":null}`
			if len(got) != 1 || got[0].Body != want {
				t.Fatalf("messages_upsert queue holds %+v\nwant one message with body\n%s", got, want)
			}
			got = receiveAll(t, inst+"_group_participants_update.fifo")
			if len(got) != 1 || !strings.HasPrefix(got[0].Body, `{"event":"`+participants+`","instance":"`+inst+`","data":{"id":"120363@g.us","action":"add"}`) {
				t.Fatalf("group_participants_update queue holds %+v", got)
			}

			// goaws drops the attributes of batched messages; assert them
			// on the wire, with the FIFO fields.
			var entries []map[string]string
			for _, c := range rec.actions("SendMessageBatch") {
				entries = append(entries, batchEntries(c)...)
			}
			if len(entries) != 2 {
				t.Fatalf("%d entries sent, want 2", len(entries))
			}
			wantEvents := map[string]string{"b1": upsert, "b2": participants}
			for _, e := range entries {
				id := e["MessageDeduplicationId"]
				if e["attr.event"] != wantEvents[id] || e["attr.instance"] != inst ||
					e["attrType.event"] != "String" || e["attrType.instance"] != "String" {
					t.Errorf("entry %s attributes: event=%q (%s) instance=%q (%s), want event=%q instance=%q (String)",
						id, e["attr.event"], e["attrType.event"], e["attr.instance"], e["attrType.instance"], wantEvents[id], inst)
				}
				if e["MessageGroupId"] != inst {
					t.Errorf("entry %s MessageGroupId %q, want %q", id, e["MessageGroupId"], inst)
				}
			}
		})
	}
}

func TestDeliverBatches(t *testing.T) {
	s, rec := openSink(t, nil)
	t.Run("ten entries a call", func(t *testing.T) {
		rec.reset()
		inst := newInstance("batch")
		var batch []sdk.Delivery
		for i := range 25 {
			batch = append(batch, delivery(fmt.Sprintf("n%02d", i), inst, "MESSAGES_UPSERT", fmt.Sprintf(`{"n":%d}`, i), subscribed))
		}
		a := deliver(t, s, batch)
		for _, d := range batch {
			if got := a.outcome(d.ID); got != "ok" {
				t.Fatalf("%s: %s", d.ID, got)
			}
		}
		assertCallSizes(t, rec, []int{10, 10, 5})
		got := receiveAll(t, inst+"_messages_upsert.fifo")
		if len(got) != 25 {
			t.Fatalf("%d messages in the queue, want 25", len(got))
		}
		for i, m := range got {
			if !strings.Contains(m.Body, fmt.Sprintf(`"data":{"n":%d}`, i)) {
				t.Fatalf("message %d out of order: %s", i, m.Body)
			}
		}
	})
	t.Run("256 KiB a call", func(t *testing.T) {
		rec.reset()
		inst := newInstance("big")
		var batch []sdk.Delivery
		for i := range 5 {
			data := fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 100<<10))
			batch = append(batch, delivery(fmt.Sprintf("k%d", i), inst, "MESSAGES_UPSERT", data, subscribed))
		}
		a := deliver(t, s, batch)
		for _, d := range batch {
			if got := a.outcome(d.ID); got != "ok" {
				t.Fatalf("%s: %s", d.ID, got)
			}
		}
		calls := assertCallSizes(t, rec, []int{2, 2, 1})
		for _, c := range calls {
			total := 0
			for _, e := range batchEntries(c) {
				total += len(e["MessageBody"])
			}
			if total > 256<<10 {
				t.Errorf("a call carried %d bytes of bodies, over 256 KiB", total)
			}
		}
		if got := receiveAll(t, inst+"_messages_upsert.fifo"); len(got) != 5 {
			t.Fatalf("%d messages in the queue, want 5", len(got))
		}
	})
}

// assertCallSizes checks the entries of each SendMessageBatch call.
func assertCallSizes(t *testing.T, rec *recorder, want []int) []call {
	t.Helper()
	calls := rec.actions("SendMessageBatch")
	var got []int
	for _, c := range calls {
		got = append(got, len(batchEntries(c)))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("SendMessageBatch calls carried %v entries, want %v", got, want)
	}
	return calls
}

func TestOversizeRejected(t *testing.T) {
	s, rec := openSink(t, nil)
	inst := newInstance("over")
	// The message SQS counts is the body plus the attributes; make one
	// exactly at the limit and one a byte over.
	at := delivery("at", inst, "MESSAGES_UPSERT", `{"pad":""}`, subscribed)
	e, err := s.newEntry(at)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("y", 256<<10-e.size)
	at = delivery("at", inst, "MESSAGES_UPSERT", `{"pad":"`+pad+`"}`, subscribed)
	over := delivery("over", inst, "MESSAGES_UPSERT", `{"pad":"`+pad+`y"}`, subscribed)

	a := deliver(t, s, []sdk.Delivery{at, over})
	if got := a.outcome("at"); got != "ok" {
		t.Errorf("a message of exactly 256 KiB: %s, want ok", got)
	}
	got := a.outcome("over")
	if !strings.HasPrefix(got, "reject: ") || !strings.Contains(got, "262145 bytes") || !strings.Contains(got, "at most 262144") {
		t.Errorf("a message one byte over 256 KiB: %s, want reject saying its size and the limit", got)
	}
	for _, c := range rec.actions("SendMessageBatch") {
		for _, e := range batchEntries(c) {
			if e["MessageDeduplicationId"] == "over" {
				t.Errorf("the oversize message was sent")
			}
		}
	}
	msgs := receiveAll(t, inst+"_messages_upsert.fifo")
	if len(msgs) != 1 || !strings.Contains(msgs[0].Body, `"data":{"pad":"`+pad+`"}`) {
		t.Errorf("queue holds %d messages, want only the one at the limit, whole", len(msgs))
	}
}

// failEntries injects per-entry failures into SendMessageBatch, the one
// thing goaws never does: the entries whose MessageDeduplicationId is in
// sender (SenderFault) or server are taken out of the request that goes
// on to goaws, and reported as failed in its response.
func failEntries(sender, server map[string]bool) func(call, *http.Request, http.RoundTripper) (*http.Response, error) {
	return func(c call, req *http.Request, next http.RoundTripper) (*http.Response, error) {
		if c.Action != "SendMessageBatch" {
			return nil, nil
		}
		kept := url.Values{}
		var failed strings.Builder
		n := 0
		for i, e := range batchEntries(c) {
			id, dedup := e["Id"], e["MessageDeduplicationId"]
			if sender[dedup] || server[dedup] {
				fmt.Fprintf(&failed, "<BatchResultErrorEntry><Id>%s</Id><SenderFault>%t</SenderFault><Code>%s</Code><Message>injected</Message></BatchResultErrorEntry>",
					id, sender[dedup], map[bool]string{true: "InvalidParameterValue", false: "InternalError"}[sender[dedup]])
				continue
			}
			n++
			prefix := fmt.Sprintf("SendMessageBatchRequestEntry.%d.", i+1)
			for k, v := range c.Form {
				if rest, ok := strings.CutPrefix(k, prefix); ok {
					kept[fmt.Sprintf("SendMessageBatchRequestEntry.%d.%s", n, rest)] = v
				}
			}
		}
		for k, v := range c.Form {
			if !strings.HasPrefix(k, "SendMessageBatchRequestEntry.") {
				kept[k] = v
			}
		}
		body := `<SendMessageBatchResponse><SendMessageBatchResult></SendMessageBatchResult></SendMessageBatchResponse>`
		if n > 0 {
			fwd := req.Clone(req.Context())
			enc := kept.Encode()
			fwd.Body = io.NopCloser(strings.NewReader(enc))
			fwd.ContentLength = int64(len(enc))
			fwd.Header.Set("Content-Length", strconv.Itoa(len(enc)))
			resp, err := next.RoundTrip(fwd)
			if err != nil {
				return nil, err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
		body = strings.Replace(body, "</SendMessageBatchResult>", failed.String()+"</SendMessageBatchResult>", 1)
		return xmlResponse(req, http.StatusOK, body), nil
	}
}

func TestPerEntryFailures(t *testing.T) {
	s, rec := openSink(t, nil)
	rec.alter = failEntries(map[string]bool{"bad": true}, map[string]bool{"flaky": true})
	inst := newInstance("entry")
	batch := []sdk.Delivery{
		delivery("ok1", inst, "MESSAGES_UPSERT", `{"n":1}`, subscribed),
		delivery("bad", inst, "MESSAGES_UPSERT", `{"n":2}`, subscribed),
		delivery("flaky", inst, "MESSAGES_UPSERT", `{"n":3}`, subscribed),
		delivery("ok2", inst, "MESSAGES_UPSERT", `{"n":4}`, subscribed),
	}
	a := deliver(t, s, batch)
	if got := a.outcome("ok1") + " " + a.outcome("ok2"); got != "ok ok" {
		t.Errorf("the entries that succeeded: %s", got)
	}
	if got := a.outcome("bad"); !strings.HasPrefix(got, "reject: ") || !strings.Contains(got, "InvalidParameterValue: injected") {
		t.Errorf("sender fault: %s, want reject with the code and message", got)
	}
	if got := a.outcome("flaky"); !strings.HasPrefix(got, "retry: ") || !strings.Contains(got, "InternalError: injected") {
		t.Errorf("server fault: %s, want retry with the code and message", got)
	}
	msgs := receiveAll(t, inst+"_messages_upsert.fifo")
	if len(msgs) != 2 || !strings.Contains(msgs[0].Body, `{"n":1}`) || !strings.Contains(msgs[1].Body, `{"n":4}`) {
		t.Errorf("queue holds %+v, want the two that succeeded", msgs)
	}
}

func TestWholeCallFailureRetriesAll(t *testing.T) {
	s, rec := openSink(t, nil)
	rec.alter = func(c call, req *http.Request, _ http.RoundTripper) (*http.Response, error) {
		if c.Action != "SendMessageBatch" {
			return nil, nil
		}
		return xmlResponse(req, http.StatusServiceUnavailable, `<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>injected outage</Message></Error><RequestId>x</RequestId></ErrorResponse>`), nil
	}
	inst := newInstance("whole")
	batch := []sdk.Delivery{
		delivery("w1", inst, "MESSAGES_UPSERT", `{}`, subscribed),
		delivery("w2", inst, "MESSAGES_UPSERT", `{}`, subscribed),
	}
	a := deliver(t, s, batch)
	for _, d := range batch {
		if got := a.outcome(d.ID); !strings.HasPrefix(got, "retry: ") || !strings.Contains(got, "injected outage") {
			t.Errorf("%s: %s, want retry with the error", d.ID, got)
		}
	}
	if msgs := receiveAll(t, inst+"_messages_upsert.fifo"); len(msgs) != 0 {
		t.Errorf("queue holds %d messages, want none", len(msgs))
	}
}

func TestQueueCreatedOnFirstUseAndAgainWhenDeleted(t *testing.T) {
	s, rec := openSink(t, nil)
	inst := newInstance("first")
	q := inst + "_call.fifo"
	if a := deliver(t, s, []sdk.Delivery{delivery("f1", inst, "CALL", `{"n":1}`, subscribed)}); a.outcome("f1") != "ok" {
		t.Fatalf("f1: %s", a.outcome("f1"))
	}
	if len(rec.actions("CreateQueue")) != 1 {
		t.Errorf("%d CreateQueue calls, want 1", len(rec.actions("CreateQueue")))
	}
	// The URL is cached: a second delivery looks nothing up.
	rec.reset()
	if a := deliver(t, s, []sdk.Delivery{delivery("f2", inst, "CALL", `{"n":2}`, subscribed)}); a.outcome("f2") != "ok" {
		t.Fatalf("f2: %s", a.outcome("f2"))
	}
	if n := len(rec.actions("GetQueueUrl")) + len(rec.actions("CreateQueue")); n != 0 {
		t.Errorf("%d look-ups for a cached queue, want 0", n)
	}
	if msgs := receiveAll(t, q); len(msgs) != 2 {
		t.Fatalf("queue holds %d messages, want 2", len(msgs))
	}

	// Someone deletes the queue: the next delivery creates it again.
	c := consumer(t)
	u, err := c.GetQueueUrl(waitCtx(t), &sqs.GetQueueUrlInput{QueueName: aws.String(q)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteQueue(waitCtx(t), &sqs.DeleteQueueInput{QueueUrl: u.QueueUrl}); err != nil {
		t.Fatal(err)
	}
	if queueExists(t, q) {
		t.Fatal("queue still exists after DeleteQueue")
	}
	if a := deliver(t, s, []sdk.Delivery{delivery("f3", inst, "CALL", `{"n":3}`, subscribed)}); a.outcome("f3") != "ok" {
		t.Fatalf("f3 after the queue was deleted: %s", a.outcome("f3"))
	}
	msgs := receiveAll(t, q)
	if len(msgs) != 1 || !strings.Contains(msgs[0].Body, `{"n":3}`) {
		t.Errorf("recreated queue holds %+v, want f3", msgs)
	}
}

func TestRetryIsDeduplicated(t *testing.T) {
	s, _ := openSink(t, nil)
	inst := newInstance("dedup")
	d := delivery("same-id", inst, "MESSAGES_UPSERT", `{"n":1}`, subscribed)
	if a := deliver(t, s, []sdk.Delivery{d}); a.outcome(d.ID) != "ok" {
		t.Fatal(a.outcome(d.ID))
	}
	d.Attempt = 2
	if a := deliver(t, s, []sdk.Delivery{d}); a.outcome(d.ID) != "ok" {
		t.Fatal(a.outcome(d.ID))
	}
	if msgs := receiveAll(t, inst+"_messages_upsert.fifo"); len(msgs) != 1 {
		t.Errorf("queue holds %d messages after a retry with the same id, want 1", len(msgs))
	}
}

func TestGroupByChat(t *testing.T) {
	s, rec := openSink(t, map[string]string{"group_by": "chat"})
	inst := newInstance("chat")
	batch := []sdk.Delivery{
		delivery("c1", inst, "MESSAGES_UPSERT", `{"key":{"remoteJid":"5511977776666@s.whatsapp.net","id":"A"}}`, subscribed),
		delivery("c2", inst, "MESSAGES_UPSERT", `{"key":{"remoteJid":"120363025246125486@g.us","id":"B"}}`, subscribed),
		delivery("c3", inst, "MESSAGES_UPSERT", `{"state":"open"}`, subscribed),
		// messages.update has its chat at data.remoteJid, and goes with it.
		delivery("c4", inst, "MESSAGES_UPDATE", `{"key":{"id":"A","fromMe":true},"keyId":"A","remoteJid":"5511977776666@s.whatsapp.net","status":"READ"}`, subscribed),
	}
	a := deliver(t, s, batch)
	want := map[string]string{"c1": "5511977776666@s.whatsapp.net", "c2": "120363025246125486@g.us", "c3": inst, "c4": "5511977776666@s.whatsapp.net"}
	n := 0
	for _, c := range rec.actions("SendMessageBatch") {
		for _, e := range batchEntries(c) {
			n++
			if id := e["MessageDeduplicationId"]; e["MessageGroupId"] != want[id] {
				t.Errorf("%s: MessageGroupId %q, want %q", id, e["MessageGroupId"], want[id])
			}
		}
	}
	if n != 4 {
		t.Errorf("%d entries sent, want 4", n)
	}
	for id := range want {
		if a.outcome(id) != "ok" {
			t.Errorf("%s: %s", id, a.outcome(id))
		}
	}
	if msgs := receiveAll(t, inst+"_messages_upsert.fifo"); len(msgs) != 3 {
		t.Errorf("messages.upsert queue holds %d messages, want 3", len(msgs))
	}
	if msgs := receiveAll(t, inst+"_messages_update.fifo"); len(msgs) != 1 {
		t.Errorf("messages.update queue holds %d messages, want 1", len(msgs))
	}
}

func TestGlobalQueues(t *testing.T) {
	t.Run("per event", func(t *testing.T) {
		prefix := newInstance("glob")
		s, _ := openSink(t, map[string]string{"global": "true", "global_prefix": prefix})
		one, two := newInstance("g"), newInstance("g")
		if _, err := s.Validate(waitCtx(t), one, json.RawMessage(`{"enabled":true,"events":["CALL"]}`)); err != nil {
			t.Fatal(err)
		}
		if !queueExists(t, prefix+"_call.fifo") || queueExists(t, one+"_call.fifo") {
			t.Fatalf("Validate in global mode must create %s_call.fifo and no per-instance queue", prefix)
		}
		a := deliver(t, s, []sdk.Delivery{
			delivery("g1", one, "CALL", `{"n":1}`, subscribed),
			delivery("g2", two, "CALL", `{"n":2}`, subscribed),
		})
		if a.outcome("g1")+a.outcome("g2") != "okok" {
			t.Fatalf("g1: %s, g2: %s", a.outcome("g1"), a.outcome("g2"))
		}
		msgs := receiveAll(t, prefix+"_call.fifo")
		if len(msgs) != 2 || !strings.Contains(msgs[0].Body, `"instance":"`+one+`"`) || !strings.Contains(msgs[1].Body, `"instance":"`+two+`"`) {
			t.Errorf("global queue holds %+v, want both instances' events", msgs)
		}
	})
	t.Run("single queue", func(t *testing.T) {
		single := newInstance("single")
		s, _ := openSink(t, map[string]string{"global": "true", "global_queue": single})
		inst := newInstance("g")
		a := deliver(t, s, []sdk.Delivery{
			delivery("s1", inst, "CALL", `{"n":1}`, subscribed),
			delivery("s2", inst, "MESSAGES_UPSERT", `{"n":2}`, subscribed),
		})
		if a.outcome("s1")+a.outcome("s2") != "okok" {
			t.Fatalf("s1: %s, s2: %s", a.outcome("s1"), a.outcome("s2"))
		}
		if msgs := receiveAll(t, single+".fifo"); len(msgs) != 2 {
			t.Errorf("single queue holds %d messages, want 2", len(msgs))
		}
	})
}

// xmlResponse is an SQS query-protocol answer made by a test transport.
func xmlResponse(req *http.Request, status int, body string) *http.Response {
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/xml"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

func TestValidateWhenSQSRefusesOrIsDown(t *testing.T) {
	settings := json.RawMessage(`{"enabled":true,"events":["CALL"]}`)
	t.Run("refused", func(t *testing.T) {
		s, rec := openSink(t, nil)
		rec.alter = func(c call, req *http.Request, _ http.RoundTripper) (*http.Response, error) {
			if c.Action != "CreateQueue" {
				return nil, nil
			}
			return xmlResponse(req, http.StatusForbidden, `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sqs:CreateQueue</Message></Error><RequestId>x</RequestId></ErrorResponse>`), nil
		}
		_, err := s.Validate(waitCtx(t), newInstance("deny"), settings)
		sinktest.FieldError(t, err, "enabled", "not authorized to perform sqs:CreateQueue")
	})
	t.Run("down", func(t *testing.T) {
		s, rec := openSink(t, nil)
		down := true
		var mu sync.Mutex
		rec.alter = func(c call, req *http.Request, _ http.RoundTripper) (*http.Response, error) {
			mu.Lock()
			defer mu.Unlock()
			if !down {
				return nil, nil
			}
			return xmlResponse(req, http.StatusServiceUnavailable, `<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>down</Message></Error><RequestId>x</RequestId></ErrorResponse>`), nil
		}
		inst := newInstance("down")
		out, err := s.Validate(waitCtx(t), inst, settings)
		if err != nil || string(out) != string(settings) {
			t.Fatalf("Validate while SQS is down = %s, %v; want the settings accepted", out, err)
		}
		if queueExists(t, inst+"_call.fifo") {
			t.Fatal("queue exists although SQS was down")
		}
		a := deliver(t, s, []sdk.Delivery{delivery("d1", inst, "CALL", `{}`, string(settings))})
		if got := a.outcome("d1"); !strings.HasPrefix(got, "retry: ") {
			t.Fatalf("delivery while SQS is down: %s, want retry", got)
		}
		mu.Lock()
		down = false
		mu.Unlock()
		if a := deliver(t, s, []sdk.Delivery{delivery("d1", inst, "CALL", `{}`, string(settings))}); a.outcome("d1") != "ok" {
			t.Fatalf("delivery once SQS is back: %s", a.outcome("d1"))
		}
		if msgs := receiveAll(t, inst+"_call.fifo"); len(msgs) != 1 {
			t.Errorf("queue holds %d messages, want 1", len(msgs))
		}
	})
}

// TestSDKHTTPClient runs the sink as it runs in production, on the HTTP
// client the AWS SDK builds, not the tests' recorder.
func TestSDKHTTPClient(t *testing.T) {
	before := goleak.IgnoreCurrent()
	s := New()
	if err := s.Open(waitCtx(t), sdk.Config{Settings: processEnv(nil)}); err != nil {
		t.Fatal(err)
	}
	inst := newInstance("prod")
	a := deliver(t, s, []sdk.Delivery{delivery("p1", inst, "CALL", `{"n":1}`, subscribed)})
	if a.outcome("p1") != "ok" {
		t.Fatalf("p1: %s", a.outcome("p1"))
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Close closed the connections: no goroutine of theirs is left.
	goleak.VerifyNone(t, before)
	if msgs := receiveAll(t, inst+"_call.fifo"); len(msgs) != 1 {
		t.Errorf("queue holds %d messages, want 1", len(msgs))
	}
}
