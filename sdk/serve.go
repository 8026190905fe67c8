package sdk

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
	"github.com/evorelay/evorelay/sdk/warm"
)

// Serve runs s as a plugin process and does not return. It is the whole
// main of a plugin:
//
//	func main() { sdk.Serve(mysink.New()) }
//
// It raises gRPC's message limits (one event may carry several MB of
// media), answers only the host that started it
// (sinkv1.PluginLinkCredentials), logs to stderr in the form go-plugin
// forwards to the host, and exits when the host process dies, so a killed
// host leaves no plugin behind. Before it serves, it touches the heap the
// plugin's first load will grow into (warm.Heap, pluginWarm). Run by hand,
// without the host, it prints a hint and exits 1.
func Serve(s Sink) {
	d := s.Describe()
	if err := checkDescription(d); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       d.Name,
		Output:     os.Stderr,
		JSONFormat: true,
		Level:      hclog.LevelFromString(os.Getenv("EVORELAY_LOG_LEVEL")),
	})
	go exitWithParent(s, logger, os.Getppid())
	logger.Debug("heap warmed", "bytes", warm.Heap(pluginWarm))

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sinkv1.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			sinkv1.ProtocolVersion: {sinkv1.PluginName: &grpcPlugin{server: newServer(s, logger)}},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, sinkv1.ServerOptions()...)
			// A host that sent no certificate (go-plugin's AutoMTLS)
			// checks which process is at the other end of the socket
			// instead, and so does the plugin: it accepts only its
			// ancestors (sinkv1.PluginLinkCredentials).
			if sinkv1.ProcessLink && os.Getenv("PLUGIN_CLIENT_CERT") == "" {
				opts = append(opts, grpc.Creds(sinkv1.PluginLinkCredentials()))
			}
			return grpc.NewServer(opts...)
		},
		Logger: logger,
	})
}

// pluginWarm is how much heap a plugin touches at start (warm.Heap): the
// first heap goal under the GOGC of 400 the host gives its plugins (4 MB
// × 4), about what the webhook plugin faulted in during its first second
// and a half of load (5,700 pages, 22 MB, at 5,000 events/s). A plugin
// that gets no load gives it back within about two minutes: once the
// runtime's periodic collection has run, its scavenger releases it.
const pluginWarm = 16 << 20

// exitWithParent ends the plugin once its parent is gone (the process is
// re-parented), after giving the sink a moment to close.
func exitWithParent(s Sink, logger hclog.Logger, parent int) {
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != parent {
			logger.Warn("host process is gone; exiting")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.Close(ctx)
			cancel()
			os.Exit(0)
		}
	}
}

// grpcPlugin is go-plugin's view of the plugin side.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	server sinkv1.SinkServer
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	sinkv1.RegisterSinkServer(s, p.server)
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("sdk: the plugin side has no client")
}
