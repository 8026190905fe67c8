package pluginhost

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"

	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// Entry is one file of the plugin directory, as Check found it.
type Entry struct {
	// File is the file's name.
	File string `json:"file"`
	// Name is the sink's name; empty for a file that is not a plugin.
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	// Loads reports whether the host would load it: its process starts,
	// describes itself under its file's name, and accepts its settings.
	Loads bool `json:"loads"`
	// Ready is the plugin's own health answer once loaded (false when, for
	// example, its broker is not configured).
	Ready bool `json:"ready"`
	// Detail says why it does not load, why it is ignored, or what the
	// plugin's health check said.
	Detail string `json:"detail,omitempty"`
}

// Check lists opts.Dir and, for each plugin in it, starts it as Start
// would (launch, Describe, Open with its settings, one health check), then
// stops it again. Plugins are checked one at a time, alone; a plugin that
// fails does not stop the others from being checked. Use a SocketDir of
// its own, so that a listener plugin does not take a running host's
// socket.
func Check(ctx context.Context, opts Options) ([]Entry, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if _, err := discover(opts.Dir); err != nil {
		return nil, err
	}
	files, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, f := range files {
		e := Entry{File: f.Name()}
		info, err := f.Info()
		switch {
		case !strings.HasPrefix(f.Name(), BinaryPrefix):
			e.Detail = "ignored: not named " + BinaryPrefix + "<name>"
		case err != nil:
			e.Detail = "ignored: " + err.Error()
		case f.IsDir():
			e.Detail = "ignored: a directory"
		case info.Mode()&0o111 == 0:
			e.Detail = "ignored: not executable"
		default:
			e.Name = strings.TrimPrefix(f.Name(), BinaryPrefix)
			check(ctx, &e, filepath.Join(opts.Dir, f.Name()), opts)
		}
		out = append(out, e)
	}
	return out, nil
}

func check(ctx context.Context, e *Entry, path string, opts Options) {
	if err := sinkv1.CheckName(e.Name); err != nil {
		e.Detail = "refused: " + err.Error()
		return
	}
	p := newPlugin(e.Name, path, opts)
	if err := p.start(ctx); err != nil {
		e.Detail = err.Error()
		return
	}
	defer p.stop(ctx)
	st := p.Status()
	e.Loads, e.Ready, e.Version, e.Detail = true, st.Ready, st.Version, st.Detail
}
