package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/evorelay/evorelay/sdk"
)

// appID is a Pusher app id: a number, which clients send either way.
type appID string

func (a *appID) UnmarshalJSON(b []byte) error {
	var n json.Number
	if json.Unmarshal(b, &n) == nil {
		*a = appID(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: "value " + string(b), Type: reflect.TypeFor[string]()}
	}
	*a = appID(strings.TrimSpace(s))
	return nil
}

var (
	appIDPattern   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	keyPattern     = regexp.MustCompile(`^[!-~]{1,128}$`) // printable ASCII, no space
	clusterPattern = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
)

// checkApp checks an app's four credentials, reporting each bad one to
// add by its settings field name.
func checkApp(appID, key, secret, cluster string, add func(field, format string, args ...any)) {
	switch {
	case appID == "":
		add("appId", "required when enabled")
	case !appIDPattern.MatchString(appID):
		add("appId", "%q is not a Pusher app id (e.g. 1234567)", appID)
	}
	switch {
	case key == "":
		add("key", "required when enabled")
	case !keyPattern.MatchString(key):
		add("key", "not a Pusher app key (printable characters, no spaces)")
	}
	if secret == "" {
		add("secret", "required when enabled")
	}
	switch {
	case cluster == "":
		add("cluster", "required when enabled (e.g. mt1, us2, eu)")
	case !clusterPattern.MatchString(cluster):
		add("cluster", "%q is not a Pusher cluster (e.g. mt1, us2, eu)", cluster)
	}
}

// channelName is the Pusher channel an instance's events go to: the
// instance's name. Pusher accepts at most 200 of A-Z, a-z, 0-9 and
// "-_=@,.;"; "private-encrypted-" channels need a key this sink has not.
func channelName(instance string) (string, error) {
	switch {
	case len(instance) > 200:
		return "", fmt.Errorf("channel name %q is %d characters; Pusher allows at most 200", instance, len(instance))
	case !channelPattern.MatchString(instance):
		return "", fmt.Errorf("channel name %q: Pusher allows only A-Z, a-z, 0-9 and -_=@,.;", instance)
	case strings.HasPrefix(instance, "private-encrypted-"):
		return "", fmt.Errorf("channel name %q is an end-to-end encrypted channel, which this sink cannot encrypt for", instance)
	}
	return instance, nil
}

var channelPattern = regexp.MustCompile(`^[-a-zA-Z0-9_=@,.;]+$`)

// app is one Pusher app the sink triggers events on.
type app struct {
	AppID, Key, Secret, Cluster string
	UseTLS                      bool
}

// hash keys the client cache: a client is rebuilt when any of the app's
// settings change.
func (a app) hash() string {
	h := sha256.New()
	for _, s := range []string{a.AppID, a.Key, a.Secret, a.Cluster, strconv.FormatBool(a.UseTLS)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func envName(key string) string { return "EVORELAY_PUSHER_" + strings.ToUpper(key) }

// process are the EVORELAY_PUSHER_* settings.
type process struct {
	global  *app // the global app, when EVORELAY_PUSHER_GLOBAL is true
	host    string
	timeout time.Duration
}

// parseProcess reads and checks the EVORELAY_PUSHER_* variables and warns
// about those it does not know. Errors name the variable.
func parseProcess(cfg sdk.Config) (process, error) {
	p := process{timeout: 10 * time.Second}
	a := app{UseTLS: true}
	global := false
	err := cfg.ReadSettings(sdk.Settings{
		"host": func(v string) error {
			if strings.Contains(v, "://") || strings.ContainsAny(v, "/ ?#") {
				return fmt.Errorf("%q: give host or host:port, without a scheme or path (TLS follows useTLS)", v)
			}
			if _, err := url.Parse("http://" + v); err != nil {
				return fmt.Errorf("%q: %v", v, err)
			}
			p.host = v
			return nil
		},
		"timeout": sdk.Duration(&p.timeout),
		"global":  sdk.Bool(&global),
		"app_id":  sdk.Text(&a.AppID),
		"key":     sdk.Text(&a.Key),
		"secret":  sdk.Text(&a.Secret),
		"cluster": sdk.Text(&a.Cluster),
		"use_tls": sdk.Bool(&a.UseTLS),
	}, envName(""))
	if err != nil {
		return p, err
	}
	if !global {
		for _, k := range []string{"app_id", "key", "secret", "cluster"} {
			if strings.TrimSpace(cfg.Settings[k]) != "" {
				return p, fmt.Errorf("%s: set, but %s is not true; set it to send to this app", envName(k), envName("global"))
			}
		}
		return p, nil
	}
	var errs []string
	vars := map[string]string{"appId": "app_id", "key": "key", "secret": "secret", "cluster": "cluster"}
	checkApp(a.AppID, a.Key, a.Secret, a.Cluster, func(field, format string, args ...any) {
		errs = append(errs, envName(vars[field])+": "+strings.Replace(fmt.Sprintf(format, args...), "when enabled", "when "+envName("global")+" is true", 1))
	})
	if len(errs) > 0 {
		return p, errors.New(strings.Join(errs, "; "))
	}
	p.global = &a
	return p, nil
}
