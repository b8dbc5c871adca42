# gitward in a container: the daemon as a non-root user, with its state on a volume.
#
#   docker build -t gitward .
#   docker run -d --name gitward \
#     -v /etc/gitward:/etc/gitward:ro \
#     -v gitward-state:/var/lib/gitward \
#     -p 127.0.0.1:9440:9440 gitward
#
# The host config at /etc/gitward/gitward.yaml must set `stateDir: /var/lib/gitward` and a
# `listen` address reachable from outside the container (`0.0.0.0:9440`).

# Both images are pinned to a release: the Rust toolchain the project is tested with, and
# Debian 12 for the runtime, whose C library and OpenSSL the binary links against.
FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY benches benches
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin gitward \
 && rm -rf src
COPY . .
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin gitward \
 && install -D -m 0755 target/release/gitward /out/gitward \
 && mkdir -p /out/state

# glibc, OpenSSL and CA certificates, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gitward /usr/local/bin/gitward
# UID 65532 ("nonroot") owns the state directory, so a new volume starts owned by it.
COPY --from=build --chown=65532:65532 /out/state /var/lib/gitward
USER 65532:65532
VOLUME ["/var/lib/gitward"]
EXPOSE 9440
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/gitward", "healthcheck", "--config", "/etc/gitward/gitward.yaml"]
ENTRYPOINT ["/usr/local/bin/gitward"]
CMD ["run", "--config", "/etc/gitward/gitward.yaml", "--log-format", "json"]
