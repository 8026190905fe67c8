package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

const (
	sinkName    = "nats"
	sinkVersion = "0.1.0"
	urlForm     = "nats://host:4222 (several separated by commas)"
	notSetHint  = "not configured: set EVORELAY_NATS_URL (" + urlForm + ")"
)

// instanceSettings are one instance's settings: enabled and events, as
// the host normalized them, and mode, which Validate writes (a client may
// send back what find answered): how the instance's subjects were published
// when the settings were set, through JetStream (a stream covers them),
// core NATS, or some of each (mixed).
type instanceSettings struct {
	sdk.Subscription
	Mode string `json:"mode,omitempty"`
}

// processSettings are the EVORELAY_NATS_* variables.
type processSettings struct {
	url      string // url: required to deliver; comma-separated servers
	addr     string // url without credentials, for messages
	creds    string // creds: a .creds file (JWT and nkey seed)
	nkey     string // nkey: an nkey seed file
	token    string // token
	user     string // user
	password string // password
	tlsCA    string // tls_ca: CA file to verify the server
	tlsCert  string // tls_cert and tls_key: client certificate
	tlsKey   string
	prefix   string // subject_prefix: global mode when set

	maxInFlight  int           // max_in_flight: unacknowledged JetStream publishes, default 1000
	ackTimeout   time.Duration // ack_timeout: wait for a PubAck, default 30s
	flushTimeout time.Duration // flush_timeout: wait for the server to take a batch's core publishes, default 10s
	streamTTL    time.Duration // stream_cache_ttl: how long a subject's stream lookup is kept, default 5s
	reconnectMax time.Duration // reconnect_max_delay: default 30s
	pingInterval time.Duration // ping_interval: default 20s
}

// parseProcessSettings reads the process settings and warns about those
// it does not know; its errors name the variable and say what is expected.
func parseProcessSettings(cfg sdk.Config) (processSettings, error) {
	ps := processSettings{
		maxInFlight:  1000,
		ackTimeout:   30 * time.Second,
		flushTimeout: 10 * time.Second,
		streamTTL:    5 * time.Second,
		reconnectMax: 30 * time.Second,
		pingInterval: 20 * time.Second,
	}
	err := cfg.ReadSettings(sdk.Settings{
		"url": func(v string) (err error) {
			ps.url = v
			ps.addr, err = serverAddrs(v)
			return err
		},
		"creds":    file(&ps.creds),
		"nkey":     file(&ps.nkey),
		"tls_ca":   file(&ps.tlsCA),
		"tls_cert": file(&ps.tlsCert),
		"tls_key":  file(&ps.tlsKey),
		"token":    sdk.Text(&ps.token),
		"user":     sdk.Text(&ps.user),
		// As given: a password may begin or end with a space.
		"password": func(string) error { ps.password = cfg.Settings["password"]; return nil },
		"subject_prefix": func(v string) error {
			if why := subjectProblem(v); why != "" {
				return fmt.Errorf("%q %s; expected subject tokens such as evolution", v, why)
			}
			ps.prefix = v
			return nil
		},
		"max_in_flight":       sdk.Count(&ps.maxInFlight, 1, 1<<20),
		"ack_timeout":         sdk.Duration(&ps.ackTimeout),
		"flush_timeout":       sdk.Duration(&ps.flushTimeout),
		"stream_cache_ttl":    sdk.Duration(&ps.streamTTL),
		"reconnect_max_delay": sdk.Duration(&ps.reconnectMax),
		"ping_interval":       sdk.Duration(&ps.pingInterval),
	}, "EVORELAY_NATS_")
	if err != nil {
		return ps, err
	}
	if (ps.tlsCert == "") != (ps.tlsKey == "") {
		return ps, errors.New("EVORELAY_NATS_TLS_CERT and EVORELAY_NATS_TLS_KEY: set both or neither")
	}
	return ps, nil
}

// serverAddrs checks a comma-separated list of server URLs and returns it
// without credentials, for messages.
func serverAddrs(raw string) (string, error) {
	var shown []string
	for _, one := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(one))
		if err != nil {
			var ue *url.Error
			msg := err.Error()
			if errors.As(err, &ue) { // it repeats the URL, password included
				msg = ue.Err.Error()
			}
			return "", fmt.Errorf("%s; expected %s", msg, urlForm)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return "", fmt.Errorf("scheme %q; expected %s (or tls://, ws://, wss://)", u.Scheme, urlForm)
		}
		if u.Host == "" {
			return "", fmt.Errorf("no host; expected %s", urlForm)
		}
		shown = append(shown, u.Scheme+"://"+u.Host)
	}
	return strings.Join(shown, ","), nil
}

