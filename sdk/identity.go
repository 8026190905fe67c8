package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// A Listener sink serves clients the host has authenticated, but it never
// sees the API key: plugins do not receive it. It learns who a client is
// in one of two ways, both over the host's private Unix sockets:
//
//   - A request whose key the host checked (header apikey, or the apikey
//     query parameter) reaches the sink with IdentityHeader set by the
//     host; the host removes any IdentityHeader a client sent. A request
//     without that header carried no key. ParseIdentity reads it.
//   - A key the host could not see, because the client sent it inside the
//     stream (a Socket.IO auth payload), the sink asks the host about with
//     Identify.

// IdentityHeader is the header the host's proxy sets on a request whose
// API key it checked.
const IdentityHeader = "Evorelay-Identity"

// Identity is whose key a client sent: the admin key, or a key scoped to
// one instance.
type Identity struct {
	// Instance is the one instance the key may see; "" for the admin key,
	// which sees every instance.
	Instance string
}

// Admin reports whether the key is the admin key.
func (id Identity) Admin() bool { return id.Instance == "" }

// May reports whether the key may see instance's events.
func (id Identity) May(instance string) bool { return id.Admin() || id.Instance == instance }

// String is the identity as IdentityHeader and Identify's answer carry it:
// "admin", or "instance=" and the instance name, query-escaped.
func (id Identity) String() string {
	if id.Admin() {
		return "admin"
	}
	return "instance=" + url.QueryEscape(id.Instance)
}

// ParseIdentity reads an identity written by Identity.String.
func ParseIdentity(s string) (Identity, error) {
	if s == "admin" {
		return Identity{}, nil
	}
	if name, ok := strings.CutPrefix(s, "instance="); ok {
		inst, err := url.QueryUnescape(name)
		if err == nil && inst != "" {
			return Identity{Instance: inst}, nil
		}
	}
	return Identity{}, fmt.Errorf("sdk: %q is not an identity; expected admin or instance=<name>", s)
}

// ErrUnknownKey is Identify's answer for a key the host does not know.
var ErrUnknownKey = errors.New("invalid API key")

// IdentifyPath is where the host answers Identify on its socket.
const IdentifyPath = "/v1/identify"

// identifyTimeout bounds one Identify call.
const identifyTimeout = 5 * time.Second

// Identify asks the host, on hostSocket (Config.HostSocket), whose API key
// key is. It returns ErrUnknownKey for a key the host refuses, and another
// error when the host cannot be asked.
func Identify(ctx context.Context, hostSocket, key string) (Identity, error) {
	if hostSocket == "" {
		return Identity{}, errors.New("sdk: identify: the host gave no socket to ask (Config.HostSocket); is the sink a Listener?")
	}
	ctx, cancel := context.WithTimeout(ctx, identifyTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://evorelay"+IdentifyPath, nil)
	if err != nil {
		return Identity{}, fmt.Errorf("sdk: identify: %w", err)
	}
	req.Header.Set("apikey", key)
	client := http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", hostSocket)
		},
		DisableKeepAlives: true,
	}}
	resp, err := client.Do(req)
	if err != nil {
		return Identity{}, fmt.Errorf("sdk: identify: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return Identity{}, fmt.Errorf("sdk: identify: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return ParseIdentity(strings.TrimSpace(string(body)))
	case http.StatusUnauthorized:
		return Identity{}, ErrUnknownKey
	default:
		return Identity{}, fmt.Errorf("sdk: identify: the host answered %d", resp.StatusCode)
	}
}
