// Package pluginhost finds, launches, supervises and talks to the sink
// plugins. Each plugin is its own process (hashicorp/go-plugin over gRPC
// on a Unix socket, each end accepting only the process it expects:
// sinkv1.HostLinkCredentials); a plugin that dies or stops answering is
// replaced by a new process (a go-plugin client cannot be restarted),
// with capped backoff.
//
// It knows processes and the wire protocol, not queues or HTTP: the
// dispatcher asks a Plugin for its current client and opens the delivery
// stream itself.
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/evorelay/evorelay/sdk/egress"
	"github.com/evorelay/evorelay/sdk/events"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// BinaryPrefix is how plugin executables are named: evorelay-sink-<name>.
const BinaryPrefix = "evorelay-sink-"

// Options configure the Host.
type Options struct {
	// Dir holds the plugin binaries.
	Dir string
	// Settings returns a plugin's process settings (EVORELAY_<NAME>_*).
	Settings func(name string) map[string]string
	Naming   events.Naming
	// ServerURL is EVORELAY_SERVER_URL.
	ServerURL string
	// SocketDir is where listener plugins get their Unix sockets.
	SocketDir string
	// Egress is the egress policy every plugin gets in Open.
	Egress egress.Policy
	Logger hclog.Logger
}

// Host holds every loaded plugin.
type Host struct {
	plugins map[string]*Plugin
	names   []string
	// refused are plugin files the host will not run at all (a reserved
	// name), shown in Status as failed.
	refused []Status
}

// Start launches every plugin in opts.Dir, all at once, and opens each.
// A plugin that cannot start (it writes to stdout before the handshake,
// hangs in it, speaks another protocol version, describes itself under
// another name, or refuses its settings) never stops the host or the other
// plugins: it is shown failed with its reason, logged, and retried with
// backoff. Only a plugin directory that cannot be read is an error.
func Start(ctx context.Context, opts Options) (*Host, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	paths, err := discover(opts.Dir)
	if err != nil {
		return nil, err
	}
	h := &Host{plugins: map[string]*Plugin{}}
	for _, path := range paths {
		name := strings.TrimPrefix(filepath.Base(path), BinaryPrefix)
		if err := sinkv1.CheckName(name); err != nil {
			reason := fmt.Sprintf("%s: %v; rename the file %s<name>", path, err, BinaryPrefix)
			opts.Logger.Named("pluginhost").Error("plugin refused", "sink", name, "error", reason)
			h.refused = append(h.refused, Status{Name: name, State: StateFailed, LastError: reason})
			continue
		}
		h.plugins[name] = newPlugin(name, path, opts)
		h.names = append(h.names, name)
	}
	sort.Strings(h.names)
	var first sync.WaitGroup
	for _, p := range h.plugins {
		first.Go(func() {
			if err := p.start(ctx); err != nil {
				p.failedStart(err)
			}
		})
	}
	first.Wait()
	for _, p := range h.plugins {
		go p.supervise()
	}
	return h, nil
}

// discover lists the executable evorelay-sink-* files in dir.
func discover(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pluginhost: plugin directory %s does not exist; set EVORELAY_PLUGIN_DIR or run `make build`", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("pluginhost: read plugin directory: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), BinaryPrefix) || e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Mode()&0o111 == 0 {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	return paths, nil
}

// Names lists the loaded sinks, sorted.
func (h *Host) Names() []string { return append([]string(nil), h.names...) }

// Plugin returns a loaded plugin by name.
func (h *Host) Plugin(name string) (*Plugin, bool) {
	p, ok := h.plugins[name]
	return p, ok
}

// Status lists every plugin's status, sorted by name, the refused files
// last.
func (h *Host) Status() []Status {
	out := make([]Status, 0, len(h.names)+len(h.refused))
	for _, n := range h.names {
		out = append(out, h.plugins[n].Status())
	}
	return append(out, h.refused...)
}

// Close stops every plugin: a Close call, then the process ends.
func (h *Host) Close(ctx context.Context) {
	for _, p := range h.plugins {
		p.stop(ctx)
	}
}
