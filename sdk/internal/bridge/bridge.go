// Package bridge lets sdk/sinktest reach the SDK's gRPC adapter without
// making it part of the author-facing API. Package sdk sets NewServer in its
// init.
package bridge

import (
	"github.com/hashicorp/go-hclog"

	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// NewServer wraps an sdk.Sink (passed as any to avoid an import cycle) as
// the gRPC service the host talks to.
var NewServer func(sink any, logger hclog.Logger) sinkv1.SinkServer
