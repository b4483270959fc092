# syntax=docker/dockerfile:1
# One image per service, all from this file (build context: the repository root):
#   docker build --build-arg SERVICE=api|persister|pusher -t chat-<service> .
# and the all-in-one (cmd/chat: the three services, embedded NATS and FerretDB/SQLite),
# keeping its data in the volume /data:
#   docker build --build-arg SERVICE=chat -t chat .
#   docker run -p 8080:8080 -v chat-data:/data chat
# Static, stripped binary on distroless/static, running as uid 65532 (nonroot).

ARG GO_VERSION=1.26
ARG SERVICE=api

FROM golang:${GO_VERSION}-bookworm AS build
ARG SERVICE
RUN case "${SERVICE}" in api|persister|pusher|chat) ;; \
      *) echo "SERVICE must be api, persister, pusher or chat, got '${SERVICE}'" >&2; exit 1 ;; esac
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# go.work ties the modules: each one it lists must be here (deploy contributes only its
# module files and cmd/healthcheck; the all-in-one's embedded servers live in harness).
# Modules are fetched by the build itself (only those it needs) into a cache mount.
COPY go.work go.work.sum* ./
COPY pkg ./pkg
COPY services ./services
COPY cmd ./cmd
COPY harness ./harness
COPY clients ./clients
COPY deploy/go.mod deploy/go.sum ./deploy/
COPY deploy/cmd ./deploy/cmd
# The all-in-one is cmd/chat, the services services/<name>. /out/data becomes the
# image's /data, owned by the user the image runs as, so a new volume there is writable.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    pkg="./services/${SERVICE}"; if [ "${SERVICE}" = chat ]; then pkg=./cmd/chat; fi && \
    go build -ldflags "-s -w" -o /out/service "${pkg}" && \
    go build -ldflags "-s -w" -o /out/healthcheck ./deploy/cmd/healthcheck && \
    mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot AS runtime
ARG SERVICE
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

# The stateless services: the runtime as it is.
FROM runtime AS image-api
FROM runtime AS image-persister
FROM runtime AS image-pusher

# The all-in-one keeps its embedded servers' data (nats/, mongo/) in the volume /data.
# Its embedded NATS and MongoDB-wire servers listen on the container's loopback
# (CHAT_EMBEDDED_NATS_ADDR, CHAT_EMBEDDED_MONGO_ADDR to change).
FROM runtime AS image-chat
COPY --from=build --chown=65532:65532 /out/data /data
ENV CHAT_DATA_DIR=/data
VOLUME ["/data"]

# The image of SERVICE (a value without an image-<name> stage fails the build).
FROM image-${SERVICE}
