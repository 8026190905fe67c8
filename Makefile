# evorelay — build, run, test. See README.md.
GO      ?= go
BIN     := bin
# VERSION is stamped into the host (evorelay -version, the start-up line);
# LDFLAGS are passed to every go build.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS ?= -X main.version=$(VERSION)
PLUGINS := $(notdir $(patsubst %/main.go,%,$(wildcard plugins/*/main.go)))

.PHONY: build run test services check generate bench clean

## build: the host at bin/evorelay and every plugin at bin/plugins/evorelay-sink-<name>
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/evorelay ./host
	@for p in $(PLUGINS); do \
		echo "$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/plugins/evorelay-sink-$$p ./plugins/$$p"; \
		$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/plugins/evorelay-sink-$$p ./plugins/$$p || exit 1; \
	done

## run: build, then start on :8080 with the embedded defaults and data in ./data
run: build
	EVORELAY_DATA_DIR=$${EVORELAY_DATA_DIR:-./data} ./$(BIN)/evorelay

## test: the whole suite, with the race detector, against the real services
## (used, never stopped: outages are simulated by sdk/sinktest/faultproxy)
test: services host/e2e/socketio/node_modules
	$(GO) test -race -count=1 -timeout 20m ./...
	cd sdk && $(GO) test -race -count=1 ./...
	cd examples/jsonl && $(GO) test -race -count=1 ./...
	cd configs && $(GO) test -count=1 ./...

# The real socket.io-client that host/e2e's Socket.IO tests drive with Node.
host/e2e/socketio/node_modules: host/e2e/socketio/package-lock.json
	cd host/e2e/socketio && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## services: start RabbitMQ, NATS and Redis if they are not running
services:
	@bash .ci/services.sh

## check: formatting, vet, and that generated code matches its source
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd sdk && $(GO) vet ./...
	cd examples/jsonl && $(GO) vet ./...
	cd configs && $(GO) vet ./...
	cd sdk && $(GO) generate ./...
	@git diff --exit-code -- '*.pb.go' || { echo "generated code drifted from sink.proto: run 'go generate ./...' and commit"; exit 1; }

## generate: regenerate the protocol code (needs protoc, protoc-gen-go, protoc-gen-go-grpc)
generate:
	cd sdk && $(GO) generate ./...

## bench: the Go benchmarks, then every scenario of the load tool (bench/),
## each beside its bare baseline; more flags for it in BENCHFLAGS
## (make bench BENCHFLAGS='-events 5000 -pprof /tmp/prof')
bench: services build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./host/... ./plugins/...
	cd sdk && $(GO) test -run '^$$' -bench . -benchtime 2s ./...
	$(GO) run ./bench -bin $(BIN) -scenario all $(BENCHFLAGS)

clean:
	rm -rf $(BIN)
