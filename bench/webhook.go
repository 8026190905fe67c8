package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// runEngine measures the engine load: bare keep-alive POSTers of the
// webhook's bodies, then the sidecar delivering through the webhook
// plugin, to one receiver.
func runEngine(l load) (row, error) {
	recv, err := newReceiver()
	if err != nil {
		return row{}, err
	}
	defer recv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	t := recv.expect(l.n)
	start := time.Now()
	if _, err := post(ctx, target{url: recv.url, want: http.StatusOK}, l.webhookRequests(recv.url), l.posters); err != nil {
		return row{}, err
	}
	if err := t.wait(ctx); err != nil {
		return row{}, err
	}
	bare := rate(l.n, time.Since(start))
	line(fmt.Sprintf("bare: %d keep-alive POSTers → receiver", l.posters), bare, 0, "")

	return sidecarWebhook(l, recv, bare, "≥0.5×")
}

// sidecarWebhook starts evorelay with the webhook plugin, sets a webhook
// to the receiver for every instance, and compares the load through it
// with bare.
func sidecarWebhook(l load, recv *receiver, bare float64, goal string) (row, error) {
	s, err := startSidecar("webhook", l.scenario)
	if err != nil {
		return row{}, err
	}
	defer s.stop()
	if err := s.setWebhooks(l, recv.url); err != nil {
		return row{}, err
	}
	return s.compare(l, recv.expect(l.n), "POST /events → webhook → receiver", bare, goal)
}

// runIngest measures ingest alone: the load posted to a bare server in a
// process of its own that reads each body and answers 200, then to a
// sidecar with the webhook plugin and no settings (nothing to deliver).
func runIngest(l load) (row, error) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	reqs := l.ingestRequests()

	srv, err := startBareServer()
	if err != nil {
		return row{}, err
	}
	took, err := post(ctx, target{url: srv.url + "/events", header: http.Header{"Apikey": {apiKey}}, want: http.StatusOK}, reqs, l.posters)
	srv.stop()
	if err != nil {
		return row{}, fmt.Errorf("%w %s", err, srv.logs.String())
	}
	bare := rate(l.n, took)
	line("bare: HTTP server (own process), read + 200", bare, 0, "")

	if err := bareXADDLine(l); err != nil {
		return row{}, err
	}

	s, err := startSidecar("webhook", l.scenario)
	if err != nil {
		return row{}, err
	}
	defer s.stop()
	s.profile()
	took, err = post(ctx, s.ingestTarget(), reqs, l.posters)
	if err != nil {
		return row{}, err
	}
	s.prof.loadDone()
	ingest := rate(l.n, took)
	line("evorelay: POST /events → spool (202), no sinks", ingest, bare, "goal ≥0.5×")
	return row{l.scenario, perSecond(bare), perSecond(ingest), ingest / bare, "≥0.5×"}, nil
}

// runLane measures one ordered lane: one sequential keep-alive POSTer of
// the webhook's bodies in a process of its own, then the sidecar
// delivering through the webhook plugin, to one receiver.
func runLane(l load) (row, error) {
	recv, err := newReceiver()
	if err != nil {
		return row{}, err
	}
	defer recv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	t := recv.expect(l.n)
	took, err := runBarePoster(ctx, l, recv.url)
	if err != nil {
		return row{}, err
	}
	if err := t.wait(ctx); err != nil {
		return row{}, err
	}
	bare := rate(l.n, took)
	line("bare: one sequential POSTer (own process)", bare, 0, "")

	return sidecarWebhook(l, recv, bare, "≥0.8×")
}
