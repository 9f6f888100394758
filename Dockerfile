# syntax=docker/dockerfile:1
#
# crier: one static binary on a distroless, non-root base image.
#   docker build -t crier .
#   docker run --rm crier help
# The image runs `crier serve`; configure it with CRIER_* variables
# (docker-compose.yml shows a complete set).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/crier ./cmd/crier

# static: no libc needed (CGO_ENABLED=0); it has CA certificates for SMTP
# and Twilio over TLS, and crier embeds its own time zone database.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/crier /crier
USER nonroot:nonroot
ENV CRIER_HTTP_ADDR=0.0.0.0:8080 \
    CRIER_LOG_FORMAT=json
EXPOSE 8080
# No shell or wget in this image: crier asks its own /readyz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/crier", "healthcheck"]
ENTRYPOINT ["/crier"]
CMD ["serve"]
