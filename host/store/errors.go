package store

import "errors"

// ErrNotFound is returned for an instance that has no settings for a sink.
var ErrNotFound = errors.New("store: no settings")
