package main

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
)

// version is the plugin's version, as Describe reports it.
const version = "0.1.0"

// Settings are one instance's webhook settings in the seed's flat shape:
// what Validate returns, the host stores, and every delivery carries.
type Settings struct {
	URL             string            `json:"url"`
	Enabled         bool              `json:"enabled"`
	Events          []string          `json:"events"`
	WebhookByEvents bool              `json:"webhook_by_events"`
	WebhookBase64   bool              `json:"webhook_base64"`
	Headers         map[string]string `json:"headers"`
	Secret          string            `json:"secret,omitempty"`
	// PublicOnly sends deliveries and media fetches to public addresses
	// only (egress.Policy.PublicOnly): always so for settings set with an
	// instance-scoped key; the admin key may set it or clear it.
	PublicOnly bool `json:"public_only,omitempty"`
}

// fieldAliases are Evolution API v2's names for the seed's fields.
var fieldAliases = map[string]string{
	"byEvents":        "webhook_by_events",
	"webhookByEvents": "webhook_by_events",
	"base64":          "webhook_base64",
	"webhookBase64":   "webhook_base64",
}

// reservedHeaders are set by the sink (or by HTTP itself) and cannot be
// given in headers. Lower case.
var reservedHeaders = map[string]bool{
	"webhook-id": true, "webhook-timestamp": true, "webhook-signature": true,
	"host": true, "content-length": true, "transfer-encoding": true, "connection": true,
}

const knownFields = "url, enabled, events, webhook_by_events (or byEvents, webhookByEvents), " +
	"webhook_base64 (or base64, webhookBase64), headers, secret, public_only"

// parseSettings validates a settings object and returns it normalized.
// Problems are sdk.FieldErrors naming the field as the client spelt it.
// The url must be one policy allows now; with a scoped key, settings are
// always public_only.
func parseSettings(ctx context.Context, raw []byte, policy egress.Policy) (Settings, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		fe := sdk.FieldErrors{}
		fe.Add("settings", `must be a JSON object, e.g. {"url": "https://example.com/hook", "enabled": true}`)
		return Settings{}, fe
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)

	type given struct {
		name  string // as the client spelt it
		value bool
	}
	var (
		set    Settings
		fe     sdk.FieldErrors
		urlBad bool
		flags  = map[string]given{} // by canonical name
	)
	for _, name := range names {
		v := fields[name]
		field := name
		if canonical, ok := fieldAliases[name]; ok {
			field = canonical
		}
		switch field {
		case "url":
			if json.Unmarshal(v, &set.URL) != nil {
				fe.Add(name, "must be a string, e.g. https://example.com/hook")
				urlBad = true
			}
			set.URL = strings.TrimSpace(set.URL)
		case "enabled":
			if !isNull(v) && json.Unmarshal(v, &set.Enabled) != nil {
				fe.Add(name, "must be true or false")
			}
		case "events":
			if json.Unmarshal(v, &set.Events) != nil {
				fe.Add(name, `must be a list of event names, e.g. ["MESSAGES_UPSERT"]`)
			}
		case "webhook_by_events", "webhook_base64":
			var b bool
			if isNull(v) {
				continue // null says nothing, in either spelling
			}
			if json.Unmarshal(v, &b) != nil {
				fe.Add(name, "must be true or false")
				continue
			}
			if prev, ok := flags[field]; ok && prev.value != b {
				fe.Add(name, "is %v but %s is %v; give one of them", b, prev.name, prev.value)
				continue
			}
			flags[field] = given{name, b}
			if field == "webhook_by_events" {
				set.WebhookByEvents = b
			} else {
				set.WebhookBase64 = b
			}
		case "headers":
			set.Headers = parseHeaders(name, v, &fe)
		case "secret":
			if json.Unmarshal(v, &set.Secret) != nil {
				fe.Add(name, "must be a string: %v", errSecret)
			} else if set.Secret != "" {
				if _, err := decodeSecret(set.Secret); err != nil {
					fe.Add(name, "%v", err)
				}
			}
		case "public_only":
			if !isNull(v) && json.Unmarshal(v, &set.PublicOnly) != nil {
				fe.Add(name, "must be true or false")
			}
		case "":
			fe.Add("settings", "has a field with an empty name; the webhook takes %s", knownFields)
		default:
			fe.Add(name, "unknown field; the webhook takes %s", knownFields)
		}
	}
	if sdk.ScopedKey(ctx) {
		set.PublicOnly = true
	}
	if set.PublicOnly {
		policy = policy.PublicOnly()
	}
	switch {
	case urlBad:
	case set.URL == "" && set.Enabled:
		fe.Add("url", "is required when enabled, e.g. https://example.com/hook")
	case set.URL != "":
		u, err := parseURL(set.URL)
		if err == nil {
			err = policy.CheckURL(u)
		}
		if err != nil {
			fe.Add("url", "%v", err)
		}
	}
	if err := fe.Err(); err != nil {
		return Settings{}, err
	}
	if set.Events == nil {
		set.Events = []string{}
	}
	if set.Headers == nil {
		set.Headers = map[string]string{}
	}
	return set, nil
}

