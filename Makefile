# Two commands do all the set-up on a fresh Debian 12 machine:
#   make run        install, then run the quickstart sweep on this machine
#   make test       install what the tests need (the local SLURM cluster's packages too), lint, then run the whole suite
#   make test-fast  the development loop: every test that needs no SLURM cluster (docs/testing.md)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --constraint constraints.txt
SWEEP ?= conf/sweeps/quickstart.yaml
PYTEST_ARGS ?=

.PHONY: run test test-fast test-deps lint install install-test system-deps clean

run: $(VENV)/.installed
	$(BIN)/orch run $(SWEEP)

# Everything the whole suite needs installed (.ci/run times it apart from the tests).
test-deps: $(VENV)/.installed-test slurm-deps browser-deps postgres-deps

test: test-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The tiers (docs/testing.md): tests/conftest.py marks `slurm` every test that uses the SLURM cluster fixture. Two
# workers, each a test file at a time: the tests wait on servers and sleeps often enough that two beat one on 2 cores
# (four were slower).
test-fast: $(VENV)/.installed-test browser-deps postgres-deps
	$(BIN)/python -m pytest -m 'not slurm and not image' -n 2 --dist loadfile $(PYTEST_ARGS)

# ruff (lint and format) and mypy on orchestrator/, cluster/ and trainables/ (settings in pyproject.toml),
# hadolint on the Dockerfile (its ignored rules are justified inline); the import contracts run in the suite
# (tests/test_architecture.py).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Debian packages: venv support and git (for the code version every run records).
system-deps:
	@if ! $(PYTHON) -c "import ensurepip, venv" 2>/dev/null || ! command -v git >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv git; \
	fi

$(VENV)/.installed: pyproject.toml constraints.txt | system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU build; an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) .orch .pytest_cache

# Local SLURM test cluster (cluster/testcluster/README.md): a real slurmctld, slurmdbd, two slurmd
# in their own network namespaces with fake GPUs, and an sshd login node on 127.0.0.1:2222.
SLURM_TEST_DIR ?= /tmp/orch-slurm
.PHONY: slurm-deps slurm-up slurm-down slurm-status

slurm-deps:
	$(PYTHON) -m cluster.testcluster install

slurm-up: slurm-deps
	$(PYTHON) -m cluster.testcluster up --dir $(SLURM_TEST_DIR)

slurm-down:
	$(PYTHON) -m cluster.testcluster down --dir $(SLURM_TEST_DIR)

slurm-status:
	$(PYTHON) -m cluster.testcluster status --dir $(SLURM_TEST_DIR)

# The soak (tests/soak/driver.py): queued sweeps of three projects on a fresh local cluster while a seeded
# chaos driver preempts, requeues, kills a slurmd, the agent and the tracking server; the report goes to
# soak-report.md and it fails if anything was lost, logged twice or submitted twice. A 2-minute version
# runs in `make test` (tests/soak/test_soak.py).
SOAK_MINUTES ?= 30
SOAK_SEED ?= 1
.PHONY: soak
soak: $(VENV)/.installed-test slurm-up
	$(BIN)/python -m tests.soak --minutes $(SOAK_MINUTES) --seed $(SOAK_SEED) --cluster-dir $(SLURM_TEST_DIR); \
		status=$$?; $(PYTHON) -m cluster.testcluster down --dir $(SLURM_TEST_DIR); exit $$status

# Headless Chromium + chromedriver for the MLflow UI browser test (tests/tracking/test_browser.py).
.PHONY: browser-deps
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

# PostgreSQL for the queue tests (tests/harness/postgres.py): Debian's postgresql package, installed
# without starting its own cluster; each test session runs a throw-away server on 127.0.0.1:6930.
.PHONY: postgres-deps
postgres-deps:
	$(PYTHON) -m tests.harness.postgres install

# Efficiency (bench/bench_efficiency.py): N fixed-length trials through orch submit, one array task per trial
# (submitit map_array), plain Ray Tune (with and without actor reuse) and orch run, on a fresh local cluster;
# rewrites its section of docs/benchmarks.md and docs/img/bench-efficiency.png. The other benchmarks in bench/
# print their figures (bench/README.md says how to run each).
BENCH_TRIALS ?= 50,200
BENCH_REPEATS ?= 1
.PHONY: bench
bench: $(VENV)/.installed-test slurm-up
	. $(SLURM_TEST_DIR)/env.sh && $(BIN)/python bench/bench_efficiency.py --trials $(BENCH_TRIALS) \
		--repeats $(BENCH_REPEATS) --json bench-efficiency.json --docs; \
		status=$$?; $(PYTHON) -m cluster.testcluster down --dir $(SLURM_TEST_DIR); exit $$status

# The CPU image, built and tested on this machine (README.md, "Containers"; tests/image/). Debian's podman builds
# it (--isolation=chroot: no OCI runtime, no cgroups needed) on a Debian 12 base made here with debootstrap from
# Debian's mirror when no registry is reachable (cached as $(IMAGE_BASE)).
.PHONY: image-deps image-base image-cpu image-test
IMAGE_BASE ?= localhost/debian-base:bookworm
IMAGE_TAG ?= orch:cpu
IMAGE_BUILD_FLAGS ?=
DEBIAN_MIRROR ?= http://deb.debian.org/debian

image-deps:
	@if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null || ! command -v runc >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq podman debootstrap uidmap fuse-overlayfs runc; \
	fi

# A Debian 12 base made here when the engine has none (no registry reachable): a minimal bookworm root filesystem
# from Debian's mirror, imported as an image. Made once; `podman rmi $(IMAGE_BASE)` makes it again.
image-base: image-deps
	@if ! podman image exists $(IMAGE_BASE); then \
		root=$$(mktemp -d /var/tmp/orch-debian-XXXXXX) && \
		debootstrap --variant=minbase bookworm $$root/rootfs $(DEBIAN_MIRROR) >$$root/debootstrap.log 2>&1 \
			|| { tail -20 $$root/debootstrap.log; rm -rf $$root; exit 1; }; \
		tar -C $$root/rootfs -c . | podman import - $(IMAGE_BASE) && rm -rf $$root; \
	fi

# The CPU image through `orch image build`, on that base; this machine's pip index, find-links and CA bundle are
# bound into the build's RUN steps and kept out of its layers (tests/image/pip_for_build.py). Prints the build's
# time and the image's size (docs: README.md "Containers"). IMAGE_BUILD_FLAGS=--no-cache builds every step again.
image-cpu: $(VENV)/.installed image-base
	@start=$$(date +%s); \
	$(BIN)/orch image build --variant cpu --engine podman --tag $(IMAGE_TAG) --build-arg CPU_BASE=$(IMAGE_BASE) $(IMAGE_BUILD_FLAGS) \
		$$($(BIN)/python tests/image/pip_for_build.py .orch/image-build) \
	&& echo "image $(IMAGE_TAG): built in $$(( $$(date +%s) - start )) s, $$(podman image inspect --format '{{.Size}}' $(IMAGE_TAG)) bytes"

# Builds the CPU image, then runs the tests that use it (tests/image/; marker `image`, left out of `make test`); the
# SLURM one reuses the cluster up in $$ORCH_SLURM_DIR, or brings one up for the run (tests/harness/slurm.py).
image-test: $(VENV)/.installed-test slurm-deps image-cpu
	ORCH_IMAGE=$(IMAGE_TAG) $(BIN)/python -m pytest -m image tests/image $(PYTEST_ARGS)
