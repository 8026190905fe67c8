package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// link keeps one connection to the broker up, forever: it dials, opens a
// confirming channel, and when the connection or the channel dies it dials
// again with capped exponential backoff and jitter. Each successful dial is
// a session; the topology a session declared is cached in it, so a new
// session declares again what it publishes to.
type link struct {
	cfg processSettings
	log hclog.Logger

	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{} // closed when run returns
	firstTry chan struct{} // closed after the first dial attempt
	slots    chan struct{} // one token per unconfirmed publish

	mu      sync.Mutex
	sess    *session // nil while down
	lastErr error    // why the last dial failed or the last session ended
	attempt int      // failed dials in a row
	retryAt time.Time
	blocked string // the broker's reason, while it blocks publishing
}

func startLink(cfg processSettings, log hclog.Logger) *link {
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{
		cfg:      cfg,
		log:      log,
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		firstTry: make(chan struct{}),
		slots:    make(chan struct{}, cfg.maxInFlight),
	}
	go l.run()
	return l
}

// stableAfter is how long a session must last for the backoff to start
// over at its shortest delay when it ends.
const stableAfter = time.Minute

func (l *link) run() {
	defer close(l.done)
	first := sync.OnceFunc(func() { close(l.firstTry) })
	defer first()
	attempt := 0
	for {
		s, err := l.dial()
		first()
		if err == nil {
			l.up(s)
			l.log.Info("connected", "sink", sinkName, "broker", l.cfg.addr)
			began := time.Now()
			err = s.wait(l.ctx)
			l.down(s, err)
			if l.ctx.Err() != nil {
				return
			}
			l.log.Warn("connection lost; reconnecting", "sink", sinkName, "broker", l.cfg.addr, "error", err)
			if time.Since(began) > stableAfter {
				attempt = 0
			}
		}
		attempt++
		delay := sdk.Backoff(attempt, l.cfg.reconnectMax)
		l.mu.Lock()
		if l.sess == nil && err != nil {
			l.lastErr = err
		}
		l.attempt = attempt
		l.retryAt = time.Now().Add(delay)
		l.mu.Unlock()
		if s == nil {
			l.log.Warn("connect failed", "sink", sinkName, "broker", l.cfg.addr, "attempt", attempt, "retry_in", delay.String(), "error", err)
		}
		select {
		case <-time.After(delay):
		case <-l.ctx.Done():
			return
		}
	}
}

func (l *link) dial() (*session, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("evorelay-sink-rabbitmq")
	conn, err := amqp.DialConfig(l.cfg.uri, amqp.Config{
		Heartbeat:  l.cfg.heartbeat,
		Locale:     "en_US",
		Properties: props,
		Dial:       amqp.DefaultDial(10 * time.Second),
		// amqps:// with EVORELAY_RABBITMQ_TLS_CA; nil trusts the system's
		// CAs. The server name is the URI's host.
		TLSClientConfig: l.cfg.tls.Clone(),
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", l.cfg.addr, err)
	}
	s, err := newSession(conn, l.cfg.maxInFlight, l.log)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	go func() {
		for b := range blocked {
			l.mu.Lock()
			if l.sess != s {
				l.mu.Unlock()
				continue // a notice from a session that has ended
			}
			l.blocked = ""
			if b.Active {
				l.blocked = b.Reason
				if l.blocked == "" {
					l.blocked = "no reason given"
				}
			}
			l.mu.Unlock()
			l.log.Warn("broker flow control", "sink", sinkName, "blocked", b.Active, "reason", b.Reason)
		}
	}()
	return s, nil
}

func (l *link) up(s *session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sess, l.lastErr, l.attempt, l.blocked = s, nil, 0, ""
}

func (l *link) down(s *session, err error) {
	l.mu.Lock()
	l.sess, l.lastErr, l.blocked = nil, err, ""
	l.mu.Unlock()
	s.close()
}

// ready returns the session to publish on, or a retryable error saying why
// there is none.
func (l *link) ready() (*session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.ctx.Err() != nil:
		return nil, errors.New("rabbitmq: the sink is closed")
	case l.sess == nil:
		return nil, fmt.Errorf("rabbitmq: not connected to %s: %v", l.cfg.addr, l.why())
	case l.blocked != "":
		return nil, fmt.Errorf("rabbitmq: the broker blocks publishing: %s", l.blocked)
	}
	return l.sess, nil
}

