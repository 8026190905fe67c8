package sinktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

// Unique returns a name no other test run uses: prefix, a dash and ten
// hex digits (a valid subject token, stream, queue or exchange name).
func Unique(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// Logger is a plugin logger for tests: warnings and errors to stderr.
func Logger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: os.Stderr, Level: hclog.Warn})
}

// TestLogger is a plugin logger for a plugin's own tests: lines at level
// and above go to t's log while t runs, and are dropped after, so that a
// goroutine the sink leaves behind cannot make the test binary panic.
func TestLogger(t testing.TB, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: newTestLog(t), Level: level})
}

// SettingsCase is one case for ParseSettings.
type SettingsCase[P any] struct {
	Name string
	In   map[string]string
	// Check, if set, looks at what was parsed.
	Check func(t *testing.T, ps P)
	// Err, if set, is in the error parsing must return.
	Err string
	// Unknown, if set, is a variable parsing must warn about.
	Unknown string
}

// ParseSettings runs each case through a plugin's process settings
// parser, which reads Config.Settings and warns on Config.Logger. An error
// must contain the case's Err and never the password "s3cret" a case may
// put in a URL.
func ParseSettings[P any](t *testing.T, parse func(sdk.Config) (P, error), cases []SettingsCase[P]) {
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			var log strings.Builder
			ps, err := parse(sdk.Config{Settings: tt.In, Logger: hclog.New(&hclog.LoggerOptions{Output: &log})})
			if tt.Err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.Err) {
					t.Fatalf("error = %v, want one containing %q", err, tt.Err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if tt.Unknown != "" && !strings.Contains(log.String(), "unknown setting ignored: setting="+tt.Unknown) {
				t.Errorf("log %q, want a warning about %s", log.String(), tt.Unknown)
			}
			if tt.Check != nil {
				tt.Check(t, ps)
			}
		})
	}
}

// ValidateCase is one case for Validate.
type ValidateCase struct {
	Name     string
	Instance string // "" is DefaultInstance
	Settings string
	// Want are the settings Validate must return, normalized, when Fields
	// is empty.
	Want string
	// Fields are the fields Validate must refuse, each with a message that
	// contains Msg.
	Fields []string
	Msg    string
}

// Validate runs each case through an open sink's Validate.
func Validate(t *testing.T, s sdk.Sink, cases []ValidateCase) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			ctx, cancel := callCtx(t)
			defer cancel()
			inst := tc.Instance
			if inst == "" {
				inst = DefaultInstance
			}
			out, err := s.Validate(ctx, inst, json.RawMessage(tc.Settings))
			for _, f := range tc.Fields {
				FieldError(t, err, f, tc.Msg)
			}
			switch {
			case len(tc.Fields) > 0:
			case err != nil:
				t.Fatalf("Validate(%s): %v", tc.Settings, err)
			case string(out) != tc.Want:
				t.Errorf("Validate(%s) = %s, want %s", tc.Settings, out, tc.Want)
			}
		})
	}
}

// NotConfigured opens s without process settings, so without the
// variable it needs, and checks that it runs: Health says what to set,
// Validate refuses to enable an instance with a field error on enabled
// naming variable but keeps disabled settings, Deliver acks with a
// retryable error, and Close succeeds.
func NotConfigured(t *testing.T, s sdk.Sink, variable string) {
	t.Helper()
	if err := s.Open(context.Background(), sdk.Config{Settings: map[string]string{}}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	h := s.Health(context.Background())
	if h.Ready || !strings.Contains(h.Detail, "not configured: set "+variable) {
		t.Errorf("Health = %+v", h)
	}
	_, err := s.Validate(context.Background(), "acme", json.RawMessage(`{"enabled":true,"events":[]}`))
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "enabled" || !strings.Contains(fe[0].Message, variable) {
		t.Errorf("Validate enabled = %v, want a field error on enabled naming %s", err, variable)
	}
	off := json.RawMessage(`{"enabled":false,"events":["CALL"]}`)
	if got, err := s.Validate(context.Background(), "acme", off); err != nil || string(got) != string(off) {
		t.Errorf("Validate disabled = %s, %v; want it kept", got, err)
	}
	acks := Deliver(t, s, 0, Delivery(t, "d1", "acme", "CALL", `{"enabled":true,"events":[]}`))
	if err := acks["d1"]; err == nil || sdk.IsPermanent(err) {
		t.Errorf("Deliver while not configured acked %v, want a retryable error", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// Unreachable opens s with settings that point at a destination nobody
// listens on (or that refuses it), closes it when t ends, and checks that
// Open succeeds anyway (the sink keeps trying), that Health is not ready
// and its Detail comes to contain detail, and that a delivery is acked at
// once with a retryable "not connected" error. It returns s for the
// test's own checks.
func Unreachable[S sdk.Sink](t *testing.T, s S, settings map[string]string, detail string) S {
	t.Helper()
	if err := s.Open(context.Background(), sdk.Config{Settings: settings, Logger: TestLogger(t, hclog.Warn)}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	Eventually(t, "Health to say "+detail, 30*time.Second, func() bool {
		h := s.Health(context.Background())
		if h.Ready {
			t.Fatalf("Health = %+v, want not ready", h)
		}
		return strings.Contains(h.Detail, detail)
	})
	acks := Deliver(t, s, 0, Delivery(t, "d1", "acme", "CALL", `{"enabled":true,"events":[]}`))
	if err := acks["d1"]; err == nil || sdk.IsPermanent(err) || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("ack = %v, want a retryable not-connected error", err)
	}
	return s
}

// OpenFails fails t unless s.Open refuses process settings with an error
// that contains each of want: the variable, what was expected.
func OpenFails(t testing.TB, s sdk.Sink, settings map[string]string, want ...string) {
	t.Helper()
	err := s.Open(context.Background(), sdk.Config{Settings: settings})
	if err == nil {
		_ = s.Close(context.Background())
		t.Fatalf("Open(%v) succeeded, want an error with %q", settings, want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Open(%v) = %v, want an error with %q", settings, err, w)
		}
	}
}

// Open opens s with cfg for a plugin's own tests, closes it when the test
// ends (failing t if Close fails), and waits until its Health is ready.
func Open(t testing.TB, s sdk.Sink, cfg sdk.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Open(ctx, cfg); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	Eventually(t, "the sink to connect", 30*time.Second, func() bool { return s.Health(ctx).Ready })
}

// OpenWith opens s as Open does, with naming and the process settings of
// every map in settings (a later map's keys win), its log on stderr
// (Logger), and returns it:
//
//	s := sinktest.OpenWith(t, New(), events.NamingSeed, map[string]string{"url": url}, extra)
func OpenWith[S sdk.Sink](t testing.TB, s S, naming events.Naming, settings ...map[string]string) S {
	t.Helper()
	cfg := sdk.Config{Settings: map[string]string{}, Naming: naming, Logger: Logger(s.Describe().Name + "-test")}
	for _, m := range settings {
		maps.Copy(cfg.Settings, m)
	}
	Open(t, s, cfg)
	return s
}
