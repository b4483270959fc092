# The README's two commands: `make run` (or `go run ./cmd/chat`) and `make test`.
# `go test ./...` does not work at a go.work root, so the tests name every module.
MODULES := $(shell go list -f '{{.Dir}}' -m)

.PHONY: run test vet build fuzz

run:
	go run ./cmd/chat

test: vet
	go test -race -count=1 -timeout 30m $(addsuffix /...,$(MODULES))

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

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		go test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done
