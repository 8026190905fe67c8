package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

const (
	sinkName    = "rabbitmq"
	sinkVersion = "0.1.0"
	uriForm     = "amqp://user:pass@host:5672/vhost"
	notSetHint  = "not configured: set EVORELAY_RABBITMQ_URI (" + uriForm + ")"
)

// instanceSettings are one instance's settings: enabled and events, as the
// host normalized them, and the broker-side limits of its queues
// (queues.go).
type instanceSettings struct {
	sdk.Subscription
	queueLimits
}

// processSettings are the EVORELAY_RABBITMQ_* variables.
type processSettings struct {
	uri            string        // uri: required to deliver
	addr           string        // uri without credentials, for messages
	global         global        // global, global_exchange, global_prefix
	queueType      string        // queue_type: quorum (default) | classic
	heartbeat      time.Duration // heartbeat: default 10s
	maxInFlight    int           // max_in_flight: unconfirmed publishes, default 1000
	confirmTimeout time.Duration // confirm_timeout: default 30s
	reconnectMax   time.Duration // reconnect_max_delay: default 30s
	tls            *tls.Config   // tls_ca: the CA that signed an amqps:// broker's certificate
}

// parseProcessSettings reads the process settings and warns about those
// it does not know; its errors name the variable and say what is expected.
func parseProcessSettings(cfg sdk.Config) (processSettings, error) {
	ps := processSettings{
		global:         global{exchange: "evolution_exchange"},
		queueType:      "quorum",
		heartbeat:      10 * time.Second,
		maxInFlight:    1000,
		confirmTimeout: 30 * time.Second,
		reconnectMax:   30 * time.Second,
	}
	err := cfg.ReadSettings(sdk.Settings{
		"uri": func(v string) error {
			u, err := amqp.ParseURI(v)
			if err != nil {
				msg := err.Error()
				var ue *url.Error
				if errors.As(err, &ue) { // it repeats the URI, password included
					msg = strings.Replace(msg, ue.Error(), ue.Err.Error(), 1)
				}
				return fmt.Errorf("%s; expected %s", msg, uriForm)
			}
			ps.uri = v
			ps.addr = fmt.Sprintf("%s://%s:%d/%s", u.Scheme, u.Host, u.Port, strings.TrimPrefix(u.Vhost, "/"))
			return nil
		},
		"global":          sdk.Bool(&ps.global.on),
		"global_exchange": sdk.Text(&ps.global.exchange),
		"global_prefix":   sdk.Text(&ps.global.prefix),
		"queue_type": func(v string) error {
			switch v = strings.ToLower(v); v {
			case "quorum", "classic":
				ps.queueType = v
				return nil
			}
			return fmt.Errorf("%q; expected quorum or classic", v)
		},
		"heartbeat":           sdk.Duration(&ps.heartbeat),
		"max_in_flight":       sdk.Count(&ps.maxInFlight, 1, 1<<20),
		"confirm_timeout":     sdk.Duration(&ps.confirmTimeout),
		"reconnect_max_delay": sdk.Duration(&ps.reconnectMax),
		"tls_ca": func(v string) error {
			pool, err := sdk.LoadCA(v)
			if err != nil {
				return err
			}
			ps.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			return nil
		},
	}, "EVORELAY_RABBITMQ_")
	return ps, err
}

// Sink publishes events to RabbitMQ with publisher confirms.
type Sink struct {
	sdk.UnimplementedSink

	cfg    processSettings
	naming events.Naming
	log    hclog.Logger
	link   *link // nil while EVORELAY_RABBITMQ_URI is not set
}

// New returns a sink to Open.
func New() *Sink { return &Sink{log: hclog.NewNullLogger()} }

// Describe names the sink.
func (s *Sink) Describe() sdk.Description {
	return sdk.Description{Name: sinkName, Version: sinkVersion}
}

// Validate keeps the settings as the host normalized them. Enabled
// settings need EVORELAY_RABBITMQ_URI; when the broker is reachable, the
// instance's exchange and queues are declared before Validate returns, so
// they exist once the set call answers.
func (s *Sink) Validate(_ context.Context, instance string, raw json.RawMessage) (json.RawMessage, error) {
	st, err := sdk.ParseSettings[instanceSettings](raw)
	if err != nil {
		return nil, err
	}
	if err := st.queueLimits.check(s.cfg.global.on); err != nil {
		return nil, err
	}
	raw, err = json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if !st.Enabled {
		return raw, nil
	}
	if s.link == nil {
		return nil, sdk.FieldErrors{{Field: "enabled", Message: "RabbitMQ is " + notSetHint}}
	}
	var fe sdk.FieldErrors
	if instance == "" || len(instance) > 200 {
		fe.Add("instance", "the instance name must be 1 to 200 bytes: it names a RabbitMQ exchange and its queues")
	} else if !s.cfg.global.on && strings.HasPrefix(instance, "amq.") {
		fe.Add("instance", "%q cannot name a RabbitMQ exchange: the amq. prefix is reserved", instance)
	}
	if err := fe.Err(); err != nil {
		return nil, err
	}
	if err := s.link.declareFor(instance, st.Subscribed(), st.queueLimits); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Server && ae.Code == amqp.PreconditionFailed && st.queueLimits.set() {
			return nil, sdk.FieldErrors{{Field: "queue_ttl", Message: redeclareHint(err)}}
		}
		if errors.As(err, &ae) && ae.Server && refusal(ae.Code) {
			return nil, sdk.FieldErrors{{Field: "enabled", Message: "RabbitMQ refused the instance's exchange or queues: " + err.Error()}}
		}
		s.log.Warn("topology not declared now; it will be on first publish", "instance", instance, "sink", sinkName, "error", err)
	}
	return raw, nil
}

