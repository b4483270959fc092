# The README's two commands: `make run` (or `go run ./cmd/chat`) and `make test`.
# `go test ./...` does not work at a go.work root, so the tests name every module.
MODULES := $(shell go list -f '{{.Dir}}' -m)

.PHONY: run test test-js chatjs vet build fuzz check-binaries cross bench

run:
	go run ./cmd/chat

test: vet test-js
	go test -race -count=1 -timeout 30m $(addsuffix /...,$(MODULES))

# The JavaScript client package (clients/js) with Node's test runner against a real
# all-in-one. Without Node >= 20 it is skipped, or fails when CI is set.
test-js:
	@if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then \
		if [ -n "$$CI" ]; then echo "test-js: CI needs Node.js >= 20 (and npm)"; exit 1; fi; \
		echo "test-js: skipped, no Node.js >= 20 (it fails instead when CI is set)"; exit 0; \
	fi; \
	cd clients/js && npm ci --no-audit --no-fund && node --test

# /chat.js is generated from the client package's module: edit clients/js/src/chat.js, then
# run this (a test in services/api/internal/web fails while the copy is out of date).
chatjs:
	go generate ./services/api/internal/web

vet:
	go vet $(addsuffix /...,$(MODULES))
	@test -z "$$(gofmt -l $(MODULES))" || { gofmt -l $(MODULES); echo "gofmt needed"; exit 1; }

build:
	mkdir -p bin
	for s in api persister pusher; do go build -o bin/$$s ./services/$$s; done
	go build -o bin/chat ./cmd/chat

# Every fuzz target for FUZZTIME each (Go fuzzes one target of one package per run).
# Crashers land in the package's testdata/fuzz/<Target>/ and must become regression tests.
FUZZTIME ?= 10s
FUZZ_TARGETS := \
	./pkg/chat:FuzzNormalizeMessage \
	./pkg/chat:FuzzNormalizeName \
	./pkg/chat:FuzzFromStored \
	./pkg/auth:FuzzVerify \
	./services/api/internal/httpapi:FuzzDecodeJSON \
	./services/api/internal/httpapi:FuzzDecodeForm \
	./services/api/internal/httpapi:FuzzBodyKind \
	./services/api/internal/httpapi:FuzzHistoryQuery \
	./services/api/internal/httpapi:FuzzReadPost \
	./services/pusher/internal/session:FuzzCommand \
	./services/pusher/internal/session:FuzzClientBytes

# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline exceeded"
# when -fuzztime ends while a worker is mid-input on a loaded machine (go.dev/issue/75804,
# fixed in Go 1.27): no input is written and nothing reproduces. Such a run counts as a
# pass after the target's corpus is replayed; a run that writes a crasher always fails.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; dir=$$pkg/testdata/fuzz/$$fn; out=$$(mktemp); \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		before=$$(ls $$dir 2>/dev/null | wc -l); \
		if go test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1; then cat $$out; rm -f $$out; continue; fi; \
		cat $$out; after=$$(ls $$dir 2>/dev/null | wc -l); \
		if [ "$$after" = "$$before" ] && grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
			rm -f $$out; echo "fuzz $$fn: deadline race of Go's fuzz coordinator (go.dev/issue/75804), no input written: replaying the corpus"; \
			go test -count=1 -run "^$$fn\$$" $$pkg; \
		else rm -f $$out; exit 1; fi; \
	done

# The service binaries must not link the embedded servers or the test harness (they live
# in the harness module; only tests, the all-in-one and deploy use it). A dependency that
# pulls one of them in again fails here.
FORBIDDEN_DEPS := github.com/FerretDB/FerretDB|modernc.org/sqlite|github.com/nats-io/nats-server|github.com/chatrt/chat/harness

check-binaries: build
	@set -e; for s in api persister pusher; do \
		if go version -m bin/$$s | grep -E '$(FORBIDDEN_DEPS)'; then \
			echo "bin/$$s links a server or the test harness (see above)"; exit 1; fi; \
		echo "bin/$$s: no embedded servers"; \
	done

# Every main package, for each OS × architecture we promise, so a platform-specific
# file without a portable twin fails CI. Cross builds need no cgo (CGO_ENABLED=0).
CROSS_OS ?= linux darwin windows
CROSS_ARCH ?= amd64 arm64
MAINS := ./services/api ./services/persister ./services/pusher ./cmd/chat ./cmd/chatload \
	./cmd/chattoken ./deploy/cmd/ferretdb ./deploy/cmd/healthcheck ./deploy/cmd/topology

cross:
	@out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; failed=; for os in $(CROSS_OS); do \
		for arch in $(CROSS_ARCH); do \
			echo "cross $$os/$$arch"; \
			CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -o "$$out/$$os-$$arch/" $(MAINS) || \
				failed="$$failed $$os/$$arch"; \
		done; \
	done; \
	if [ -n "$$failed" ]; then echo "cross: build failed for$$failed"; exit 1; fi

# The issue-14 table: every row against a fresh all-in-one (GOMAXPROCS=1 on core 0, the
# load tool on core 1), printed with the commit and the load average. ROWS=... for some.
bench:
	bench/allinone.sh $(ROWS)
