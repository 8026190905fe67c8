package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Credentials that are not declared secret fields still reach settings:
// a receiver's "Authorization" header, or a URL with a password or a
// token in its query. find masks them as it masks secrets — a header's
// value when its name says it carries a credential, a URL's password and
// the values of its credential-like query parameters — and, as with
// secrets, a client may post back what find answered: a masked value takes
// back the stored one.

// credentialWords are the name fragments that mark a header or a query
// parameter as carrying a credential.
var credentialWords = []string{"auth", "token", "secret", "key", "pass", "pwd", "sig", "session", "cookie", "credential"}

func credentialName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range credentialWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// maskCredentials masks the credentials of one settings member.
func maskCredentials(f field) json.RawMessage {
	switch {
	case isHeaders(f):
		headers, msg := readObject(f.value)
		if msg != "" {
			return f.value
		}
		masked := false
		for i, h := range headers {
			if s, ok := jsonString(h.value); ok && s != "" && credentialName(h.name) {
				headers[i].value = quote(mask)
				masked = true
			}
		}
		if !masked {
			return f.value
		}
		return writeObject(headers)
	default:
		if s, ok := jsonString(f.value); ok {
			if masked, changed := maskURL(s); changed {
				return quote(masked)
			}
		}
		return f.value
	}
}

// restoreCredentials puts back the stored value of each credential sent as
// the mask, and says what cannot be restored.
func restoreCredentials(f field, old []field) (json.RawMessage, []string) {
	stored, _ := lookup(old, f.name)
	switch {
	case isHeaders(f):
		headers, msg := readObject(f.value)
		if msg != "" {
			return f.value, nil
		}
		storedHeaders, _ := readObject(stored)
		var msgs []string
		restored := false
		for i, h := range headers {
			if !isMask(h.value) {
				continue
			}
			restored = true
			v, ok := lookupFold(storedHeaders, h.name)
			if !ok {
				msgs = append(msgs, fmt.Sprintf("%s.%s: %q is the mask find answers with, not a value; send the header's value itself", f.name, h.name, mask))
				continue
			}
			headers[i].value = v
		}
		if !restored {
			return f.value, nil
		}
		return writeObject(headers), msgs
	default:
		s, ok := jsonString(f.value)
		if !ok || !strings.Contains(s, mask) {
			return f.value, nil
		}
		if old, ok := jsonString(stored); ok {
			if masked, _ := maskURL(old); masked == s {
				return stored, nil
			}
		}
		return f.value, []string{fmt.Sprintf("%s: holds %q, the mask find answers with; send the URL with its credentials", f.name, mask)}
	}
}

// maskURL masks a URL's password and the values of its credential-like
// query parameters, keeping everything else as written.
func maskURL(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return s, false
	}
	changed := false
	userinfo := ""
	if p, ok := u.User.Password(); ok && p != "" {
		// Written by hand: url.UserPassword would escape the mask.
		userinfo = url.User(u.User.Username()).String() + ":" + mask + "@"
		u.User = nil
		changed = true
	}
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for i, kv := range params {
			k, v, ok := strings.Cut(kv, "=")
			name, err := url.QueryUnescape(k)
			if ok && v != "" && err == nil && credentialName(name) {
				params[i] = k + "=" + mask
				changed = true
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	if !changed {
		return s, false
	}
	if userinfo == "" {
		return u.String(), true
	}
	scheme := u.Scheme + "://"
	return scheme + userinfo + strings.TrimPrefix(u.String(), scheme), true
}

func isHeaders(f field) bool {
	v := bytes.TrimSpace(f.value)
	return strings.EqualFold(f.name, "headers") && len(v) > 0 && v[0] == '{'
}

func jsonString(v json.RawMessage) (string, bool) {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// quote writes s as a JSON string, leaving '&' and '<' as they are.
func quote(s string) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimRight(b.Bytes(), "\n")
}

func lookupFold(fields []field, name string) (json.RawMessage, bool) {
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			return f.value, true
		}
	}
	return nil, false
}
