# syntax=docker/dockerfile:1
# The Berth image: the controller at /usr/local/bin/berth and the filter it serves to Envoy at
# /usr/share/berth/berth_filter.wasm (`berth run --filter-wasm`, on by default when that file exists).
#
#   docker build -t ghcr.io/berth-dev/berth:0.1.0 .
#
# Both are built from this checkout with the toolchain below; the module's sha256 therefore changes with the build,
# and `berth istio-config --wasm` must be given this image's module (see README, "Deploy on a cluster").

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-unknown-unknown
WORKDIR /src
COPY . .
# The target directory is a cache mount, so the artifacts are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p berth-controller --bin berth \
 && cargo build --locked --profile wasm --target wasm32-unknown-unknown -p berth-filter \
 && mkdir -p /out \
 && cp target/release/berth /out/berth \
 && cargo run --locked --release -q -p berth-wasm-exports -- --keep filter/src/exports.txt \
      target/wasm32-unknown-unknown/wasm/berth_filter.wasm /out/berth_filter.wasm

# glibc and CA certificates, no shell; runs as uid 65532 (the Deployment also insists on a non-root user).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/berth /usr/local/bin/berth
COPY --from=build /out/berth_filter.wasm /usr/share/berth/berth_filter.wasm
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["run", "--source", "kube", "--listen", "0.0.0.0:8081"]
