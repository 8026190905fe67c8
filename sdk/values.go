package sdk

import (
	"crypto/x509"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a process setting that is a positive duration: Go's
// syntax (10s, 1m30s) or a number of seconds (30, 1.5). Its error says
// what was expected; prefix it with the variable's name, e.g.
// fmt.Errorf("EVORELAY_KAFKA_TIMEOUT: %w", err).
func ParseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		s, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil || s > (1<<62)/float64(time.Second) {
			return 0, fmt.Errorf("%q is not a duration; expected e.g. 10s, 1m30s or a number of seconds", v)
		}
		d = time.Duration(s * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be more than zero", v)
	}
	return d, nil
}

// ParseSize reads a process setting that is a number of bytes from 1 to
// max, optionally with a KiB, MiB or GiB suffix (64MiB).
func ParseSize(v string, max int64) (int64, error) {
	num, mult := v, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 1 || n > max/mult {
		return 0, fmt.Errorf("%q: expected a number of bytes from 1 to %d, e.g. 1048576 or 1MiB", v, max)
	}
	return n * mult, nil
}

// ParseCount reads a process setting that is a whole number from lo to hi.
func ParseCount(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q: expected a whole number from %d to %d", v, lo, hi)
	}
	return n, nil
}

// Settings says how a plugin reads its process settings (Config.Settings):
// the Setting for each key it knows.
//
//	c := config{timeout: 10 * time.Second, retries: 3}
//	unknown, err := sdk.Settings{
//		"timeout": sdk.Duration(&c.timeout),
//		"retries": sdk.Count(&c.retries, 0, 10),
//		"brokers": func(v string) error { return c.setBrokers(v) },
//	}.Read(cfg.Settings, "EVORELAY_KAFKA_")
type Settings map[string]Setting

// A Setting reads one process setting's value, white space trimmed and
// never empty, into where the plugin keeps it. Its error says what was
// wrong and what is expected; Read prefixes it with the variable.
type Setting func(value string) error

// Read hands each value in m, in key order and with white space trimmed,
// to its key's Setting. An empty value is as if the variable were not set:
// the setting keeps its default. It returns the first error, prefixed with
// the variable it came from (prefix and the key in upper case), or the
// variables of the keys s has no Setting for, sorted, for Open to warn
// about.
func (s Settings) Read(m map[string]string, prefix string) (unknown []string, err error) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		set, ok := s[k]
		v := strings.TrimSpace(m[k])
		switch {
		case !ok:
			unknown = append(unknown, prefix+strings.ToUpper(k))
		case v == "":
		default:
			if err := set(v); err != nil {
				return nil, fmt.Errorf("%s%s: %w", prefix, strings.ToUpper(k), err)
			}
		}
	}
	return unknown, nil
}

// Duration is a Setting for a positive duration (ParseDuration).
func Duration(to *time.Duration) Setting {
	return func(v string) error { return into(to, v, ParseDuration) }
}

// Count is a Setting for a whole number from lo to hi (ParseCount).
func Count(to *int, lo, hi int) Setting {
	return func(v string) error {
		return into(to, v, func(v string) (int, error) { return ParseCount(v, lo, hi) })
	}
}

// Size is a Setting for a number of bytes from 1 to max (ParseSize).
func Size[T int | int64](to *T, max int64) Setting {
	return func(v string) error {
		return into(to, v, func(v string) (T, error) {
			n, err := ParseSize(v, max)
			return T(n), err
		})
	}
}

// Bool is a Setting for true or false (or what else strconv.ParseBool
// takes: 1, 0, t, f).
func Bool(to *bool) Setting {
	return func(v string) error {
		return into(to, v, func(v string) (bool, error) {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return false, fmt.Errorf("%q is not a boolean; expected true or false", v)
			}
			return b, nil
		})
	}
}

// into sets *to to what parse makes of v, unless parse fails.
func into[T any](to *T, v string, parse func(string) (T, error)) error {
	x, err := parse(v)
	if err != nil {
		return err
	}
	*to = x
	return nil
}

// Text is a Setting for any text.
func Text(to *string) Setting {
	return func(v string) error {
		*to = v
		return nil
	}
}

// Backoff is the delay before reconnect attempt n (from 1): 500ms doubling
// up to max, each drawn at random from its upper half so that many
// plugins do not reconnect in step.
func Backoff(n int, max time.Duration) time.Duration {
	d := 500 * time.Millisecond
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// LoadCA reads the PEM certificates in file into a pool, for a process
// setting that names a private CA (e.g. EVORELAY_RABBITMQ_TLS_CA). Its
// error says what was expected; prefix it with the variable's name.
func LoadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate; expected the CA certificate that signed the server's", file)
	}
	return pool, nil
}
