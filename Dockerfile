# syntax=docker/dockerfile:1
# One image per service, all from this file (build context: the repository root):
#   docker build --build-arg SERVICE=api|persister|pusher -t chat-<service> .
# Static, stripped binary on distroless/static, running as uid 65532 (nonroot).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
ARG SERVICE=api
RUN case "${SERVICE}" in api|persister|pusher) ;; \
      *) echo "SERVICE must be api, persister or pusher, got '${SERVICE}'" >&2; exit 1 ;; esac
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# go.work ties the modules; deploy contributes only its module files and cmd/healthcheck.
# Modules are fetched by the build itself (only those it needs) into a cache mount.
COPY go.work go.work.sum* ./
COPY pkg ./pkg
COPY services ./services
COPY cmd ./cmd
COPY deploy/go.mod deploy/go.sum ./deploy/
COPY deploy/cmd ./deploy/cmd
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w" -o /out/service "./services/${SERVICE}" && \
    go build -ldflags "-s -w" -o /out/healthcheck ./deploy/cmd/healthcheck

FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE=api
LABEL org.opencontainers.image.title="chat-${SERVICE}" \
      org.opencontainers.image.source="https://github.com/chatrt/chat"
COPY --from=build /out/service /usr/local/bin/chat-service
COPY --from=build /out/healthcheck /usr/local/bin/healthcheck
# Services default to 127.0.0.1:<port>; a container must listen on all interfaces.
ENV CHAT_HTTP_ADDR=:8080
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "/readyz"]
ENTRYPOINT ["/usr/local/bin/chat-service"]