// why is the reason the link is down; l.mu is held.
func (l *link) why() error {
	if l.lastErr == nil {
		return errors.New("connecting")
	}
	return l.lastErr
}

func (l *link) health() (h sdk.Health) {
	l.mu.Lock()
	defer l.mu.Unlock()
	topology := "an exchange per instance"
	if l.cfg.global.on {
		topology = "global exchange " + l.cfg.global.exchange
	}
	switch {
	case l.ctx.Err() != nil:
		h.Detail = "closed"
	case l.sess == nil && l.attempt > 0 && time.Until(l.retryAt) > 0:
		h.Detail = fmt.Sprintf("disconnected from %s: %v; reconnect attempt %d in %s",
			l.cfg.addr, l.why(), l.attempt+1, time.Until(l.retryAt).Round(100*time.Millisecond))
	case l.sess == nil && l.attempt > 0:
		h.Detail = fmt.Sprintf("disconnected from %s: %v; reconnect attempt %d under way", l.cfg.addr, l.why(), l.attempt+1)
	case l.sess == nil:
		h.Detail = fmt.Sprintf("disconnected from %s: %v", l.cfg.addr, l.why())
	case l.blocked != "":
		h.Detail = fmt.Sprintf("connected to %s, but the broker blocks publishing: %s", l.cfg.addr, l.blocked)
	default:
		h.Ready = true
		h.Detail = fmt.Sprintf("connected to %s; %s, %s queues, publisher confirms", l.cfg.addr, topology, l.cfg.queueType)
	}
	return h
}

// release frees the slot of a publish that is settled (confirmed,
// nacked, returned or abandoned). Deliver takes slots, sending to slots.
func (l *link) release() { <-l.slots }

// declareFor declares the exchange and the queues of one instance's
// subscribed events on the current session.
func (l *link) declareFor(instance string, subscribed []string, limits queueLimits) error {
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	if s == nil {
		return errors.New("not connected")
	}
	for _, ev := range subscribed {
		// With limits, a queue that exists without them is the user's to
		// know about; without, one that exists is used as it is.
		if err := s.ensure(routeFor(instance, events.Wire(ev), l.cfg.global), limits.args(l.cfg.queueType), limits.set()); err != nil {
			return err
		}
	}
	return nil
}

func (l *link) close(ctx context.Context) error {
	l.cancel()
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rabbitmq: close: %w", ctx.Err())
	}
}

// session is one connection with its two channels: pub, in confirm mode,
// for publishing; topo for declarations, whose failures close a channel
// and must not close the one publishing.
type session struct {
	conn       *amqp.Connection
	pub        *amqp.Channel
	connClosed chan *amqp.Error
	pubClosed  chan *amqp.Error
	dead       chan struct{} // closed when the session ends
	log        hclog.Logger

	// Returns arrive before the confirm of the same message; outcome drains
	// them when a confirm is in, so a returned message is never taken for
	// delivered.
	retMu    sync.Mutex
	returns  chan amqp.Return
	returned map[string]int // message-id → returns not yet claimed

	topoMu sync.Mutex // serializes declarations
	topo   *amqp.Channel
	knowMu sync.RWMutex
	known  map[string]bool // exchange\x00 and exchange\x00queue declared in this session
}

func newSession(conn *amqp.Connection, maxInFlight int, log hclog.Logger) (*session, error) {
	pub, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	topo, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	return &session{
		conn:       conn,
		pub:        pub,
		connClosed: conn.NotifyClose(make(chan *amqp.Error, 1)),
		pubClosed:  pub.NotifyClose(make(chan *amqp.Error, 1)),
		dead:       make(chan struct{}),
		log:        log,
		// Every unconfirmed publish is returned at most once, and there are
		// at most maxInFlight of them: the buffer never fills.
		returns:  pub.NotifyReturn(make(chan amqp.Return, maxInFlight+64)),
		returned: map[string]int{},
		topo:     topo,
		known:    map[string]bool{},
	}, nil
}