// file is the Setting for the name of a file that must exist.
func file(to *string) sdk.Setting {
	return func(v string) error {
		if _, err := os.Stat(v); err != nil {
			return err
		}
		*to = v
		return nil
	}
}

// Sink publishes events to NATS: through JetStream, acknowledged, when a
// stream covers the subject; as core NATS messages otherwise.
type Sink struct {
	sdk.UnimplementedSink

	cfg    processSettings
	naming events.Naming
	log    hclog.Logger

	nc      *nats.Conn // nil while EVORELAY_NATS_URL is not set
	js      jetstream.JetStream
	streams *streamCache
	slots   chan struct{} // one token per unacknowledged JetStream publish
	closing chan struct{}
	lastErr atomic.Pointer[error] // why the connection last went down

	viaJetStream, viaCore atomic.Int64
}

// New returns a sink to Open.
func New() *Sink { return &Sink{log: hclog.NewNullLogger(), closing: make(chan struct{})} }

// Describe names the sink.
func (s *Sink) Describe() sdk.Description {
	return sdk.Description{Name: sinkName, Version: sinkVersion}
}

// Validate keeps the settings as the host normalized them and adds the
// read-only mode: jetstream when a stream covers every subscribed event's
// subject, core when none does, mixed otherwise; it is left out when the
// server cannot be asked now. Enabled settings need EVORELAY_NATS_URL and
// an instance name that can stand in a subject.
func (s *Sink) Validate(ctx context.Context, instance string, raw json.RawMessage) (json.RawMessage, error) {
	st, err := sdk.ParseSettings[instanceSettings](raw)
	if err != nil {
		return nil, err
	}
	st.Mode = ""
	if st.Enabled {
		if s.nc == nil {
			return nil, sdk.FieldErrors{{Field: "enabled", Message: "NATS is " + notSetHint}}
		}
		if why := subjectProblem(instance); why != "" {
			return nil, sdk.FieldErrors{{Field: "instance", Message: fmt.Sprintf("%q cannot stand in a NATS subject: it %s", instance, why)}}
		}
		if mode, err := s.modeOf(ctx, instance, st.Subscribed()); err != nil {
			s.log.Warn("mode not known now", "instance", instance, "sink", sinkName, "error", err)
		} else {
			st.Mode = mode
		}
	}
	return json.Marshal(st)
}

// modeOf asks the server how each subscribed event's subject would be
// published now.
func (s *Sink) modeOf(ctx context.Context, instance string, subscribed []string) (string, error) {
	if s.nc.Status() != nats.CONNECTED {
		return "", errors.New("not connected")
	}
	if len(subscribed) == 0 {
		return "core", nil
	}
	covered := 0
	for _, ev := range subscribed {
		stream, err := s.streams.lookup(ctx, subjectFor(s.cfg.prefix, instance, events.Wire(ev)))
		if err != nil {
			return "", err
		}
		if stream != "" {
			covered++
		}
	}
	switch covered {
	case len(subscribed):
		return "jetstream", nil
	case 0:
		return "core", nil
	}
	return "mixed", nil
}

