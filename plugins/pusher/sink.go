package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/pusher/pusher-http-go/v5"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

const version = "0.1.0"

// settings are one instance's Pusher settings, as Evolution API v2 takes
// them. Validate trims the strings and writes useTLS (true when absent).
type settings struct {
	sdk.Subscription
	AppID   appID  `json:"appId"`
	Key     string `json:"key"`
	Secret  string `json:"secret"`
	Cluster string `json:"cluster"`
	UseTLS  *bool  `json:"useTLS"`
}

// useTLS is the useTLS setting, true when absent.
func (s settings) useTLS() bool { return s.UseTLS == nil || *s.UseTLS }

// hasApp reports whether the settings name an app of their own.
func (s settings) hasApp() bool {
	return s.AppID != "" || s.Key != "" || s.Secret != "" || s.Cluster != ""
}

// Sink triggers events on Pusher Channels (or a server that speaks its
// HTTP API, through EVORELAY_PUSHER_HOST).
type Sink struct {
	sdk.UnimplementedSink

	log       hclog.Logger
	naming    events.Naming
	proc      process
	transport *http.Transport
	http      *http.Client

	mu      sync.Mutex
	clients map[string]*pusher.Client // by app.hash()
}

// New returns a Pusher sink; Open configures it.
func New() *Sink {
	return &Sink{log: hclog.NewNullLogger(), clients: map[string]*pusher.Client{}}
}

// Describe names the sink. The secret is masked in find responses.
func (s *Sink) Describe() sdk.Description {
	return sdk.Description{Name: "pusher", Version: version, SecretFields: []string{"secret"}}
}

// Open reads the EVORELAY_PUSHER_* variables.
func (s *Sink) Open(_ context.Context, cfg sdk.Config) error {
	p, err := parseProcess(cfg)
	if err != nil {
		return err
	}
	s.log, s.naming, s.proc = cfg.Log(), cfg.Naming, p
	s.transport = http.DefaultTransport.(*http.Transport).Clone()
	s.http = &http.Client{Timeout: p.timeout, Transport: statusTransport{next: s.transport}}
	if p.global != nil {
		s.log.Info("global Pusher app configured", "app_id", p.global.AppID, "cluster", p.global.Cluster, "host", p.host)
	} else {
		s.log.Info("no global Pusher app configured: each instance's settings carry its own appId, key, secret and cluster")
	}
	return nil
}

// Validate checks an instance's settings. Enabled settings need appId,
// key, secret and cluster, unless a global app is configured and they
// name none of the four; the instance's name must be a Pusher channel name.
func (s *Sink) Validate(_ context.Context, instance string, raw json.RawMessage) (json.RawMessage, error) {
	st, err := sdk.ParseSettings[settings](raw)
	if err != nil {
		return nil, err
	}
	st.Key, st.Secret, st.Cluster = strings.TrimSpace(st.Key), strings.TrimSpace(st.Secret), strings.TrimSpace(st.Cluster)
	useTLS := st.useTLS()
	st.UseTLS = &useTLS
	var fe sdk.FieldErrors
	if st.Enabled {
		if st.hasApp() || s.proc.global == nil {
			checkApp(string(st.AppID), st.Key, st.Secret, st.Cluster, fe.Add)
		}
		if _, err := channelName(instance); err != nil {
			fe.Add("instance", "%v", err)
		}
		if len(fe) > 0 {
			return nil, fe
		}
	}
	return json.Marshal(st)
}

// Health is always ready: Pusher is reached per request.
func (s *Sink) Health(context.Context) sdk.Health {
	if s.proc.global != nil {
		return sdk.Health{Ready: true, Detail: "global app " + s.proc.global.AppID}
	}
	return sdk.Health{Ready: true}
}

// maxBatchEvents is the most events one batch_events call takes.
const maxBatchEvents = 10

// maxSenders bounds the TriggerBatch calls one Deliver has in flight.
const maxSenders = 8

// job is one delivery ready to trigger on its app.
type job struct {
	id    string
	app   app
	event pusher.Event
}

