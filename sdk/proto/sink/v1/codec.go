package sinkv1

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// PooledCodec is the protobuf codec of both ends of the plugin link
// (DialOptions force it with grpc.ForceCodecV2, ServerOptions with
// grpc.ForceServerCodecV2). It writes the same bytes as gRPC's default
// codec, but marshals into buffers from BufferPool, which are handed out
// as they are: the default codec's pool clears a buffer's whole capacity
// first (1 MB for a batch of 100 events of 1.2 KB), the work protobuf is
// about to do again by writing every byte of the message. Messages it
// decodes from several frames are joined in a BufferPool buffer too.
//
// Its name is "proto", the default codec's: the content-type a client
// sends is application/grpc+proto (the default codec sends
// application/grpc, which means the same), so a peer built with an older
// SDK, on either end, decodes and encodes with its own codec as before.
var PooledCodec encoding.CodecV2 = pooledCodec{}

type pooledCodec struct{}

// Marshal encodes v, a protobuf message, into one buffer that goes back to
// BufferPool when gRPC frees it. A message of up to 1 KB (gRPC's pooling
// threshold) is encoded into a slice of its own, as gRPC does with it.
func (pooledCodec) Marshal(v any) (mem.BufferSlice, error) {
	m := messageOf(v)
	if m == nil {
		return nil, fmt.Errorf("sinkv1: marshal: %T is not a protobuf message", v)
	}
	// UseCachedSize lets MarshalAppend take the sizes proto.Size has
	// just computed instead of computing them again; it is only correct
	// right after proto.Size, and while nothing changes the message.
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := BufferPool.Get(size)
	b, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		BufferPool.Put(buf)
		return nil, err
	}
	// b is *buf's array unless the message grew after proto.Size (a
	// caller's race); then it is a new array, which the pool drops when it
	// comes back because its capacity is none of the tiers'.
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, BufferPool)}, nil
}

// Unmarshal decodes data into v, a protobuf message. data is freed when
// it returns: the message keeps none of its bytes, as proto.Unmarshal
// copies them.
func (pooledCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m := messageOf(v)
	if m == nil {
		return fmt.Errorf("sinkv1: unmarshal: %T is not a protobuf message", v)
	}
	// One buffer is used as it is; several (a message of several frames)
	// are copied into one, which fills it: BufferPool's need no clearing.
	b := data.MaterializeToBuffer(BufferPool)
	defer b.Free()
	return proto.Unmarshal(b.ReadOnlyData(), m)
}

// Name is "proto": what peers with gRPC's default codec expect.
func (pooledCodec) Name() string { return "proto" }

// messageOf returns v as a protobuf message (a message of the older
// github.com/golang/protobuf API is wrapped), or nil if it is none.
func messageOf(v any) proto.Message {
	switch v := v.(type) {
	case proto.Message:
		return v
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	}
	return nil
}