// wait blocks until the connection or the publishing channel closes, or
// ctx is done, and says why.
func (s *session) wait(ctx context.Context) error {
	select {
	case e := <-s.connClosed:
		if e == nil {
			return errors.New("connection closed")
		}
		return fmt.Errorf("connection closed: %w", e)
	case e := <-s.pubClosed:
		if e == nil {
			return errors.New("publishing channel closed")
		}
		return fmt.Errorf("publishing channel closed: %w", e)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close ends the session; publishes still unconfirmed are nacked by the
// library, so their deliveries are retried.
func (s *session) close() {
	close(s.dead)
	_ = s.conn.Close()
}

// outcome turns the broker's answer about one publish into its ack.
func (s *session) outcome(id string, acked bool, r route) error {
	s.retMu.Lock()
	for s.returns != nil {
		select {
		case ret, ok := <-s.returns:
			if !ok {
				s.returns = nil
				continue
			}
			s.returned[ret.MessageId]++
			continue
		default:
		}
		break
	}
	returned := s.returned[id] > 0
	if returned {
		if s.returned[id]--; s.returned[id] == 0 {
			delete(s.returned, id)
		}
	}
	s.retMu.Unlock()
	switch {
	case returned:
		s.forget(r)
		return fmt.Errorf("rabbitmq: the broker returned the message: no queue bound to exchange %q with routing key %q", r.exchange, r.key)
	case !acked:
		return errors.New("rabbitmq: the broker did not confirm the message (nack, or the connection was lost)")
	}
	return nil
}

// ensure declares r's exchange, and its queue with args, and the binding,
// once per session. A
// queue that exists with other arguments is used as it is, unless strict
// (Validate of settings with queue limits): then the broker's refusal is
// the error, and the cache is not trusted.
func (s *session) ensure(r route, args amqp.Table, strict bool) error {
	key := r.exchange + "\x00" + r.queue
	s.knowMu.RLock()
	ok := s.known[key] && !strict
	s.knowMu.RUnlock()
	if ok {
		return nil
	}
	s.topoMu.Lock()
	defer s.topoMu.Unlock()
	s.knowMu.RLock()
	exchangeKnown, ok := s.known[r.exchange+"\x00"], s.known[key] && !strict
	s.knowMu.RUnlock()
	if ok {
		return nil
	}
	if !exchangeKnown {
		err := s.onTopo(func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(r.exchange, "topic", true, false, false, false, nil)
		})
		if isPrecondition(err) {
			s.log.Warn("exchange exists with other properties; publishing to it as it is", "sink", sinkName, "exchange", r.exchange, "error", err)
			err = s.onTopo(func(ch *amqp.Channel) error {
				return ch.ExchangeDeclarePassive(r.exchange, "topic", true, false, false, false, nil)
			})
		}
		if err != nil {
			return fmt.Errorf("rabbitmq: declare exchange %q: %w", r.exchange, err)
		}
		s.learn(r.exchange + "\x00")
	}
	err := s.onTopo(func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(r.queue, true, false, false, false, args)
		return err
	})
	if isPrecondition(err) && !strict {
		s.log.Warn("queue exists with other properties; using it as it is", "sink", sinkName, "queue", r.queue, "error", err)
		err = s.onTopo(func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(r.queue, true, false, false, false, nil)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("rabbitmq: declare queue %q: %w", r.queue, err)
	}
	err = s.onTopo(func(ch *amqp.Channel) error { return ch.QueueBind(r.queue, r.key, r.exchange, false, nil) })
	if err != nil {
		return fmt.Errorf("rabbitmq: bind queue %q to exchange %q: %w", r.queue, r.exchange, err)
	}
	s.learn(key)
	return nil
}

func isPrecondition(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed
}

// onTopo runs f on the declaring channel, reopening it first if an earlier
// failure closed it; s.topoMu is held.
func (s *session) onTopo(f func(*amqp.Channel) error) error {
	if s.topo.IsClosed() {
		ch, err := s.conn.Channel()
		if err != nil {
			return err
		}
		s.topo = ch
	}
	return f(s.topo)
}

func (s *session) learn(key string) {
	s.knowMu.Lock()
	s.known[key] = true
	s.knowMu.Unlock()
}

// forget drops r from the cache after the broker returned a message sent
// along it (someone deleted the queue or the binding): the retry declares
// them again.
func (s *session) forget(r route) {
	s.knowMu.Lock()
	delete(s.known, r.exchange+"\x00"+r.queue)
	delete(s.known, r.exchange+"\x00")
	s.knowMu.Unlock()
}