// refusal reports whether an AMQP reply code means the broker refused the
// request for a reason a client must fix (as opposed to going away).
func refusal(code int) bool {
	switch code {
	case amqp.AccessRefused, amqp.NotFound, amqp.ResourceLocked, amqp.PreconditionFailed, amqp.NotAllowed:
		return true
	}
	return false
}

// Open reads the process settings and starts connecting. A missing URI is
// not an error (the plugin stays up and Health says what to set); a bad one
// is. Open waits for the first connection attempt, not for success: a
// broker that is down is retried forever in the background.
func (s *Sink) Open(ctx context.Context, cfg sdk.Config) error {
	ps, err := parseProcessSettings(cfg)
	if err != nil {
		return err
	}
	s.cfg, s.naming, s.log = ps, cfg.Naming, cfg.Log()
	if ps.uri == "" {
		s.log.Warn("RabbitMQ is "+notSetHint, "sink", sinkName)
		return nil
	}
	s.link = startLink(ps, s.log)
	select {
	case <-s.link.firstTry:
	case <-ctx.Done():
	}
	return nil
}

// Deliver publishes the batch and acknowledges each delivery once the
// broker confirmed it. While the broker is down or blocks publishing, every
// delivery is answered with a retryable error at once.
func (s *Sink) Deliver(ctx context.Context, batch []sdk.Delivery, acks sdk.Acks) error {
	if s.link == nil {
		err := errors.New("rabbitmq: " + notSetHint)
		for _, d := range batch {
			acks.Done(d.ID, err)
		}
		return nil
	}
	sess, err := s.link.ready()
	if err != nil {
		for _, d := range batch {
			acks.Done(d.ID, err)
		}
		return nil
	}
	type inflight struct {
		id string
		r  route
		dc *amqp.DeferredConfirmation
	}
	var waiting []inflight
	settle := func() {
		w := waiting[0]
		waiting = waiting[1:]
		s.link.release()
		acks.Done(w.id, sess.outcome(w.id, w.dc.Acked(), w.r))
	}
	for i := range batch {
		d := &batch[i]
		msg, r := s.publishing(d)
		st, err := sdk.SettingsOf[instanceSettings](*d)
		if err == nil {
			err = sess.ensure(r, st.args(s.cfg.queueType), false)
		}
		// Take a slot for one more unconfirmed publish. While every slot is
		// taken, settle this batch's oldest publish as soon as it is
		// confirmed: slots are freed by the batches that hold them, so
		// batches waiting on each other cannot deadlock.
		for err == nil {
			var oldest <-chan struct{}
			if len(waiting) > 0 {
				oldest = waiting[0].dc.Done()
			}
			acquired := false
			select {
			case s.link.slots <- struct{}{}:
				acquired = true
			case <-oldest:
				settle()
			case <-sess.dead:
				err = errors.New("rabbitmq: connection lost")
			case <-ctx.Done():
				err = ctx.Err()
			}
			if acquired {
				break
			}
		}
		if err != nil {
			s.fail(d, err)
			acks.Done(d.ID, err)
			continue
		}
		dc, err := sess.pub.PublishWithDeferredConfirm(r.exchange, r.key, true, false, msg)
		if err != nil {
			s.link.release()
			err = fmt.Errorf("rabbitmq: publish: %w", err)
			s.fail(d, err)
			acks.Done(d.ID, err)
			continue
		}
		waiting = append(waiting, inflight{id: d.ID, r: r, dc: dc})
	}
	// Everything is published, in order, on the session's one channel:
	// the instance's next batch may publish while these wait for their
	// confirms.
	sdk.Sent(acks)

	timeout := time.NewTimer(s.cfg.confirmTimeout)
	defer timeout.Stop()
	for len(waiting) > 0 {
		var abandon error
		select {
		case <-waiting[0].dc.Done():
			settle()
			continue
		case <-ctx.Done():
			abandon = fmt.Errorf("rabbitmq: gave up waiting for the broker's confirm: %w", ctx.Err())
		case <-timeout.C:
			abandon = fmt.Errorf("rabbitmq: the broker did not confirm within %s (EVORELAY_RABBITMQ_CONFIRM_TIMEOUT)", s.cfg.confirmTimeout)
		}
		for _, w := range waiting {
			s.link.release()
			acks.Done(w.id, abandon)
		}
		break
	}
	return nil
}

// publishing builds the message for one delivery and where it goes.
func (s *Sink) publishing(d *sdk.Delivery) (amqp.Publishing, route) {
	name := s.naming.Name(d.Event)
	msg := amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    d.ID,
		Timestamp:    time.Now(),
		AppId:        "evorelay",
		Headers:      amqp.Table{"instance": d.Instance, "event": name},
		Body:         d.Envelope,
	}
	return msg, routeFor(d.Instance, events.Wire(d.Event), s.cfg.global)
}

func (s *Sink) fail(d *sdk.Delivery, err error) {
	s.log.Debug("delivery failed", "instance", d.Instance, "sink", sinkName, "event", d.Event,
		"delivery_id", d.ID, "attempt", d.Attempt, "error", err)
}

// Health says whether the sink can publish now, and why not.
func (s *Sink) Health(context.Context) sdk.Health {
	if s.link == nil {
		return sdk.Health{Detail: notSetHint}
	}
	return s.link.health()
}

// Close stops reconnecting and closes the connection. Deliveries still
// waiting for confirms are answered with retryable errors.
func (s *Sink) Close(ctx context.Context) error {
	if s.link == nil {
		return nil
	}
	return s.link.close(ctx)
}
