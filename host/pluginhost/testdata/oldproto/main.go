// Command oldproto is a sink plugin as an SDK of an older protocol version
// builds it: protocol 1 (settings on every delivery) by default, or the
// version in EVORELAY_OLDPROTO_VERSION. Each delivery is rejected with the settings
// it carried as the reason, so a test sees what the plugin read.
package main

import (
	"context"
	"os"
	"strconv"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

type server struct {
	sinkv1.UnimplementedSinkServer
	version uint32
}

func (s server) Describe(context.Context, *sinkv1.DescribeRequest) (*sinkv1.DescribeResponse, error) {
	return &sinkv1.DescribeResponse{Name: "oldproto", Version: "0.0.1", ProtocolVersion: s.version}, nil
}

func (server) Open(context.Context, *sinkv1.OpenRequest) (*sinkv1.OpenResponse, error) {
	return &sinkv1.OpenResponse{}, nil
}

func (server) Health(context.Context, *sinkv1.HealthRequest) (*sinkv1.HealthResponse, error) {
	return &sinkv1.HealthResponse{Ready: true}, nil
}

func (server) Deliver(stream sinkv1.Sink_DeliverServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		resp := &sinkv1.DeliverResponse{}
		for _, d := range req.GetDeliveries() {
			resp.Acks = append(resp.Acks, &sinkv1.Ack{Id: d.GetId(), Outcome: sinkv1.Outcome_OUTCOME_REJECT, Reason: string(d.GetSettings())})
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	server server
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	sinkv1.RegisterSinkServer(s, p.server)
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	version := 1
	if v, err := strconv.Atoi(os.Getenv("EVORELAY_OLDPROTO_VERSION")); err == nil {
		version = v
	}
	handshake := sinkv1.Handshake
	handshake.ProtocolVersion = uint(version)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  handshake,
		VersionedPlugins: map[int]plugin.PluginSet{version: {sinkv1.PluginName: &grpcPlugin{server: server{version: uint32(version)}}}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
