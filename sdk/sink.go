package sdk

import (
	"context"
	"encoding/json"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
)

// Sink is an integration: what a plugin implements.
type Sink interface {
	// Describe says who the sink is. It is called before Open and must not
	// depend on configuration.
	Describe() Description
	// Open receives the process settings, once.
	Open(ctx context.Context, cfg Config) error
	// Validate checks one instance's settings and returns them normalized.
	// Return FieldErrors for bad fields; any other error is an internal one.
	Validate(ctx context.Context, instance string, settings json.RawMessage) (json.RawMessage, error)
	// Deliver sends a batch and acknowledges every delivery in it.
	Deliver(ctx context.Context, batch []Delivery, acks Acks) error
	// Health reports whether the sink can deliver now.
	Health(ctx context.Context) Health
	// Close releases what Open took.
	Close(ctx context.Context) error

	mustEmbedUnimplementedSink()
}

// UnimplementedSink gives every Sink method but Describe and Deliver a
// default. Embed it by value.
type UnimplementedSink struct{}

// Open accepts any configuration.
func (UnimplementedSink) Open(context.Context, Config) error { return nil }

// Validate accepts the settings of a sink that takes only "enabled" and
// "events" (a Subscription), and refuses any other member by name.
func (UnimplementedSink) Validate(_ context.Context, _ string, s json.RawMessage) (json.RawMessage, error) {
	if _, err := ParseSettings[Subscription](s); err != nil {
		return nil, err
	}
	return s, nil
}

// Health is always ready.
func (UnimplementedSink) Health(context.Context) Health { return Health{Ready: true} }

// Close does nothing.
func (UnimplementedSink) Close(context.Context) error { return nil }

func (UnimplementedSink) mustEmbedUnimplementedSink() {}

// Description is what Describe returns.
type Description struct {
	// Name is the route name: 1-32 lowercase letters, digits, '_' and
	// '-', starting with a letter, and not one of the host's own routes
	// (sinkv1.CheckName).
	Name    string
	Version string
	// SecretFields are top-level settings fields the host masks in find
	// responses and never logs.
	SecretFields []string
	// Listener asks the host for a Unix socket (Config.ListenSocket) to
	// which it reverse-proxies the sink's client connections.
	Listener bool
}

// Config is what Open receives.
type Config struct {
	// Settings are the sink's EVORELAY_<NAME>_* variables, keys lowercased
	// without the prefix.
	Settings map[string]string
	// Naming is how event names are written (EVORELAY_NAMING). The SDK
	// has already written each Delivery.Envelope's event this way; a sink
	// needs it only for names of its own (a URL suffix, a header).
	Naming events.Naming
	// ListenSocket is the Unix socket to listen on, for a Listener sink.
	ListenSocket string
	// HostSocket is the host's Unix socket that Identify asks, for a
	// Listener sink.
	HostSocket string
	// ServerURL is EVORELAY_SERVER_URL.
	ServerURL string
	// Logger writes to the host's log.
	Logger hclog.Logger
	// Egress is the policy for addresses that come from users: a URL in an
	// instance's settings, a URL in an event, a redirect hop. Dial them
	// through Egress.Client or Egress.Dialer, check them in Validate with
	// Egress.CheckURL, and use Egress.PublicOnly() for settings set with a
	// scoped key (ScopedKey). The host sets it from EVORELAY_EGRESS_ALLOW
	// and EVORELAY_EGRESS_DENY; the zero value is the default policy.
	Egress egress.Policy
}

// Log is Logger, or a logger that discards when it is nil (a plugin's own
// tests may open it without one).
func (c Config) Log() hclog.Logger {
	if c.Logger == nil {
		return hclog.NewNullLogger()
	}
	return c.Logger
}

// ReadSettings reads Settings with s (see Settings.Read), the variables
// named with prefix, and warns on Log about each one s does not know (a
// typo, or a setting another version reads): Open's first step.
func (c Config) ReadSettings(s Settings, prefix string) error {
	unknown, err := s.Read(c.Settings, prefix)
	for _, v := range unknown {
		c.Log().Warn("unknown setting ignored", "setting", v)
	}
	return err
}

