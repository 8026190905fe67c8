package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/evorelay/evorelay/sdk/events"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// States a plugin is in.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting"
	// StateFailed: it keeps dying; it is still restarted, with backoff.
	StateFailed  = "failed"
	StateStopped = "stopped"
)

// Supervision timings.
var (
	healthEvery     = 5 * time.Second
	healthTimeout   = 3 * time.Second
	healthFailures  = 3 // consecutive failed checks before the process is replaced
	exitPoll        = 200 * time.Millisecond
	restartBackoff0 = 200 * time.Millisecond
	restartBackoffN = 30 * time.Second
	failedAfter     = 5                // restarts in a row without a stable process → failed
	stableAfter     = time.Minute      // a process up this long ends a crash loop
	startTimeout    = 30 * time.Second // for the plugin's handshake line
)

// Status is what GET /plugins shows of a plugin.
type Status struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	State     string `json:"state"`
	Restarts  int    `json:"restarts"`
	PID       int    `json:"pid,omitempty"`
	Ready     bool   `json:"ready"`
	Detail    string `json:"detail,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Gauges are the plugin's own measurements, as of its last health
	// check.
	Gauges map[string]float64 `json:"gauges,omitempty"`
	// Counters are the plugin's running totals since its process started,
	// as of its last health check.
	Counters map[string]float64 `json:"counters,omitempty"`
}

// Plugin is one sink plugin and the process that currently serves it.
type Plugin struct {
	name, path string
	opts       Options
	logger     hclog.Logger

	mu        sync.Mutex
	desc      *sinkv1.DescribeResponse
	client    *plugin.Client
	rpc       sinkv1.SinkClient
	state     string
	restarts  int
	crashes   int // restarts since the last stable process
	since     time.Time
	pid       int
	health    sinkv1.HealthResponse
	lastError string
	ready     chan struct{} // closed while a client is running
	stopping  bool
	done      chan struct{} // closed by stop
}

func newPlugin(name, path string, opts Options) *Plugin {
	return &Plugin{
		name: name, path: path, opts: opts,
		logger: opts.Logger.Named("pluginhost").With("sink", name),
		state:  StateStarting,
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// Name is the sink's name.
func (p *Plugin) Name() string { return p.name }

// Describe is what the plugin said of itself.
func (p *Plugin) Describe() *sinkv1.DescribeResponse {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desc
}

// Client waits until the plugin has a running process and returns its
// client. The client stops working when that process dies; ask again.
func (p *Plugin) Client(ctx context.Context) (sinkv1.SinkClient, error) {
	for {
		p.mu.Lock()
		rpc, ready, stopping := p.rpc, p.ready, p.stopping
		p.mu.Unlock()
		if stopping {
			return nil, fmt.Errorf("pluginhost: %s is stopped", p.name)
		}
		if rpc != nil {
			return rpc, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Status reports the plugin's state.
func (p *Plugin) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{
		Name: p.name, State: p.state, Restarts: p.restarts, PID: p.pid,
		Ready: p.state == StateRunning && p.health.Ready, Detail: p.health.Detail,
		LastError: p.lastError, Gauges: p.health.Gauges, Counters: p.health.Counters,
	}
	if p.desc != nil {
		s.Version = p.desc.Version
	}
	return s
}

// start launches a process, describes and opens it.
func (p *Plugin) start(ctx context.Context) error {
	cmd := exec.Command(p.path)
	cmd.Env = pluginEnv(p.name, os.Environ())
	// The plugin logs at the host's level (sdk.Serve reads this), whether
	// the host's came from the environment or the YAML file.
	cmd.Env = append(cmd.Env, "EVORELAY_LOG_LEVEL="+p.opts.Logger.GetLevel().String())
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sinkv1.Handshake,
		VersionedPlugins: versionedPlugins,
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         !sinkv1.ProcessLink,
		Logger:           pluginLogger{p.opts.Logger.Named("plugin").With("sink", p.name)},
		StartTimeout:     startTimeout,
		GRPCDialOptions:  linkOptions(cmd),
	})
	rpc, desc, err := p.handshake(ctx, client)
	if err != nil {
		client.Kill()
		return fmt.Errorf("pluginhost: %s (%s): %w", p.name, p.path, err)
	}
	health, _ := rpc.Health(ctx, &sinkv1.HealthRequest{})
	p.mu.Lock()
	if p.stopping {
		// The host stopped while this process was starting.
		p.mu.Unlock()
		client.Kill()
		return fmt.Errorf("pluginhost: %s: stopped while starting", p.name)
	}
	p.client, p.rpc, p.desc = client, rpc, desc
	if rc := client.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	if health != nil {
		p.health = sinkv1.HealthResponse{Ready: health.Ready, Detail: health.Detail, Gauges: health.Gauges, Counters: health.Counters}
	}
	p.since = time.Now()
	p.state = StateRunning
	if p.crashes >= failedAfter {
		p.state = StateFailed
	}
	close(p.ready)
	p.mu.Unlock()
	p.logger.Info("plugin running", "version", desc.Version, "pid", p.pid)
	return nil
}

func (p *Plugin) handshake(ctx context.Context, client *plugin.Client) (sinkv1.SinkClient, *sinkv1.DescribeResponse, error) {
	proto, err := client.Client()
	if err != nil {
		return nil, nil, fmt.Errorf("launch: %w", versionHint(err))
	}
	raw, err := proto.Dispense(sinkv1.PluginName)
	if err != nil {
		return nil, nil, fmt.Errorf("dispense: %w", err)
	}
	rpc := raw.(sinkv1.SinkClient)
	desc, err := rpc.Describe(ctx, &sinkv1.DescribeRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("describe: %w", err)
	}
	if desc.Name != p.name {
		return nil, nil, fmt.Errorf("binary %s describes itself as %q; name the file %s%s", filepath.Base(p.path), desc.Name, BinaryPrefix, desc.Name)
	}
	req := &sinkv1.OpenRequest{
		Settings:  p.opts.Settings(p.name),
		Naming:    sinkv1.Naming_NAMING_SEED,
		ServerUrl: p.opts.ServerURL,
		Egress:    &sinkv1.Egress{Allow: prefixes(p.opts.Egress.Allow()), Deny: prefixes(p.opts.Egress.Deny())},
	}
	if p.opts.Naming == events.NamingEvolution {
		req.Naming = sinkv1.Naming_NAMING_EVOLUTION
	}
	for _, c := range desc.Capabilities {
		if c == sinkv1.Capability_CAPABILITY_LISTENER {
			req.ListenSocket = p.SocketPath()
			req.HostSocket = filepath.Join(p.opts.SocketDir, HostSocketName)
		}
	}
	if _, err := rpc.Open(ctx, req); err != nil {
		return nil, nil, fmt.Errorf("open: %s", grpcMessage(err))
	}
	return rpc, desc, nil
}

// HostSocketName is the file, in Options.SocketDir, of the socket where
// the host answers listener plugins' questions (sdk.Identify); the host
// serves it. No plugin's socket is named so: sink names never start with
// '_'.
const HostSocketName = "_host.sock"

// SocketPath is where a listener plugin listens.
func (p *Plugin) SocketPath() string {
	return filepath.Join(p.opts.SocketDir, p.name+".sock")
}

// supervise replaces the process whenever it exits or fails its health
// checks, and keeps trying to start one while there is none, until stop.
func (p *Plugin) supervise() {
	for {
		if p.running() {
			reason := p.watch()
			p.mu.Lock()
			if p.stopping {
				p.mu.Unlock()
				return
			}
			p.rpc = nil
			p.ready = make(chan struct{})
			p.lastError = reason
			p.restarts++
			p.state = StateRestarting
			client := p.client
			p.client = nil
			p.mu.Unlock()
			client.Kill()
			p.logger.Warn("plugin process lost; restarting", "error", reason)
		}
		for {
			wait := p.crashed()
			select {
			case <-time.After(wait + time.Duration(rand.Int64N(int64(wait)/5+1))):
			case <-p.done:
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := p.start(ctx)
			cancel()
			if err == nil {
				break
			}
			p.failedStart(err)
		}
	}
}

// running reports whether a process serves the plugin.
func (p *Plugin) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rpc != nil
}

// failedStart records why a process could not be started: the plugin is
// failed until one starts, and the reason is in its status and the log.
func (p *Plugin) failedStart(err error) {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return
	}
	p.lastError = err.Error()
	p.state = StateFailed
	p.mu.Unlock()
	p.logger.Error("plugin failed to start; retrying with backoff", "error", err)
}

// Unavailable says why the plugin cannot answer now: it has no process
// and its last start failed. It is nil while a process runs or one is
// being started after a crash (callers wait for it then).
func (p *Plugin) Unavailable() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rpc != nil || p.state != StateFailed {
		return nil
	}
	return fmt.Errorf("the %s plugin failed to start: %s; it is retried with backoff (see GET /plugins)", p.name, p.lastError)
}

// crashed counts one more crash in a row and returns how long to wait
// before the next start: doubling from restartBackoff0, capped.
func (p *Plugin) crashed() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crashes++
	if p.crashes >= failedAfter {
		p.state = StateFailed
	}
	return min(restartBackoff0<<min(p.crashes-1, 16), restartBackoffN)
}

// watch blocks until the current process exits, fails its health checks,
// or the plugin is stopped, and says why.
func (p *Plugin) watch() string {
	p.mu.Lock()
	client, rpc := p.client, p.rpc
	p.mu.Unlock()
	tick := time.NewTicker(exitPoll)
	defer tick.Stop()
	nextHealth := time.Now().Add(healthEvery)
	failures := 0
	for range tick.C {
		if p.isStopping() {
			return "stopped"
		}
		if client.Exited() {
			return "plugin process exited"
		}
		if time.Now().Before(nextHealth) {
			continue
		}
		nextHealth = time.Now().Add(healthEvery)
		ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
		h, err := rpc.Health(ctx, &sinkv1.HealthRequest{})
		cancel()
		if err != nil {
			failures++
			if failures >= healthFailures {
				return fmt.Sprintf("health check failed %d times: %s", failures, grpcMessage(err))
			}
			continue
		}
		failures = 0
		p.mu.Lock()
		p.health = sinkv1.HealthResponse{Ready: h.Ready, Detail: h.Detail, Gauges: h.Gauges, Counters: h.Counters}
		if time.Since(p.since) >= stableAfter {
			p.crashes = 0
			p.state = StateRunning
		}
		p.mu.Unlock()
	}
	return ""
}

func (p *Plugin) isStopping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping
}

// stop closes the plugin and ends its process.
func (p *Plugin) stop(ctx context.Context) {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return
	}
	p.stopping = true
	close(p.done)
	client, rpc := p.client, p.rpc
	p.state = StateStopped
	p.mu.Unlock()
	if rpc != nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := rpc.Close(cctx, &sinkv1.CloseRequest{}); err != nil {
			p.logger.Warn("plugin close failed", "error", grpcMessage(err))
		}
		cancel()
	}
	if client != nil {
		client.Kill()
	}
}

// linkOptions are the gRPC options of the link to the process cmd runs:
// where the kernel says which process is at the other end of its socket,
// the link accepts only that process or one of its descendants, instead
// of TLS (sinkv1.HostLinkCredentials).
func linkOptions(cmd *exec.Cmd) []grpc.DialOption {
	opts := sinkv1.DialOptions()
	if sinkv1.ProcessLink {
		// go-plugin dials once the process has started.
		opts = append(opts, grpc.WithTransportCredentials(sinkv1.HostLinkCredentials(func() int {
			if cmd.Process == nil {
				return 0
			}
			return cmd.Process.Pid
		})))
	}
	return opts
}

// grpcPlugin is go-plugin's view of the host side. adapt, when set, wraps
// the client for a plugin of an older protocol version.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	adapt func(sinkv1.SinkClient) sinkv1.SinkClient
}

func (*grpcPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("pluginhost: the host serves no plugin")
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	if p.adapt != nil {
		return p.adapt(sinkv1.NewSinkClient(c)), nil
	}
	return sinkv1.NewSinkClient(c), nil
}

func prefixes(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
