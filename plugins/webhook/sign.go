package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// secretPrefix starts every Standard Webhooks secret.
const secretPrefix = "whsec_"

// errSecret is the one message for every bad secret; it never repeats the
// secret.
var errSecret = errors.New(`must be "whsec_" followed by the base64 of 24 to 64 random bytes (a Standard Webhooks secret), e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`)

// decodeSecret returns the HMAC key of a whsec_ secret.
func decodeSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, errSecret
	}
	key, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, errSecret
	}
	return key, nil
}

// signature is the webhook-signature header value: v1 and the base64
// HMAC-SHA256 of "id.timestamp.body".
func signature(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
