package pluginhost

import "github.com/hashicorp/go-hclog"

// pluginLogger is the logger go-plugin gets for a plugin: its own lines
// and the lines the plugin writes to stderr. go-plugin re-logs each of the
// plugin's lines under a logger named after the binary, adding the
// plugin's own timestamp and its logger's @module; the host's line already
// has a time, and sink= (set with With) says which plugin it is, so those
// are dropped, and so is a sink= the plugin logged itself. What is left
// reads like a host line:
//
//	[WARN]  evorelay.plugin: NATS is not configured: set EVORELAY_NATS_URL …: sink=nats
type pluginLogger struct {
	hclog.Logger
}

// droppedKeys are the keys pluginLogger removes from a plugin's lines.
var droppedKeys = map[string]bool{"timestamp": true, "@module": true, "@timestamp": true, "sink": true}

func clean(args []any) []any {
	out := args[:0:0]
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && droppedKeys[k] {
			continue
		}
		out = append(out, args[i], args[i+1])
	}
	if len(args)%2 == 1 {
		out = append(out, args[len(args)-1])
	}
	return out
}

func (l pluginLogger) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, msg, clean(args)...)
}
func (l pluginLogger) Trace(msg string, args ...any) { l.Logger.Trace(msg, clean(args)...) }
func (l pluginLogger) Debug(msg string, args ...any) { l.Logger.Debug(msg, clean(args)...) }

// Info demotes go-plugin's "plugin process exited" (a clean exit) to
// debug: the host logs what an exit means (a restart, a start that failed,
// a shutdown) itself. An exit with an error stays at error.
func (l pluginLogger) Info(msg string, args ...any) {
	if msg == "plugin process exited" {
		l.Logger.Debug(msg, clean(args)...)
		return
	}
	l.Logger.Info(msg, clean(args)...)
}
func (l pluginLogger) Warn(msg string, args ...any)  { l.Logger.Warn(msg, clean(args)...) }
func (l pluginLogger) Error(msg string, args ...any) { l.Logger.Error(msg, clean(args)...) }

// Named keeps the name: go-plugin names the logger after the binary, and
// sink= already says which plugin a line is from.
func (l pluginLogger) Named(string) hclog.Logger { return l }

func (l pluginLogger) ResetNamed(string) hclog.Logger { return l }

func (l pluginLogger) With(args ...any) hclog.Logger {
	return pluginLogger{l.Logger.With(args...)}
}