// scopedKey marks a Validate context; see ScopedKey.
type scopedKey struct{}

// ScopedKey reports whether the settings Validate is checking were sent
// with an instance-scoped API key rather than the admin key. URLs in them
// then follow Config.Egress.PublicOnly(): check them with it, and keep the
// fact in the settings Validate returns, so that deliveries dial with it
// too.
func ScopedKey(ctx context.Context) bool {
	v, _ := ctx.Value(scopedKey{}).(bool)
	return v
}

// WithScopedKey returns a context for which ScopedKey is true: what the
// SDK hands Validate when the host says a scoped key is setting. For
// tests.
func WithScopedKey(ctx context.Context) context.Context {
	return context.WithValue(ctx, scopedKey{}, true)
}

// Health is what Health returns.
type Health struct {
	Ready bool
	// Detail says why not, or what mode the sink is in.
	Detail string
	// Gauges are the sink's own measurements by name (e.g. "connections");
	// the host exports them as evorelay_plugin_measurement{sink, name}. Names:
	// lowercase letters, digits and '_'.
	Gauges map[string]float64
	// Counters are the sink's running totals since its process started,
	// by name (e.g. "delivered", without a _total suffix); the host exports
	// them as evorelay_plugin_count_total{sink, name}. Same names as
	// Gauges.
	Counters map[string]float64
}

// Delivery is one event for one instance, for this sink.
type Delivery struct {
	// ID is stable across retries.
	ID       string
	Instance string
	// Event is the constant (MESSAGES_UPSERT), whatever the naming mode.
	Event string
	// Attempt is 1 on the first try.
	Attempt int
	// Envelope is the event as JSON, its "event" already written per
	// Config.Naming; see Delivery.Decode.
	Envelope json.RawMessage
	// Settings are the instance's settings for this sink, as Validate
	// normalized them: only the sink's own members (the host keeps its
	// own, such as "retry"). Every delivery of a batch shares them; read
	// them with SettingsOf.
	Settings json.RawMessage
}

// Decode parses the envelope.
func (d Delivery) Decode() (events.Envelope, error) {
	var e events.Envelope
	err := json.Unmarshal(d.Envelope, &e)
	return e, err
}

// Acks acknowledges deliveries. It is safe for concurrent use.
type Acks interface {
	// Done reports the outcome of one delivery: nil is delivered; otherwise
	// see Permanent, RetryAfter and Gone. A second Done for the same id is
	// ignored and logged.
	Done(id string, err error)
}

// Sent says that every delivery of the batch acks belongs to is on its
// way to the destination, in order, on a path that keeps that order (one
// connection, one channel), so the lane's next batch may start while
// these wait for their confirmations, which still go through acks.
// Without it, a lane's next batch starts once Deliver returns. Sinks
// whose destination confirms asynchronously (a broker's publisher
// confirms) call it after their last publish: a lane then has the next
// batch's publishes in flight beside this one's confirmations, and the host,
// told so, sends more of the lane's batches (up to eight at the plugin
// in all) instead of two. Calling it more than once, or on acks the SDK
// did not make, does nothing.
func Sent(acks Acks) {
	if a, ok := acks.(interface{ sent() }); ok {
		a.sent()
	}
}

// retryAfterError carries a delay the destination asked for.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// Subscription is the part of every sink's instance settings that the
// host normalizes before Validate and filters on before it delivers:
// "enabled", and "events" as constants, where none means every event. A
// sink never needs to check it again in Deliver. Embed it in a sink's
// settings type.
type Subscription struct {
	Enabled bool     `json:"enabled"`
	Events  []string `json:"events"`
}

// Subscribed lists the event constants the settings ask for: every known
// event when Events is empty.
func (s Subscription) Subscribed() []string {
	if len(s.Events) == 0 {
		return events.All()
	}
	out := make([]string, 0, len(s.Events))
	for _, e := range s.Events {
		if c := events.Normalize(e); c != "" {
			out = append(out, c)
		}
	}
	return out
}
