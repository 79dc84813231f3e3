# kfsim in a small image: built in a Rust image, run in a slim Debian with
# the binary alone (no compiler, no cargo, no sources). The final stage
# keeps a shell for the merge Job's glob (deploy/kubernetes/merge-job.yaml).
#
#   docker build -t kfsim:latest .
#   docker run --rm kfsim:latest run /usr/share/kfsim/scenarios/quickstart.toml

FROM rust:1.95-bookworm AS build
WORKDIR /src
# dependencies first, so that editing kfsim does not rebuild them
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# build.rs stamps the version from git when it can; without .git it is the
# package version
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin kfsim \
    && strip target/release/kfsim

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /work --create-home kfsim
COPY --from=build /src/target/release/kfsim /usr/local/bin/kfsim
COPY scenarios /usr/share/kfsim/scenarios
USER 10001
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/kfsim"]
CMD ["--help"]
