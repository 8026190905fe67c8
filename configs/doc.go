// Package configs holds what deploys evorelay: the example settings file,
// the Dockerfile and the Kubernetes manifests, and the test that checks
// their wiring (deploy_test.go). It is a module of its own so that the
// Kubernetes API types it decodes the manifests with stay out of the
// sidecar's dependency graph; `make test` runs it.
package configs