// Open reads the process settings and connects. A missing URL is not an
// error (the plugin stays up and Health says what to set); a bad one is.
// A server that cannot be reached is retried forever in the background.
func (s *Sink) Open(_ context.Context, cfg sdk.Config) error {
	ps, err := parseProcessSettings(cfg)
	if err != nil {
		return err
	}
	s.cfg, s.naming, s.log = ps, cfg.Naming, cfg.Log()
	if ps.url == "" {
		s.log.Warn("NATS is "+notSetHint, "sink", sinkName)
		return nil
	}
	// The cache exists before the connection whose reconnects clear it.
	s.streams = newStreamCache(ps.streamTTL)
	opts, err := s.connectOptions()
	if err != nil {
		return err
	}
	// The first attempt happens inside Connect; after a failure the
	// connection keeps trying in the background.
	nc, err := nats.Connect(ps.url, opts...)
	if err != nil {
		return fmt.Errorf("EVORELAY_NATS_URL: connect: %w", err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(2*ps.maxInFlight),
		jetstream.WithPublishAsyncTimeout(ps.ackTimeout))
	if err != nil {
		nc.Close()
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	s.nc, s.js, s.streams.js = nc, js, js
	s.slots = make(chan struct{}, ps.maxInFlight)
	if nc.Status() != nats.CONNECTED {
		s.log.Warn("not connected yet; retrying in the background", "sink", sinkName, "server", ps.addr, "error", nc.LastError())
	}
	return nil
}

// connectOptions are the connection's options: reconnect forever with a
// capped, jittered exponential backoff, and no reconnect buffer, so that a
// publish while disconnected fails (and is retried) instead of waiting in
// memory.
func (s *Sink) connectOptions() ([]nats.Option, error) {
	ps := s.cfg
	opts := []nats.Option{
		nats.Name("evorelay-sink-nats"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration { return sdk.Backoff(attempts, ps.reconnectMax) }),
		nats.PingInterval(ps.pingInterval),
		nats.ConnectHandler(func(nc *nats.Conn) {
			s.log.Info("connected", "sink", sinkName, "server", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // Close, not a failure
			}
			if err == nil {
				err = errors.New("connection closed")
			}
			s.lastErr.Store(&err)
			s.log.Warn("disconnected; reconnecting", "sink", sinkName, "server", ps.addr, "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.streams.clear() // the server may know other streams now
			s.log.Info("reconnected", "sink", sinkName, "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.log.Warn("asynchronous error", "sink", sinkName, "error", err)
		}),
	}
	if ps.creds != "" {
		opts = append(opts, nats.UserCredentials(ps.creds))
	}
	if ps.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(ps.nkey)
		if err != nil {
			return nil, fmt.Errorf("EVORELAY_NATS_NKEY: %w", err)
		}
		opts = append(opts, o)
	}
	if ps.token != "" {
		opts = append(opts, nats.Token(ps.token))
	}
	if ps.user != "" {
		opts = append(opts, nats.UserInfo(ps.user, ps.password))
	}
	if ps.tlsCA != "" {
		opts = append(opts, nats.RootCAs(ps.tlsCA))
	}
	if ps.tlsCert != "" {
		opts = append(opts, nats.ClientCert(ps.tlsCert, ps.tlsKey))
	}
	return opts, nil
}

// Deliver publishes the batch. A delivery whose subject a stream covers
// is acknowledged when JetStream's PubAck comes; the others are published
// as core messages and acknowledged when one flush of the batch succeeds.
// While disconnected, every delivery is answered with a retryable error at
// once.
func (s *Sink) Deliver(ctx context.Context, batch []sdk.Delivery, acks sdk.Acks) error {
	if err := s.ready(); err != nil {
		for _, d := range batch {
			acks.Done(d.ID, err)
		}
		return nil
	}
	type inflight struct {
		id, subject string
		ok          <-chan *jetstream.PubAck
		failed      <-chan error
	}
	var waiting []inflight
	settle := func(err error) {
		w := waiting[0]
		waiting = waiting[1:]
		<-s.slots
		if err != nil {
			s.streams.forget(w.subject) // the stream may be gone: look again
			err = fmt.Errorf("nats: jetstream publish to %s: %w", w.subject, err)
		} else {
			s.viaJetStream.Add(1)
		}
		acks.Done(w.id, err)
	}
	var core []*sdk.Delivery
	for i := range batch {
		d := &batch[i]
		msg := s.message(d)
		stream, err := s.streams.lookup(ctx, msg.Subject)
		if err == nil && stream == "" {
			if err = s.nc.PublishMsg(msg); err == nil {
				core = append(core, d)
				continue
			}
			err = fmt.Errorf("nats: publish to %s: %w", msg.Subject, err)
		}
		// Take a slot for one more unacknowledged publish. While every slot
		// is taken, settle this batch's oldest publish as soon as its
		// answer comes: slots are freed by the batches that hold them, so
		// batches waiting on each other cannot deadlock.
		for err == nil {
			var ok <-chan *jetstream.PubAck
			var failed <-chan error
			if len(waiting) > 0 {
				ok, failed = waiting[0].ok, waiting[0].failed
			}
			acquired := false
			select {
			case s.slots <- struct{}{}:
				acquired = true
			case <-ok:
				settle(nil)
			case e := <-failed:
				settle(e)
			case <-s.closing:
				err = errors.New("nats: the sink is closed")
			case <-ctx.Done():
				err = ctx.Err()
			}
			if acquired {
				break
			}
		}
		if err == nil {
			var paf jetstream.PubAckFuture
			if paf, err = s.js.PublishMsgAsync(msg); err == nil {
				waiting = append(waiting, inflight{id: d.ID, subject: msg.Subject, ok: paf.Ok(), failed: paf.Err()})
				continue
			}
			<-s.slots
			s.streams.forget(msg.Subject)
			err = fmt.Errorf("nats: jetstream publish to %s: %w", msg.Subject, err)
		}
		s.fail(d, err)
		acks.Done(d.ID, err)
	}
	// Everything is published, in order, on the one connection: the
	// instance's next batch may publish while these wait for their acks.
	sdk.Sent(acks)

	if len(core) > 0 {
		err := s.nc.FlushTimeout(s.cfg.flushTimeout)
		if err != nil {
			err = fmt.Errorf("nats: flush: %w", err)
		} else {
			s.viaCore.Add(int64(len(core)))
		}
		for _, d := range core {
			if err != nil {
				s.fail(d, err)
			}
			acks.Done(d.ID, err)
		}
	}

	for len(waiting) > 0 {
		var abandon error
		select {
		case <-waiting[0].ok:
			settle(nil)
			continue
		case e := <-waiting[0].failed:
			settle(e)
			continue
		case <-s.closing:
			abandon = errors.New("nats: the sink closed before the PubAck came")
		case <-ctx.Done():
			abandon = fmt.Errorf("nats: gave up waiting for the PubAck: %w", ctx.Err())
		}
		for _, w := range waiting {
			<-s.slots
			acks.Done(w.id, abandon)
		}
		break
	}
	return nil
}

// ready says why the sink cannot publish now, or nil.
func (s *Sink) ready() error {
	switch {
	case s.nc == nil:
		return errors.New("nats: " + notSetHint)
	case s.nc.IsClosed():
		return errors.New("nats: the sink is closed")
	case s.nc.Status() != nats.CONNECTED:
		return fmt.Errorf("nats: not connected to %s: %v", s.cfg.addr, s.why())
	}
	return nil
}

// why is the reason the connection is down.
func (s *Sink) why() error {
	if err := s.nc.LastError(); err != nil {
		return err
	}
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return errors.New("connecting")
}

// message builds the message of one delivery.
func (s *Sink) message(d *sdk.Delivery) *nats.Msg {
	name := s.naming.Name(d.Event)
	msg := nats.NewMsg(subjectFor(s.cfg.prefix, d.Instance, events.Wire(d.Event)))
	msg.Data = d.Envelope
	msg.Header.Set(jetstream.MsgIDHeader, d.ID)
	msg.Header.Set("Content-Type", "application/json")
	msg.Header.Set("instance", d.Instance)
	msg.Header.Set("event", name)
	return msg
}

func (s *Sink) fail(d *sdk.Delivery, err error) {
	s.log.Debug("delivery failed", "instance", d.Instance, "sink", sinkName, "event", d.Event,
		"delivery_id", d.ID, "attempt", d.Attempt, "error", err)
}

// Health says whether the sink can publish now, and how it publishes.
func (s *Sink) Health(context.Context) sdk.Health {
	if err := s.ready(); err != nil {
		return sdk.Health{Detail: strings.TrimPrefix(err.Error(), "nats: ")}
	}
	where := ""
	if s.cfg.prefix != "" {
		where = " under " + s.cfg.prefix + "."
	}
	return sdk.Health{Ready: true, Detail: fmt.Sprintf(
		"connected to %s (server %s); publishing%s through JetStream where a stream covers the subject, core NATS elsewhere; so far jetstream=%d core=%d",
		s.nc.ConnectedUrlRedacted(), s.nc.ConnectedServerVersion(), where, s.viaJetStream.Load(), s.viaCore.Load())}
}

// Close closes the connection. Deliveries still waiting for a PubAck are
// answered with retryable errors.
func (s *Sink) Close(context.Context) error {
	select {
	case <-s.closing:
		return nil
	default:
		close(s.closing)
	}
	if s.nc != nil {
		s.nc.Close()
	}
	return nil
}