// Deliver triggers the batch with TriggerBatch, app by app: at most 10
// events a call, in order for one app; different apps in parallel.
func (s *Sink) Deliver(ctx context.Context, batch []sdk.Delivery, acks sdk.Acks) error {
	var lanes sdk.Lanes[job]
	for _, d := range batch {
		st, err := sdk.SettingsOf[settings](d)
		if err != nil {
			acks.Done(d.ID, err)
			continue
		}
		a, err := s.appFor(st)
		if err != nil {
			acks.Done(d.ID, err)
			continue
		}
		channel, err := channelName(d.Instance)
		if err != nil {
			acks.Done(d.ID, sdk.Permanent(fmt.Errorf("pusher: %w", err)))
			continue
		}
		data, err := buildPayload(d)
		if err != nil {
			acks.Done(d.ID, err)
			continue
		}
		lanes.Add(a.hash(), job{id: d.ID, app: a, event: pusher.Event{Channel: channel, Name: events.Wire(d.Event), Data: data}})
	}
	lanes.Run(maxSenders, func(_ string, jobs []job) {
		a := jobs[0].app
		c := s.client(a)
		for js := range slices.Chunk(jobs, maxBatchEvents) {
			if ctx.Err() != nil {
				for _, j := range js {
					acks.Done(j.id, fmt.Errorf("pusher: %w", ctx.Err()))
				}
				continue
			}
			evs := make([]pusher.Event, len(js))
			for i, j := range js {
				evs[i] = j.event
			}
			_, err := c.TriggerBatch(evs)
			err = outcome(a, err)
			for _, j := range js {
				acks.Done(j.id, err)
			}
		}
	})
	return nil
}

// appFor is the app an instance's events go to: its own, or the global one.
func (s *Sink) appFor(st settings) (app, error) {
	if st.hasApp() {
		a := app{AppID: string(st.AppID), Key: st.Key, Secret: st.Secret, Cluster: st.Cluster, UseTLS: st.useTLS()}
		if a.AppID == "" || a.Key == "" || a.Secret == "" || a.Cluster == "" {
			return app{}, sdk.Permanent(errors.New("pusher: the instance's settings lack some of appId, key, secret and cluster; set them again"))
		}
		return a, nil
	}
	if s.proc.global != nil {
		return *s.proc.global, nil
	}
	return app{}, sdk.Permanent(errors.New("pusher: the instance's settings name no app and no global app is configured (EVORELAY_PUSHER_GLOBAL)"))
}

// client returns the cached client of an app, building it the first time.
func (s *Sink) client(a app) *pusher.Client {
	h := a.hash()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[h]; ok {
		return c
	}
	c := &pusher.Client{
		AppID:      a.AppID,
		Key:        a.Key,
		Secret:     a.Secret,
		Cluster:    a.Cluster,
		Secure:     a.UseTLS,
		Host:       s.proc.host,
		HTTPClient: s.http,
	}
	s.clients[h] = c
	return c
}

// outcome turns a TriggerBatch result into the acks' error.
func outcome(a app, err error) error {
	if err == nil {
		return nil
	}
	var se *statusError
	if errors.As(err, &se) {
		switch {
		case se.code == http.StatusUnauthorized || se.code == http.StatusForbidden:
			return sdk.Permanent(fmt.Errorf("pusher: app %s refused the request (%v); check the instance's appId, key and secret (a 403 also means the app is disabled or over its message quota)", a.AppID, se))
		case se.code == http.StatusRequestEntityTooLarge:
			return sdk.Permanent(fmt.Errorf("pusher: app %s refused the event as too large (%v)", a.AppID, se))
		case se.code == http.StatusRequestTimeout || se.code == http.StatusTooManyRequests || se.code >= 500:
			err := fmt.Errorf("pusher: app %s: %v", a.AppID, se)
			if se.retryAfter > 0 {
				return sdk.RetryAfter(err, se.retryAfter)
			}
			return err
		}
		return sdk.Permanent(fmt.Errorf("pusher: app %s refused the event (%v)", a.AppID, se))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("pusher: app %s: %w", a.AppID, err) // the network: retry
	}
	// pusher-http-go refused before sending; the same input fails again.
	return sdk.Permanent(fmt.Errorf("pusher: app %s: %w", a.AppID, err))
}

// Close closes idle connections.
func (s *Sink) Close(context.Context) error {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}
