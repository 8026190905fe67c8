// Package sinkv1 is the wire protocol between the evorelay host and its sink
// plugins: the generated gRPC code for sink.proto, and the go-plugin
// handshake and link credentials both sides must agree on. Plugin authors
// use package sdk instead; only the host and the SDK import this package.
package sinkv1

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative sink.proto
