package pluginhost

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/evorelay/evorelay/sdk"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// FieldError is one bad settings field, as the plugin reported it.
type FieldError struct {
	Field, Message string
}

// Validate asks the plugin to check one instance's settings, waiting while
// the plugin restarts (bounded by ctx).
func (p *Plugin) Validate(ctx context.Context, instance string, settings json.RawMessage) (json.RawMessage, []FieldError, error) {
	if err := p.Unavailable(); err != nil {
		return nil, nil, err
	}
	rpc, err := p.Client(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("pluginhost: %s is not running: %w", p.name, err)
	}
	// A key scoped to the instance sent them (sdk.WithScopedKey, set by
	// the API): the plugin may hold them to a stricter policy.
	resp, err := rpc.Validate(ctx, &sinkv1.ValidateRequest{Instance: instance, Settings: settings, Scoped: sdk.ScopedKey(ctx)})
	if err != nil {
		return nil, nil, fmt.Errorf("pluginhost: %s: validate: %s", p.name, grpcMessage(err))
	}
	var fe []FieldError
	for _, e := range resp.GetFieldErrors() {
		fe = append(fe, FieldError{Field: e.GetField(), Message: e.GetMessage()})
	}
	return resp.GetSettings(), fe, nil
}

// Listener reports whether the plugin accepts connections (Proxy serves
// them).
func (p *Plugin) Listener() bool {
	for _, c := range p.Describe().GetCapabilities() {
		if c == sinkv1.Capability_CAPABILITY_LISTENER {
			return true
		}
	}
	return false
}

// Proxy forwards HTTP requests, websocket upgrades included, to a listener
// plugin's Unix socket. Authenticate before it: the plugin trusts the host.
// An upgraded connection ends on both sides when either side closes or a
// write to either blocks for proxyWriteTimeout.
func (p *Plugin) Proxy() http.Handler {
	sock := p.SocketPath()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: p.name})
	rp.Transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", sock)
			if err != nil {
				return nil, err
			}
			return deadlineConn{c}, nil
		},
	}
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		p.logger.Warn("proxy to plugin failed", "error", err)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		msg, _ := json.Marshal(p.name + " is not accepting connections right now; retry shortly")
		fmt.Fprintf(w, `{"status":503,"error":"Service Unavailable","response":{"message":[%s]}}`, msg)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rp.ServeHTTP(hijackWriter{w}, r)
	})
}
