package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/evorelay/evorelay/host/config"
	"github.com/evorelay/evorelay/host/pluginhost"
	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// version is the host's version, set at build time with
// -ldflags "-X main.version=1.2.3"; when it is not, the module's version
// and VCS revision are used.
var version string

// command runs what the command line asks for other than starting the
// sidecar: -h, -version, plugins (or -check). It returns done=false when
// the sidecar should start.
func command(args, environ []string, stdout, stderr io.Writer) (code int, done bool) {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			config.Usage(stdout)
			return 0, true
		case "-version", "--version":
			fmt.Fprintf(stdout, "evorelay %s (plugin protocols %d and %d, %s)\n", hostVersion(), sinkv1.PreviousProtocolVersion, sinkv1.ProtocolVersion, runtimeVersion())
			return 0, true
		}
	}
	if i := slices.Index(args, "-check"); i >= 0 {
		return checkPlugins(slices.Delete(slices.Clone(args), i, i+1), environ, stdout, stderr), true
	}
	if len(args) > 0 && args[0] == "plugins" {
		return checkPlugins(args[1:], environ, stdout, stderr), true
	}
	return 0, false
}

// checkPlugins is `evorelay plugins`: what the plugin directory holds and
// whether each plugin would load with the current settings, without
// starting the sidecar. It exits 1 when a plugin would not load.
func checkPlugins(args, environ []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(args, environ)
	if err != nil {
		fmt.Fprintln(stderr, "evorelay:", err)
		return 2
	}
	sockets, err := os.MkdirTemp("", "evorelay-check-")
	if err != nil {
		fmt.Fprintln(stderr, "evorelay:", err)
		return 1
	}
	defer os.RemoveAll(sockets)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	entries, err := pluginhost.Check(ctx, pluginhost.Options{
		Dir: cfg.PluginDir, Settings: cfg.PluginSettings, Naming: cfg.Naming,
		ServerURL: cfg.ServerURL, SocketDir: sockets,
	})
	if err != nil {
		fmt.Fprintln(stderr, "evorelay:", err)
		return 1
	}
	fmt.Fprintf(stdout, "plugin directory %s\n\n", cfg.PluginDir)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSINK\tVERSION\tLOADS\tREADY\tDETAIL")
	code := 0
	for _, e := range entries {
		loads, ready := "-", "-"
		if e.Name != "" {
			loads, ready = yesNo(e.Loads), yesNo(e.Ready)
			if !e.Loads {
				code = 1
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.File, dash(e.Name), dash(e.Version), loads, ready, e.Detail)
	}
	tw.Flush()
	return code
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// hostVersion is version, or what the build recorded.
func hostVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" && (v == "" || v == "(devel)") {
		v = "devel-" + rev[:min(12, len(rev))]
		if modified == "true" {
			v += "-dirty"
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}

func runtimeVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		return info.GoVersion
	}
	return "unknown Go"
}
