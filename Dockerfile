# syntax=docker/dockerfile:1
#
# hostgate: the admission webhook (`hostgate serve`, the entrypoint) and the node agent
# (`hostgate-agent`) as static binaries in an image that holds nothing else: no shell, no libc,
# no package manager; it runs as 65532:65532. The chart's default webhook image.
#
#   docker build -t ghcr.io/hostgate/hostgate:0.1.0 .
#
# The builder stage builds with scripts/check-static-build.sh, the same script CI runs without a
# container engine (CI on the release profile, for time; this image on dist): static glibc
# (crt-static) on x86_64-unknown-linux-gnu, then it checks that the binaries have no interpreter
# and no shared library, and runs them in an empty root.
# (Windows nodes run the agent from Dockerfile.windows.)

ARG RUST_VERSION=1.95
# Debian bookworm, like the CI machines: the same glibc the static binaries are checked against.
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# The whole workspace: Cargo reads every member's manifest and target list.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY agent ./agent
COPY core ./core
# A workspace member (the tests' support crate): Cargo loads it with the workspace; nothing
# here builds it.
COPY tests/common ./tests/common
COPY scripts/check-static-build.sh ./scripts/check-static-build.sh
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/check-static-build.sh --out /out

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="hostgate" \
      org.opencontainers.image.description="Admission webhook, policy engine and node agent for Windows HostProcess pods" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/hostgate/hostgate"
COPY --from=builder /out/hostgate /usr/local/bin/hostgate
COPY --from=builder /out/hostgate-agent /usr/local/bin/hostgate-agent
COPY --from=builder /out/containerd-shim-hostgate-v1 /usr/local/bin/containerd-shim-hostgate-v1
# Non-root; the chart also sets runAsNonRoot, a read-only root file system and drops every
# capability. Nothing here needs to write: keys, certificates and policies are mounted.
USER 65532:65532
# HTTPS: POST /validate and /mutate for the API server, GET /healthz and /readyz for the
# kubelet's probes, GET /metrics (`hostgate serve --secure-port`, default 8443).
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/hostgate"]
CMD ["serve", "--help"]
