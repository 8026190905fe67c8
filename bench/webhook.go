package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// runEngine measures the engine load: bare keep-alive POSTers of the
// webhook's bodies, then a bare relay of the engine's posts, then the
// sidecar delivering through the webhook plugin, to one receiver.
func runEngine(l load) (row, error) {
	return webhookScenario(l, fmt.Sprintf("bare: %d keep-alive POSTers → receiver", l.posters), "≥0.5×",
		func(ctx context.Context, url string) (time.Duration, error) {
			return post(ctx, target{url: url, want: http.StatusOK}, l.webhookRequests(url), l.posters)
		}, true)
}

// webhookScenario measures bare, which posts l's webhook bodies to a new
// receiver's url and says how long that took, then (with relay) the bare
// relay, then the same load through the sidecar and its webhook plugin to
// that receiver.
func webhookScenario(l load, name, goal string, bare func(ctx context.Context, url string) (time.Duration, error), relay bool) (row, error) {
	recv, err := newReceiver()
	if err != nil {
		return row{}, err
	}
	defer recv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	t := recv.expect(l.n)
	cpu := startMeter(0)
	took, err := bare(ctx, recv.url)
	if err == nil {
		err = t.wait(ctx)
	}
	if err != nil {
		return row{}, err
	}
	r := rate(l.n, took)
	line(name, r, 0, "")
	printCPU(cpu, l.n)

	var relayed float64
	if relay {
		if relayed, err = runBareRelay(ctx, l, recv, r); err != nil {
			return row{}, err
		}
	}

	s, err := webhookSidecar(l, recv)
	if err != nil {
		return row{}, err
	}
	defer s.stop()
	res, err := s.compare(l, recv.expect(l.n), "POST /events → webhook → receiver", r, goal)
	if err == nil && relayed > 0 {
		res.relay = relayed / r
		fmt.Printf("   evorelay: %.2f× the bare relay\n", res.ratio/res.relay)
	}
	return res, err
}

// relayConns is the bare relay's connections to the receiver: the webhook
// plugin's default per destination.
const relayConns = 64

// runBareRelay measures a -relay-bare process between the engine's posts
// (l's ingest bodies, from l.posters connections) and recv: the most any
// relay that takes a POST in and makes a POST out does on this machine,
// which bounds what the sidecar's ratio can be. It prints the rate beside
// bare's, and returns it.
func runBareRelay(ctx context.Context, l load, recv *receiver, bare float64) (float64, error) {
	reqs := l.ingestRequests()
	srv, err := startBareServer(relayBareArg, "-url", recv.url)
	if err != nil {
		return 0, err
	}
	defer srv.stop()
	t := recv.expect(l.n)
	cpu := startMeter(srv.cmd.Process.Pid)
	cpu.process = "relay"
	start := time.Now()
	_, err = post(ctx, target{url: srv.url + "/events", want: http.StatusAccepted}, reqs, l.posters)
	if err == nil {
		err = t.wait(ctx)
	}
	if err != nil {
		return 0, fmt.Errorf("bare relay: %w %s", err, srv.logs.String())
	}
	r := rate(l.n, time.Since(start))
	line("bare relay: POST → memory → POST (own process)", r, bare, "")
	printCPU(cpu, l.n)
	return r, nil
}

// webhookSidecar starts evorelay with the webhook plugin and points every
// instance of l at the receiver.
func webhookSidecar(l load, recv *receiver) (*sidecar, error) {
	s, err := startSidecar("webhook", l.scenario)
	if err != nil {
		return nil, err
	}
	if err := s.setWebhooks(l, recv.url, nil); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// runIngest measures ingest alone: the load posted to a bare server in a
// process of its own that reads each body and answers 200, then to a
// sidecar with the webhook plugin and no settings (nothing to deliver).
func runIngest(l load) (row, error) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	reqs := l.ingestRequests()

	cpu := startMeter(0)
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
	printCPU(cpu, l.n)

	if err := bareXADDLine(l); err != nil {
		return row{}, err
	}

	s, err := startSidecar("webhook", l.scenario)
	if err != nil {
		return row{}, err
	}
	defer s.stop()
	s.profile()
	cpu = startMeter(s.cmd.Process.Pid)
	took, err = post(ctx, s.ingestTarget(), reqs, l.posters)
	if err != nil {
		return row{}, err
	}
	s.prof.loadDone()
	ingest := rate(l.n, took)
	line("evorelay: POST /events → spool (202), no sinks", ingest, bare, "goal ≥0.5×")
	printCPU(cpu, l.n)
	return row{name: l.scenario, bare: perSecond(bare), evorelay: perSecond(ingest), ratio: ingest / bare, goal: "≥0.5×"}, nil
}

// runLane measures one ordered lane: one sequential keep-alive POSTer of
// the webhook's bodies in a process of its own, then the sidecar
// delivering through the webhook plugin, to one receiver.
func runLane(l load) (row, error) {
	return webhookScenario(l, "bare: one sequential POSTer (own process)", "≥0.8×",
		func(ctx context.Context, url string) (time.Duration, error) { return runBarePoster(ctx, l, url) }, false)
}
