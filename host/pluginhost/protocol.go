package pluginhost

import (
	"context"
	"fmt"
	"strings"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// versionedPlugins are the protocol versions the host runs, newest first
// in go-plugin's choice: the current one, and the previous one through an
// adapter (see sinkv1.ProtocolVersion for the policy).
var versionedPlugins = map[int]plugin.PluginSet{
	sinkv1.ProtocolVersion:         {sinkv1.PluginName: &grpcPlugin{}},
	sinkv1.PreviousProtocolVersion: {sinkv1.PluginName: &grpcPlugin{adapt: adaptV1}},
}

// adaptV1 speaks protocol 1 to a plugin built with an SDK of that version:
// the batch's settings go on every delivery, where it reads them.
func adaptV1(c sinkv1.SinkClient) sinkv1.SinkClient { return v1Client{c} }

type v1Client struct{ sinkv1.SinkClient }

// LaneBatches is 1: an SDK of protocol 1 runs the batches it gets at once,
// so an instance's next batch must wait for the previous one's acks
// (dispatch.LaneBatcher).
func (v1Client) LaneBatches() int { return 1 }

func (c v1Client) Deliver(ctx context.Context, opts ...grpc.CallOption) (sinkv1.Sink_DeliverClient, error) {
	s, err := c.SinkClient.Deliver(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return v1Stream{s}, nil
}

type v1Stream struct{ sinkv1.Sink_DeliverClient }

func (s v1Stream) Send(req *sinkv1.DeliverRequest) error {
	out := &sinkv1.DeliverRequest{Deliveries: make([]*sinkv1.Delivery, len(req.GetDeliveries()))}
	for i, d := range req.GetDeliveries() {
		d = proto.CloneOf(d)
		d.Settings = req.GetSettings()
		out.Deliveries[i] = d
	}
	return s.Sink_DeliverClient.Send(out)
}

// versionHint turns go-plugin's refusal of a plugin's protocol version into
// a message that says what to build it with; other errors pass unchanged.
func versionHint(err error) error {
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "incompatible api version") {
		return err
	}
	return fmt.Errorf("%w: this host runs sink protocol versions %d and %d; rebuild the plugin with github.com/evorelay/evorelay/sdk %s (protocol %d)",
		err, sinkv1.PreviousProtocolVersion, sinkv1.ProtocolVersion, sinkv1.SDKVersion, sinkv1.ProtocolVersion)
}
