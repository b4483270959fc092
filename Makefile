# The README's two commands: `make run` (or `go run ./cmd/chat`) and `make test`.
# `go test ./...` does not work at a go.work root, so the tests name every module.
MODULES := $(shell go list -f '{{.Dir}}' -m)

.PHONY: run test vet build

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