// parseHeaders reads the headers object: names that are HTTP tokens and
// not the sink's own, values without line breaks.
func parseHeaders(field string, raw json.RawMessage, fe *sdk.FieldErrors) map[string]string {
	var in map[string]string
	if err := json.Unmarshal(raw, &in); err != nil {
		fe.Add(field, `must be an object of header names to string values, e.g. {"Authorization": "Bearer x"}`)
		return nil
	}
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make(map[string]string, len(in))
	seen := map[string]string{}
	for _, name := range names {
		value := in[name]
		lower := strings.ToLower(name)
		switch {
		case !isToken(name):
			fe.Add(field, "%q is not a valid header name", name)
		case reservedHeaders[lower]:
			fe.Add(field, "%q is set by the webhook sink itself and cannot be given", name)
		case !validHeaderValue(value):
			fe.Add(field, "the value of %q may not contain line breaks or control characters", name)
		case seen[lower] != "":
			fe.Add(field, "%q and %q are the same header; give it once", seen[lower], name)
		case lower == "content-type":
			seen[lower] = name
			if mt, _, err := mime.ParseMediaType(value); err != nil || mt != "application/json" {
				fe.Add(field, "Content-Type is always application/json: the body is JSON")
			} // application/json is what is sent anyway: not stored
		default:
			seen[lower] = name
			out[name] = value
		}
	}
	return out
}

// isToken reports whether s is an HTTP header name (RFC 9110 token).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue allows visible characters, spaces and tabs.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func isNull(v json.RawMessage) bool { return string(v) == "null" }

// Sink is the webhook sink. Create it with New.
type Sink struct {
	sdk.UnimplementedSink

	cfg       processConfig
	naming    events.Naming
	serverURL string
	egress    egress.Policy
	log       hclog.Logger
	now       func() time.Time

	open       *clients // settings that are not public_only
	public     *clients // public_only settings
	limit      *limiter
	mediaSlots chan struct{}

	closing context.Context // done once Close is called
	close   context.CancelFunc
}

// New returns a sink with the default process settings; Open replaces them.
func New() *Sink {
	s := &Sink{log: hclog.NewNullLogger(), now: time.Now}
	s.closing, s.close = context.WithCancel(context.Background())
	s.setup(defaultProcessConfig())
	return s
}

// Describe names the sink and its settings.
func (s *Sink) Describe() sdk.Description {
	return sdk.Description{Name: "webhook", Version: version, SecretFields: []string{"secret"}}
}

// Validate checks one instance's settings; see parseSettings.
func (s *Sink) Validate(ctx context.Context, _ string, raw json.RawMessage) (json.RawMessage, error) {
	set, err := parseSettings(ctx, raw, s.egress)
	if err != nil {
		return nil, err
	}
	return json.Marshal(set)
}

// Open reads the process settings and builds the HTTP client.
func (s *Sink) Open(_ context.Context, c sdk.Config) error {
	cfg, err := parseProcessConfig(c)
	if err != nil {
		return err
	}
	if c.Logger != nil {
		s.log = c.Logger.With("sink", "webhook")
	}
	s.naming = c.Naming
	s.serverURL = c.ServerURL
	s.egress = c.Egress
	open, public := s.open, s.public
	s.setup(cfg)
	open.close()
	public.close()
	return nil
}

// setup builds the clients for cfg and the egress policy.
func (s *Sink) setup(cfg processConfig) {
	s.cfg = cfg
	s.open = newClients(cfg, s.egress)
	s.public = newClients(cfg, s.egress.PublicOnly())
	s.limit = newLimiter(cfg.maxConnsPerHost, maxInFlight)
	s.mediaSlots = make(chan struct{}, mediaConcurrency)
}

// clients are the HTTP clients of one egress policy.
type clients struct {
	transport *http.Transport // deliveries: no redirects (send.go)
	media     *http.Client    // mediaUrl fetches: a few redirects
}

// newClients builds a transport that dials only where policy allows,
// checked at every connection: each delivery, each media fetch, each
// redirect hop.
func newClients(cfg processConfig, policy egress.Policy) *clients {
	dialer := policy.Dialer(&net.Dialer{Timeout: cfg.timeout, KeepAlive: 30 * time.Second})
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxInFlight,
		MaxIdleConnsPerHost:   cfg.maxConnsPerHost,
		MaxConnsPerHost:       cfg.maxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &clients{
		transport: t,
		media: &http.Client{
			Transport:     t,
			Timeout:       cfg.mediaTimeout,
			CheckRedirect: checkMediaRedirect,
		},
	}
}

func (c *clients) close() { c.transport.CloseIdleConnections() }

// clientsFor are the clients the settings' deliveries go through.
func (s *Sink) clientsFor(set Settings) *clients {
	if set.PublicOnly {
		return s.public
	}
	return s.open
}

