package sinkv1

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
)

// ServerOptions are the gRPC options of the plugin's end of the link
// (sdk.Serve, and sinktest's in-memory plugin): the message limits,
// BufferPool for what it reads, and PooledCodec.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		experimental.BufferPool(BufferPool),
		grpc.ForceServerCodecV2(PooledCodec),
	}
}

// DialOptions are the same for the host's end (and sinktest's client).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes),
			grpc.ForceCodecV2(PooledCodec)),
		experimental.WithBufferPool(BufferPool),
	}
}
