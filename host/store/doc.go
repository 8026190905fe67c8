// Package store keeps the per-instance settings of every sink — what
// `POST /{sink}/set/{instance}` stores and `GET /{sink}/find/{instance}`
// returns — and answers, from memory, whether an instance's sink wants an
// event.
//
// A Store is an in-memory map (sink → instance → Settings) in front of a
// Backend that persists it. Reads (Get) never touch the backend: they are
// on the path of every delivery, take a read lock and allocate nothing.
// Writes (Set, Disable, Delete) go to the backend first and to memory only
// once the backend has accepted them, so a crash can never have shown a
// setting that was not stored. Writes are serialized, so memory and the
// backend always agree on which of two concurrent writes came last.
//
// Backends: Embedded, one bbolt file (settings.db) in the data directory,
// for a single process; Redis (NewRedis), for replicas sharing settings:
// a hash, and a pub/sub channel through which Backend.Watch hears the
// other replicas' changes (with a full resync after a reconnect). Both
// pass the Backend suite in backend_test.go.
//
// The store is not for validating a sink's settings (the plugin's Validate
// does that, before Set), nor for the process settings (package config),
// nor for events (package spool). It reads only the two fields every sink
// shares, "enabled" and "events"; the rest of the JSON is the plugin's.
package store
