package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// parseURL reads a URL the sink will connect to: http or https, with a
// host. Where it may connect is the egress policy's to say: at Validate
// (egress.Policy.CheckURL) and on every connection (the dialer).
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a valid URL: %v", err)
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return nil, errors.New("must be an http:// or https:// URL")
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, errors.New("must have a host, e.g. https://example.com/hook")
	}
	return u, nil
}
