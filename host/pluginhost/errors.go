package pluginhost

import "google.golang.org/grpc/status"

// grpcMessage is the message of a gRPC error without its code prefix, so
// a plugin's own words reach the user.
func grpcMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}
