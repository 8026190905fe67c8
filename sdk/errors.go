package sdk

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// permanentError marks a failure that retrying cannot fix.
type permanentError struct {
	err     error
	disable bool
}

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the delivery is dead-lettered
// with err as its reason. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// Gone marks err as permanent and asks the host to disable the instance's
// sink until its settings are set again (an HTTP 410 Gone). Gone(nil) is nil.
func Gone(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err, disable: true}
}

// RetryAfter marks err as transient, to be retried no sooner than after
// (a Retry-After header). RetryAfter(nil, d) is nil.
func RetryAfter(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, after: after}
}

// IsPermanent reports whether err was marked Permanent or Gone.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// FieldError is one bad settings field, as Validate returns it.
type FieldError struct {
	Field   string
	Message string
}

// FieldErrors are the bad fields of one settings object. The API answers
// 400 with one message per field.
type FieldErrors []FieldError

func (fe FieldErrors) Error() string {
	parts := make([]string, len(fe))
	for i, e := range fe {
		parts[i] = e.Field + ": " + e.Message
	}
	return strings.Join(parts, "; ")
}

// Add appends an error about field.
func (fe *FieldErrors) Add(field, format string, args ...any) {
	*fe = append(*fe, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns fe as an error, or nil when it is empty.
func (fe FieldErrors) Err() error {
	if len(fe) == 0 {
		return nil
	}
	return fe
}