// Deliver sends the batch's deliveries one after the other, in order, and
// acknowledges each as soon as it is done. A batch is one lane of one
// instance; one that mixes instances (no host sends such) has each
// instance's deliveries sent concurrently.
func (s *Sink) Deliver(ctx context.Context, batch []sdk.Delivery, acks sdk.Acks) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()

	runs := byInstance(batch)
	if len(runs) == 1 {
		for _, d := range batch {
			s.deliverOne(ctx, d, acks)
		}
		return nil
	}
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, d := range run {
				s.deliverOne(ctx, d, acks)
			}
		}()
	}
	wg.Wait()
	return nil
}

// byInstance splits a batch into each instance's deliveries, keeping their
// order: the host sends them in ingest order, and a receiver should see an
// instance's events in that order, so they go one after the other, while
// different instances go concurrently.
func byInstance(batch []sdk.Delivery) [][]sdk.Delivery {
	if !slices.ContainsFunc(batch, func(d sdk.Delivery) bool { return d.Instance != batch[0].Instance }) {
		return [][]sdk.Delivery{batch}
	}
	index := map[string]int{}
	var runs [][]sdk.Delivery
	for _, d := range batch {
		i, ok := index[d.Instance]
		if !ok {
			i = len(runs)
			index[d.Instance] = i
			runs = append(runs, nil)
		}
		runs[i] = append(runs[i], d)
	}
	return runs
}

func (s *Sink) deliverOne(ctx context.Context, d sdk.Delivery, acks sdk.Acks) {
	defer func() {
		if r := recover(); r != nil {
			acks.Done(d.ID, fmt.Errorf("webhook: delivery panicked: %v", r))
		}
	}()
	acks.Done(d.ID, s.deliver(ctx, d))
}

// deliver sends one delivery and returns its outcome.
func (s *Sink) deliver(ctx context.Context, d sdk.Delivery) error {
	set, err := sdk.SettingsOf[Settings](d)
	if err != nil {
		return err
	}
	raw, event, err := s.envelope(d)
	if err != nil {
		return err
	}
	dest, err := s.destination(set, event)
	if err != nil {
		return sdk.Permanent(fmt.Errorf("url: %v", err))
	}
	key, err := signingKey(set)
	if err != nil {
		return err
	}
	cs := s.clientsFor(set)
	if raw.Data, err = s.mediaRule(ctx, d, cs, set.WebhookBase64, raw.Data); err != nil {
		return err
	}
	return s.post(ctx, cs, dest, set.Headers, key, d.ID, raw.Append(nil, dest.String()))
}

// envelope is the delivery's envelope, to which the body adds its
// destination, and its event's constant. The host's bytes are cut as
// they are (Envelope.Append's shape: every event it accepted), so that
// data is neither decoded nor re-encoded; another envelope is decoded,
// completed and written again.
func (s *Sink) envelope(d sdk.Delivery) (events.Raw, string, error) {
	if raw, ok := events.Cut(d.Envelope); ok && d.Event != "" && d.Instance != "" {
		return raw, d.Event, nil
	}
	env, err := d.Decode()
	if err != nil {
		return events.Raw{}, "", sdk.Permanent(fmt.Errorf("malformed envelope: %v", err))
	}
	event := d.Event
	if event == "" {
		event = events.Normalize(env.Event)
	}
	if event == "" {
		return events.Raw{}, "", sdk.Permanent(fmt.Errorf("malformed envelope: no event name"))
	}
	if d.Instance != "" {
		env.Instance = d.Instance
	}
	if env.ServerURL == "" {
		env.ServerURL = s.serverURL
	}
	env.Event, env.Destination = s.naming.Name(event), ""
	return env.Raw(), event, nil
}

// signingKey is the key of the settings' secret, nil without one.
func signingKey(set Settings) ([]byte, error) {
	if set.Secret == "" {
		return nil, nil
	}
	key, err := decodeSecret(set.Secret)
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("secret: %v", err))
	}
	return key, nil
}

// destination is the URL one event is posted to: url, plus the event's
// suffix with webhook_by_events.
func (s *Sink) destination(set Settings, event string) (*url.URL, error) {
	if set.URL == "" {
		return nil, fmt.Errorf("no url is set")
	}
	u, err := parseURL(set.URL)
	if err != nil {
		return nil, err
	}
	if set.WebhookByEvents {
		suffix := s.naming.Suffix(event)
		u.Path = strings.TrimSuffix(u.Path, "/") + suffix
		if u.RawPath != "" {
			u.RawPath = strings.TrimSuffix(u.RawPath, "/") + suffix
		}
	}
	return u, nil
}

// Health is always ready: a receiver being down is a delivery's outcome,
// not the sink's state.
func (s *Sink) Health(context.Context) sdk.Health { return sdk.Health{Ready: true} }

// Close aborts requests in flight (they are retried) and closes idle
// connections.
func (s *Sink) Close(context.Context) error {
	s.close()
	s.open.close()
	s.public.close()
	return nil
}

// logger is the log of one delivery.
func (s *Sink) logger(d sdk.Delivery) hclog.Logger {
	return s.log.With("instance", d.Instance, "event", d.Event, "delivery_id", d.ID, "attempt", d.Attempt)
}
