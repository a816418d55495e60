# shellcheck shell=bash
# Settings of the local cluster, sourced by hack/local-up.sh, hack/run-etcd.sh,
# hack/run-apiserver.sh and hack/healthcheck.sh (and so by process-compose.yaml).
# Every value can be overridden from the environment; the defaults give the
# layout documented in README.md:
#
#   .rkube/etcd/        etcd's data, kept across runs (delete it to start empty)
#   .rkube/logs/        one log file per process
#   .rkube/kubeconfig   points kubectl at the apiserver
#
# Sourcing this file only sets and exports variables; it runs nothing.

RKUBE_ROOT="${RKUBE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
RKUBE_STATE_DIR="${RKUBE_STATE_DIR:-${RKUBE_ROOT}/.rkube}"
RKUBE_LOG_DIR="${RKUBE_LOG_DIR:-${RKUBE_STATE_DIR}/logs}"
RKUBE_KUBECONFIG="${RKUBE_KUBECONFIG:-${RKUBE_STATE_DIR}/kubeconfig}"
RKUBE_VENV="${RKUBE_VENV:-${RKUBE_ROOT}/.venv}"

# Loopback only: TLS and authentication are not implemented yet.
RKUBE_BIND_ADDRESS="${RKUBE_BIND_ADDRESS:-127.0.0.1}"
RKUBE_PORT="${RKUBE_PORT:-6443}"
RKUBE_LOG_FORMAT="${RKUBE_LOG_FORMAT:-text}"
RKUBE_APISERVER_BIN="${RKUBE_APISERVER_BIN:-${RKUBE_ROOT}/target/debug/rkube-apiserver}"
# Extra flags for rkube-apiserver, split on spaces (e.g. "--watch-bookmark-interval-seconds 5").
RKUBE_APISERVER_FLAGS="${RKUBE_APISERVER_FLAGS:-}"

RKUBE_ETCD_BIN="${RKUBE_ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}"
ETCD_PORT="${ETCD_PORT:-2379}"
RKUBE_ETCD_PEER_PORT="${RKUBE_ETCD_PEER_PORT:-$((ETCD_PORT + 1))}"
RKUBE_ETCD_DATA_DIR="${RKUBE_ETCD_DATA_DIR:-${RKUBE_STATE_DIR}/etcd}"

export RKUBE_ROOT RKUBE_STATE_DIR RKUBE_LOG_DIR RKUBE_KUBECONFIG RKUBE_VENV
export RKUBE_BIND_ADDRESS RKUBE_PORT RKUBE_LOG_FORMAT RKUBE_APISERVER_BIN RKUBE_APISERVER_FLAGS
export RKUBE_ETCD_BIN ETCD_PORT RKUBE_ETCD_PEER_PORT RKUBE_ETCD_DATA_DIR

rkube_etcd_url() { printf 'http://127.0.0.1:%s' "${ETCD_PORT}"; }
rkube_apiserver_url() { printf 'http://%s:%s' "${RKUBE_BIND_ADDRESS}" "${RKUBE_PORT}"; }
