package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// sidecar is one evorelay process the tool started; plugin is the sink
// its scenario delivers to.
type sidecar struct {
	plugin   string
	scenario string
	base     string
	debug    string // EVORELAY_DEBUG_ADDR, with -pprof
	dir      string
	cmd      *exec.Cmd
	client   *http.Client
	logs     bytes.Buffer
	prof     *profiling // the profile of its load, with -pprof
}

const apiKey = "bench-key"

// freeAddr is a loopback address nothing listens on (at the moment).
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startSidecar starts bin/evorelay on a free loopback port with every
// plugin of bin/plugins, as it is deployed (the named one is the
// scenario's; the others cost what a sink no instance has set costs), a
// fresh data dir (or Redis prefix, with -backend redis), the receivers on
// 127.0.0.1 allowed, -env, and extra env; and waits until it is ready.
// stop ends it and removes its files.
func startSidecar(plugin, scenario string, env ...string) (*sidecar, error) {
	dir, err := os.MkdirTemp("", "evorelay-bench-")
	if err != nil {
		return nil, err
	}
	s := &sidecar{plugin: plugin, scenario: scenario, dir: dir, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	plugins, err := filepath.Abs(filepath.Join(*binDir, "plugins"))
	if err == nil {
		_, err = os.Stat(filepath.Join(plugins, "evorelay-sink-"+plugin))
	}
	addr := ""
	if err == nil {
		addr, err = freeAddr()
	}
	if err == nil && *pprofDir != "" {
		s.debug, err = freeAddr()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the sidecar (did make build run?): %w", err)
	}
	s.base = "http://" + addr
	s.cmd = exec.Command(filepath.Join(*binDir, "evorelay"))
	s.cmd.Env = append(os.Environ(), "EVORELAY_ADDR="+addr, "EVORELAY_API_KEY="+apiKey,
		"EVORELAY_DATA_DIR="+filepath.Join(dir, "data"), "EVORELAY_PLUGIN_DIR="+plugins, "EVORELAY_LOG_LEVEL=warn",
		// The receivers are on this machine; plugins refuse loopback otherwise.
		"EVORELAY_EGRESS_ALLOW=127.0.0.1/32")
	if s.debug != "" {
		s.cmd.Env = append(s.cmd.Env, "EVORELAY_DEBUG_ADDR="+s.debug)
	}
	s.cmd.Env = append(s.cmd.Env, backendEnv(scenario)...)
	s.cmd.Env = append(s.cmd.Env, sidecarEnv...)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stderr = &s.logs
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := s.call("GET", "/readyz", nil); code == 200 {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("sidecar not ready: %s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop waits for the profile of its load, if one is being fetched, then
// ends the sidecar.
func (s *sidecar) stop() {
	if s.prof != nil {
		s.prof.wait()
	}
	if *metrics {
		s.printMetrics()
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	os.RemoveAll(s.dir)
}

// printMetrics prints the /metrics lines of the sidecar's sink (-metrics).
func (s *sidecar) printMetrics() {
	code, body := s.call("GET", "/metrics", nil)
	if code != http.StatusOK {
		fmt.Printf("GET /metrics: %d %s\n", code, body)
		return
	}
	fmt.Printf("\n   GET /metrics, sink %s:\n", s.plugin)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.Contains(line, `sink="`+s.plugin+`"`) {
			fmt.Println("   " + line)
		}
	}
	fmt.Println()
}

// call sends one request with the API key and returns the status and body.
func (s *sidecar) call(method, path string, body []byte) (int, []byte) {
	req, _ := http.NewRequest(method, s.base+path, bytes.NewReader(body))
	req.Header.Set("apikey", apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// set stores an instance's settings for the sidecar's plugin.
func (s *sidecar) set(instance string, settings any) error {
	b, _ := json.Marshal(settings)
	if code, body := s.call("POST", "/"+s.plugin+"/set/"+instance, b); code != 201 {
		return fmt.Errorf("set %s for %s: %d %s", s.plugin, instance, code, body)
	}
	return nil
}

// setWebhooks points every instance of l at the receiver's url, with the
// settings members of extra beside.
func (s *sidecar) setWebhooks(l load, url string, extra map[string]any) error {
	for _, name := range l.names {
		settings := map[string]any{"url": url, "enabled": true, "events": []string{"MESSAGES_UPSERT"}}
		maps.Copy(settings, extra)
		if err := s.set(name, settings); err != nil {
			return err
		}
	}
	return nil
}

// ingestTarget is the sidecar's POST /events.
func (s *sidecar) ingestTarget() target {
	return target{url: s.base + "/events", header: http.Header{"Apikey": {apiKey}}, want: http.StatusAccepted}
}

// result is what a sidecar achieved on a load.
type result struct {
	delivered float64 // events/s from the first POST to the last arrival
	ingest    float64 // events/s accepted (202)
	cpu       string  // CPU per event of the host, the plugin, the rest
}

// waiter is a destination's count of arrivals (a receiver's tally, a
// broker's counter).
type waiter interface {
	wait(context.Context) error
}

// measure posts the load's requests to the sidecar as an engine would and
// waits until every event arrived at the destination.
func (s *sidecar) measure(l load, arrived waiter) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	reqs := l.ingestRequests() // made before the clock starts, as the bare runs' are
	prof := s.profile()
	cpu := startMeter(s.cmd.Process.Pid)
	start := time.Now()
	ingested, err := post(ctx, s.ingestTarget(), reqs, l.posters)
	if err != nil {
		return result{}, err
	}
	if err := arrived.wait(ctx); err != nil {
		return result{}, err
	}
	delivered := time.Since(start)
	prof.loadDone()
	return result{delivered: rate(l.n, delivered), ingest: rate(l.n, ingested), cpu: cpu.perEvent(l.n)}, nil
}

// compare measures the load through s, prints it beside the bare rate,
// and returns the scenario's row.
func (s *sidecar) compare(l load, arrived waiter, path string, bare float64, goal string) (row, error) {
	res, err := s.measure(l, arrived)
	if err != nil {
		return row{}, err
	}
	line("evorelay: "+path, res.delivered, bare, fmt.Sprintf("goal %s   ingest %.0f events/s", goal, res.ingest))
	if res.cpu != "" {
		fmt.Println("   " + res.cpu)
	}
	return row{name: l.scenario, bare: perSecond(bare), evorelay: perSecond(res.delivered), ratio: res.delivered / bare, goal: goal}, nil
}

// profiling is a CPU profile of the host being fetched (-pprof).
type profiling struct {
	start time.Time
	done  chan string // what became of it
	load  time.Duration
}

// profile starts fetching a CPU profile of -pprof-seconds from the host's
// EVORELAY_DEBUG_ADDR into -pprof/host-<scenario>.pprof, to be awaited by
// stop; nothing without -pprof.
func (s *sidecar) profile() *profiling {
	p := &profiling{start: time.Now()}
	s.prof = p
	if s.debug == "" {
		return p
	}
	p.done = make(chan string, 1)
	go func() { p.done <- s.fetchProfile() }()
	return p
}

func (s *sidecar) fetchProfile() string {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.debug, *pprofSeconds)
	client := &http.Client{Timeout: time.Duration(*pprofSeconds)*time.Second + 30*time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Sprintf("no host profile: %v (does this host serve net/http/pprof at EVORELAY_DEBUG_ADDR?)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Sprintf("no host profile: GET %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	path := filepath.Join(*pprofDir, "host-"+s.scenario+".pprof")
	f, err := os.Create(path)
	if err == nil {
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Sprintf("no host profile: %s: %v", path, err)
	}
	return "host CPU profile: " + path + "  (go tool pprof -top " + path + ")"
}

// loadDone marks the end of the load the profile is meant to cover.
func (p *profiling) loadDone() { p.load = time.Since(p.start) }

// wait waits for the profile and prints what became of it.
func (p *profiling) wait() {
	if p.done == nil {
		return
	}
	msg := <-p.done
	fmt.Printf("   %s\n", msg)
	if secs := time.Duration(*pprofSeconds) * time.Second; p.load > 0 && p.load < secs && strings.HasPrefix(msg, "host CPU") {
		fmt.Printf("   (the load ran %s of its %s; more -events for a profile of load only)\n", p.load.Round(time.Millisecond), secs)
	}
}
