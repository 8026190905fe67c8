package sinkv1

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// defaultCodec is gRPC's own protobuf codec, what a peer built with an
// older SDK uses.
var defaultCodec = encoding.GetCodecV2(grpcproto.Name)

// batch is a DeliverRequest of n deliveries whose envelopes are size
// bytes each.
func batch(n, size int) *DeliverRequest {
	r := &DeliverRequest{Instance: "inst", Settings: []byte(`{"url":"http://x"}`), Lane: "5511999999999@s.whatsapp.net"}
	for i := range n {
		r.Deliveries = append(r.Deliveries, &Delivery{
			Id: fmt.Sprintf("01J%023d", i), Instance: "inst", Event: "MESSAGES_UPSERT", Attempt: uint32(i%3 + 1),
			Envelope: bytes.Repeat([]byte{byte('a' + i%26)}, size),
		})
	}
	return r
}

// TestPooledCodecRoundTrip: what PooledCodec marshals is byte for byte
// what gRPC's codec marshals, and unmarshals to the message it came from,
// whether it arrives in one buffer or in frames, for messages from empty
// to larger than BufferPool's largest tier (1 MB). Each size is done twice
// so the second may reuse the first's buffer, as it was left.
func TestPooledCodecRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  *DeliverRequest
	}{
		{"empty", &DeliverRequest{}},
		{"one small", batch(1, 100)},
		{"just over 1 KB", batch(1, 1000)},
		{"100 of 1.2 KB", batch(100, 1200)},
		{"50 of 1.2 KB", batch(50, 1200)},
		{"over 1 MB", batch(3, 700<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := defaultCodec.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			defer want.Free()
			for range 2 {
				data, err := PooledCodec.Marshal(tc.msg)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(data.Materialize(), want.Materialize()) {
					t.Fatalf("marshalled %d bytes differ from gRPC codec's %d", data.Len(), want.Len())
				}
				split := frames(data.Materialize(), 16<<10)
				for _, in := range []mem.BufferSlice{data, split} {
					got := &DeliverRequest{}
					if err := PooledCodec.Unmarshal(in, got); err != nil {
						t.Fatal(err)
					}
					if !proto.Equal(got, tc.msg) {
						t.Fatalf("unmarshalled %d buffers into a different message", len(in))
					}
				}
				split.Free()
				data.Free()
			}
		})
	}
}

// frames splits b into buffers of at most n bytes, the way gRPC hands a
// message read from several HTTP/2 frames to the codec.
func frames(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(n, len(b))
		s = append(s, mem.Copy(b[:k], BufferPool))
		b = b[k:]
	}
	return s
}

// TestPooledCodecNotAMessage: anything but a protobuf message is an
// error, not a panic.
func TestPooledCodecNotAMessage(t *testing.T) {
	if _, err := PooledCodec.Marshal("batch"); err == nil || !strings.Contains(err.Error(), "string is not a protobuf message") {
		t.Errorf("Marshal: %v", err)
	}
	var s string
	if err := PooledCodec.Unmarshal(mem.BufferSlice{mem.SliceBuffer("x")}, &s); err == nil {
		t.Error("Unmarshal into *string: no error")
	}
}

// echoSink acks every delivery of every batch it receives, with the
// delivery's envelope as the reason (so the responses are as large as the
// requests), and reports the content-type each stream came with.
type echoSink struct {
	UnimplementedSinkServer
	contentType chan string
}

func (s *echoSink) Deliver(stream grpc.BidiStreamingServer[DeliverRequest, DeliverResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	s.contentType <- strings.Join(md.Get("content-type"), ",")
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if err := stream.Send(echo(req)); err != nil {
			return err
		}
	}
}

func echo(req *DeliverRequest) *DeliverResponse {
	resp := &DeliverResponse{}
	for _, d := range req.Deliveries {
		resp.Acks = append(resp.Acks, &Ack{Id: d.Id, Outcome: Outcome_OUTCOME_RETRY, Reason: string(d.Envelope)})
	}
	return resp
}

// TestPooledCodecInterop: a host and a plugin exchange batches on a
// Deliver stream whichever of them has PooledCodec and whichever has
// gRPC's default codec (a peer built with an older SDK), with the options
// the host and sdk.Serve use.
func TestPooledCodecInterop(t *testing.T) {
	for _, tc := range []struct {
		name               string
		pooledHost, pooled bool // the host's codec, the plugin's
		contentType        string
	}{
		{"both default", false, false, "application/grpc"},
		{"pooled host, old plugin", true, false, "application/grpc+proto"},
		{"old host, pooled plugin", false, true, "application/grpc"},
		{"both pooled", true, true, "application/grpc+proto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var serverOpts []grpc.ServerOption
			if tc.pooled {
				serverOpts = append(serverOpts, grpc.ForceServerCodecV2(PooledCodec), experimental.BufferPool(BufferPool))
			}
			dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
			if tc.pooledHost {
				dialOpts = append(dialOpts, grpc.WithDefaultCallOptions(grpc.ForceCodecV2(PooledCodec)), experimental.WithBufferPool(BufferPool))
			}
			sink := &echoSink{contentType: make(chan string, 1)}
			client := serve(t, sink, serverOpts, dialOpts)

			stream, err := client.Deliver(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, req := range []*DeliverRequest{batch(100, 1200), batch(1, 10), {}, batch(20, 1200)} {
				if err := stream.Send(req); err != nil {
					t.Fatal(err)
				}
				got, err := stream.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if want := echo(req); !proto.Equal(got, want) {
					t.Fatalf("batch of %d: response of %d acks, want %d", len(req.Deliveries), len(got.Acks), len(want.Acks))
				}
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != io.EOF {
				t.Fatalf("after the last batch: %v, want io.EOF", err)
			}
			if ct := <-sink.contentType; ct != tc.contentType {
				t.Errorf("the plugin saw content-type %q, want %q", ct, tc.contentType)
			}
		})
	}
}

// serve serves s over an in-memory connection and returns a client of it.
func serve(t *testing.T, s SinkServer, serverOpts []grpc.ServerOption, dialOpts []grpc.DialOption) SinkClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(serverOpts...)
	RegisterSinkServer(gs, s)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	dialOpts = append(dialOpts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	conn, err := grpc.NewClient("passthrough:///sink", dialOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); gs.Stop(); <-served })
	return NewSinkClient(conn)
}

// BenchmarkMarshalDeliverRequest marshals a batch of 100 deliveries of
// 1.2 KB (about 120 KB) and frees it, as gRPC does once it is written.
func BenchmarkMarshalDeliverRequest(b *testing.B) {
	msg := batch(100, 1200)
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"codec=default", defaultCodec}, {"codec=pooled", PooledCodec}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(proto.Size(msg)))
			for b.Loop() {
				data, err := c.codec.Marshal(msg)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}
