// Command evorelay is the sidecar: it takes a WhatsApp engine's events in,
// spools them durably, and delivers them through sink plugins. See
// README.md for its settings and routes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/evorelay/evorelay/host/api"
	"github.com/evorelay/evorelay/host/config"
	"github.com/evorelay/evorelay/host/dispatch"
	"github.com/evorelay/evorelay/host/pluginhost"
	"github.com/evorelay/evorelay/host/store"
	"github.com/evorelay/evorelay/sdk/warm"
)

func main() {
	if code, done := command(os.Args[1:], os.Environ(), os.Stdout, os.Stderr); done {
		os.Exit(code)
	}
	cfg, err := config.Load(os.Args[1:], os.Environ())
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "evorelay:", err)
		fmt.Fprintln(os.Stderr, "evorelay -h lists every setting.")
		os.Exit(2)
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "evorelay",
		Level:      cfg.LogLevel,
		JSONFormat: cfg.LogFormat == config.LogFormatJSON,
		Output:     os.Stderr,
	})
	if err := run(cfg, logger); err != nil {
		logger.Error("evorelay stopped", "error", err)
		os.Exit(1)
	}
}

func run(cfg *config.Config, logger hclog.Logger) error {
	if cfg.APIKeyGenerated {
		logger.Info("no EVORELAY_API_KEY set: generated one; it is kept for the next start", "file", cfg.APIKeyFile, "apikey", cfg.APIKey)
	}
	logger.Info("starting", append([]any{"version", hostVersion()}, cfg.LogFields()...)...)
	if gogc, limit, err := tuneGC(); err != nil {
		logger.Warn("GOMEMLIMIT not set: the memory limit could not be read; set GOMEMLIMIT", "error", err)
	} else {
		logger.Debug("garbage collector", "GOGC", gogc, "GOMEMLIMIT", limit)
	}
	logger.Debug("plugins' Go runtime", "GOMAXPROCS", pluginProcs())
	// The heap is warmed while the spool opens and the plugins start, and
	// before the first request.
	warmed := make(chan int64, 1)
	go func() { warmed <- warm.Heap(hostWarm) }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The redis spool asks which sinks are broadcast (every host needs
	// all their events) when they are registered, once the plugins run.
	var listener func(sink string) bool
	bk, err := openBackends(ctx, cfg, logger, func(sink string) bool { return listener(sink) })
	if err != nil {
		return err
	}
	defer func() {
		if err := bk.Close(); err != nil {
			logger.Warn("the spool did not close cleanly; deliveries acknowledged last may be sent again after the next start", "error", err)
		}
	}()
	settings, err := store.Open(ctx, bk.settings, store.WithLogger(logger.Named("store")))
	if err != nil {
		bk.settings.Close()
		return err
	}
	defer settings.Close()
	sp := bk.spool

	sockets := filepath.Join(cfg.DataDir, "run")
	if err := os.MkdirAll(sockets, 0o700); err != nil {
		return fmt.Errorf("EVORELAY_DATA_DIR: %w", err)
	}
	// Listener plugins ask here whose key a client sent in a stream.
	identify, err := serveUnix(filepath.Join(sockets, pluginhost.HostSocketName), api.NewIdentify(api.Options{APIKey: cfg.APIKey, Keys: settings}))
	if err != nil {
		return err
	}
	defer identify.Close()
	plugins, err := pluginhost.Start(ctx, pluginhost.Options{
		Dir: cfg.PluginDir, Settings: cfg.PluginSettings, Naming: cfg.Naming,
		ServerURL: cfg.ServerURL, SocketDir: sockets, Egress: cfg.Egress(), Logger: logger,
	})
	if err != nil {
		return err
	}
	defer plugins.Close(context.Background())
	listener = func(sink string) bool { p, ok := plugins.Plugin(sink); return ok && p.Listener() }
	for _, name := range plugins.Names() {
		if err := sp.Register(name); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStateMetrics(sp, plugins))
	circuits := dispatch.NewCircuits()
	keepAbsent := cfg.AbsentSinkKeep
	if cfg.Backend == config.BackendRedis {
		// On a shared Redis another host may still serve a sink this one
		// lacks: never forget one on a timer, only when an operator asks.
		keepAbsent = 0
	}
	absent := findAbsent(sp, plugins.Names(), keepAbsent, logger.Named("spool"))
	defer absent.close()
	full := &fullWatch{Spool: sp}
	h := &host{plugins: plugins, settings: settings, spool: sp, circuits: circuits, absent: absent, full: full}
	handler := api.New(api.Options{
		APIKey: cfg.APIKey, ServerURL: cfg.ServerURL, MaxBodyBytes: cfg.MaxBodyBytes,
		BodyMemory: cfg.BodyMemory, BodyTimeout: cfg.BodyTimeout,
		Sinks: h, Settings: settings, Spool: full, DeadLetters: sp, Keys: settings,
		FullDetail: h.fullDetail, DropSink: absent.drop,
		Ready:      h.ready,
		Metrics:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Registerer: reg,
		Websocket:  h.websocket(),
		Logger:     logger.Named("api"),
	})

	if err := emitStartup(ctx, sp, settings, plugins.Names(), cfg.ServerURL); err != nil {
		return err
	}

	metrics := dispatch.NewMetrics(reg)
	var workers sync.WaitGroup
	for _, name := range plugins.Names() {
		p, _ := plugins.Plugin(name)
		workers.Add(1)
		go func() {
			defer workers.Done()
			dispatch.Run(ctx, sp, settings, p, dispatch.Options{
				BatchSize: cfg.BatchSize, MaxInFlight: cfg.MaxInFlight, Grace: cfg.ShutdownGrace,
				Policy: dispatch.Policy{
					Schedule: cfg.RetrySchedule, Jitter: cfg.RetryJitter, MaxAge: cfg.RetryMaxAge,
					MaxRetryAfter: dispatch.DefaultPolicy.MaxRetryAfter,
				},
				Circuit:  dispatch.Circuit{Failures: cfg.CircuitFailures, CoolDown: cfg.CircuitCoolDown},
				Circuits: circuits,
				Logger:   logger, Metrics: metrics,
			})
		}()
	}

	logger.Debug("heap warmed", "bytes", <-warmed)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("EVORELAY_ADDR: %w", err)
	}
	ln = netutil.LimitListener(ln, cfg.MaxConnections)
	if cfg.TLSCertFile != "" {
		if ln, err = listenTLS(ln, cfg.TLSCertFile, cfg.TLSKeyFile, logger.Named("tls")); err != nil {
			return err
		}
	}
	if cfg.DebugAddr != "" {
		debug, err := serveDebug(cfg.DebugAddr)
		if err != nil {
			return err
		}
		defer debug.Close()
		logger.Warn("serving Go profiles without authentication", "addr", cfg.DebugAddr)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: cfg.IdleTimeout}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String(), "tls", cfg.TLSCertFile != "", "plugins", plugins.Names())

	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: no new events accepted; finishing deliveries in flight", "grace", cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	_ = srv.Shutdown(sctx)
	workers.Wait()
	logger.Info("stopped")
	return nil
}

// serveDebug serves net/http/pprof's handlers on addr (EVORELAY_DEBUG_ADDR).
func serveDebug(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("EVORELAY_DEBUG_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// serveUnix serves h on a Unix socket at path that only this user can
// reach, replacing a socket a previous run left behind.
func serveUnix(path string, h http.Handler) (*http.Server, error) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("EVORELAY_DATA_DIR: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("EVORELAY_DATA_DIR: restrict %s to this user: %w", path, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}
