# Entry points. `make test` is what CI runs (see .ci/run and the README).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
export MIX_REBAR3 ?= $(shell command -v rebar3 2>/dev/null || echo /usr/bin/rebar3)
FUZZ_SECONDS ?= 60

.PHONY: all bootstrap build test test-rust test-erlang test-elixir test-python test-js test-browser \
        lint mypy dialyzer fuzz run bench bench-nif clean

all: build

bootstrap:
	@bash scripts/bootstrap.sh

build: bootstrap
	rebar3 compile

test: bootstrap build test-rust test-erlang test-elixir test-python test-js test-browser bench-smoke
	@echo "make test: every suite passed"

test-rust:
	cargo test --workspace --quiet

test-erlang:
	rebar3 eunit
	rebar3 ct --name ct@127.0.0.1 --setcookie hornbeam_ct

test-elixir:
	@if ls test/elixir/*_test.exs >/dev/null 2>&1; then mix test; else echo "no Elixir tests"; fi

test-python: mypy
	@if ls test/python/test_*.py >/dev/null 2>&1; then python3 -m pytest -q test/python; else echo "no Python tests"; fi

# mypy --strict over the public Python API (mypy.ini says which files).
mypy:
	python3 -m mypy

test-js:
	@if ls test/js/*.test.mjs >/dev/null 2>&1; then node --test test/js/; else echo "no JS tests"; fi

# The chat example end to end in headless Chromium (test/browser/; needs the build).
test-browser:
	node --test test/browser/

lint: mypy
	cargo clippy --workspace --all-targets -- -D warnings
	rebar3 dialyzer

dialyzer:
	rebar3 dialyzer

# Fuzz the frame and message decoders for FUZZ_SECONDS each (needs cargo-fuzz;
# installed on first use). RUSTC_BOOTSTRAP lets the stable toolchain accept
# the sanitizer flags cargo-fuzz passes.
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install --quiet cargo-fuzz
	cd native/hornbeam_core && for t in frame_decoder message_decoder; do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

run: build
	bin/hornbeam run app:app --pythonpath examples/channels_chat --channel-module app

clean:
	rm -rf _build target priv/*.so priv/hornbeam_worker

# The NIF against pure Erlang + jiffy for frame decode/encode (issue: "is the NIF worth its call?").
bench-nif: build
	@mkdir -p _build/bench && erlc -o _build/bench bench/nif/nif_vs_erlang.erl
	erl -noshell -pa _build/bench -pa _build/default/lib/hornbeam/ebin \
	  -eval 'nif_vs_erlang:main(), halt().'

# --- Benchmarks (bench/README.md) ---------------------------------------------------
# Hornbeam against its peers (socket.io on Node, python-socketio, Django Channels,
# Python websockets, a raw tokio fan-out server). Results: bench/results/<date>.{json,md}.
.PHONY: bench-quick bench-smoke bench-loadgen bench-scale

bench-loadgen:
	cargo build --release -p hornbeam_bench

# The full run (about 20 minutes on 2 cores; nothing else should run meanwhile).
bench: build bench-loadgen
	bash bench/setup.sh
	python3 bench/run.py --profile full

# A reduced run: one size per scenario, every peer, under 5 minutes.
bench-quick: build bench-loadgen
	bash bench/setup.sh
	python3 bench/run.py --profile quick

# Seconds: tiny sizes, Hornbeam and the Rust peer only (no venv, no npm); fails if a
# Hornbeam run errors. Results go to _build/bench_smoke/.
bench-smoke: build bench-loadgen
	python3 bench/run.py --profile smoke

# Scaling across cores: the server on N = 1, 2, 4, ... cores, the load generator on
# the rest (bench/scale.py; on 2 cores only N = 1). Results: bench/results/<date>-scale.{json,md}.
bench-scale: build bench-loadgen
	python3 bench/scale.py $(SCALE_ARGS)

# --- Soak (bench/README.md "Soak") ---------------------------------------------------
# Users chatting with presence on a 2-node cluster while faults are injected (a Python
# worker killed, the pub/sub relay killed, the seed node restarted). Exit status 1 when a
# verdict is not met. `make soak` writes bench/results/<date>-soak.{json,md}; `soak-ci`
# (60 s of load, about 2 minutes in all) writes _build/soak/.
.PHONY: soak soak-ci
SOAK_MINUTES ?= 10
SOAK_USERS ?= 2000
SOAK_CI_USERS ?= 1000

soak: build bench-loadgen
	python3 bench/soak.py --minutes $(SOAK_MINUTES) --users $(SOAK_USERS) --out-dir bench/results

soak-ci: build bench-loadgen
	python3 bench/soak.py --minutes 1 --users $(SOAK_CI_USERS) --out-dir _build/soak --tag=-ci
