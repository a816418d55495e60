#!/usr/bin/env bash
# Runs a local rkube cluster in the foreground: etcd, then rkube-apiserver.
# `make run` calls this. Ctrl-C stops both (apiserver first, then etcd); the
# etcd data in .rkube/etcd is kept, so the next run starts from the same state.
#
# Steps: install missing deps (hack/deps.sh), `cargo build --bins`, write
# .rkube/kubeconfig, then start the processes under process-compose
# (process-compose.yaml) when it is installed, or supervise them from here.
#
# Environment (defaults in hack/local-env.sh):
#   RKUBE_PORT=6443  ETCD_PORT=2379  RKUBE_ETCD_PEER_PORT=ETCD_PORT+1
#   RKUBE_STATE_DIR=.rkube   RKUBE_APISERVER_FLAGS="..." (extra flags)
#   RKUBE_SKIP_BUILD=1         do not run cargo build
#   RKUBE_NO_PROCESS_COMPOSE=1 supervise from this script even if process-compose exists
#   RKUBE_FOLLOW_LOGS=1        also print the apiserver log here
set -euo pipefail
hack_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/local-env.sh
source "${hack_dir}/local-env.sh"

log() { printf 'local-up: %s\n' "$*"; }
die() {
    printf 'local-up: error: %s\n' "$*" >&2
    exit 1
}

port_in_use() {
    # A successful TCP connect means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- 1. dependencies and build --------------------------------------------------
if [[ ! -x "${RKUBE_ETCD_BIN}" || ! -x "${RKUBE_VENV}/bin/kubectl" ]]; then
    log "etcd or ${RKUBE_VENV}/bin/kubectl missing: running hack/deps.sh"
    "${hack_dir}/deps.sh"
fi
command -v curl >/dev/null 2>&1 || die "curl not found; run 'make deps'"

if [[ "${RKUBE_SKIP_BUILD:-}" != 1 ]]; then
    log "building (cargo build --bins)"
    (cd "${RKUBE_ROOT}" && cargo build --bins)
fi
[[ -x "${RKUBE_APISERVER_BIN}" ]] || die "${RKUBE_APISERVER_BIN} not found after the build"

# --- 2. state directory, ports, kubeconfig -------------------------------------
mkdir -p "${RKUBE_LOG_DIR}" "${RKUBE_ETCD_DATA_DIR}"

for port in "${ETCD_PORT}" "${RKUBE_ETCD_PEER_PORT}" "${RKUBE_PORT}"; do
    if port_in_use "${port}"; then
        die "port ${port} is already in use (a 'make run' still running? Debian's etcd.service?). Stop it, or pick other ports: RKUBE_PORT=... ETCD_PORT=... make run"
    fi
done

server="$(rkube_apiserver_url)"
kubeconfig_tmp="$(mktemp "${RKUBE_KUBECONFIG}.XXXXXX")"
cat >"${kubeconfig_tmp}" <<EOF
# Written by hack/local-up.sh for the local rkube cluster.
apiVersion: v1
kind: Config
clusters:
- name: rkube
  cluster:
    server: ${server}
contexts:
- name: rkube
  context:
    cluster: rkube
    user: rkube
    namespace: default
current-context: rkube
users:
- name: rkube
  user: {}
EOF
mv "${kubeconfig_tmp}" "${RKUBE_KUBECONFIG}"

usage() {
    cat <<EOF

rkube is up: apiserver ${server}, etcd $(rkube_etcd_url)
In another terminal:

  export KUBECONFIG=${RKUBE_KUBECONFIG}
  ${RKUBE_VENV}/bin/kubectl get ns
  ${RKUBE_VENV}/bin/kubectl api-resources
  ${RKUBE_VENV}/bin/kubectl apply -f ${RKUBE_ROOT}/manifests/
  ETCDCTL_API=3 etcdctl --endpoints $(rkube_etcd_url) get /registry --prefix --keys-only

Logs: ${RKUBE_LOG_DIR}/{etcd,apiserver}.log   Data: ${RKUBE_ETCD_DATA_DIR} (kept)
Press Ctrl-C to stop.
EOF
}

# --- 3a. process-compose, when installed ---------------------------------------
if [[ "${RKUBE_NO_PROCESS_COMPOSE:-}" != 1 ]] && command -v process-compose >/dev/null 2>&1; then
    log "starting under process-compose (process-compose.yaml); RKUBE_NO_PROCESS_COMPOSE=1 to skip"
    usage
    tui=true
    [[ -t 0 && -t 1 ]] || tui=false
    cd "${RKUBE_ROOT}"
    exec process-compose --config "${RKUBE_ROOT}/process-compose.yaml" up --tui="${tui}"
fi

# --- 3b. otherwise, supervise the two processes from here ----------------------
etcd_pid=""
apiserver_pid=""
follow_pid=""

rotate_log() {
    if [[ -s "$1" ]]; then mv -f "$1" "$1.1"; fi
    : >"$1"
}

start() {
    # start NAME SCRIPT: runs SCRIPT in the background with its output in
    # $RKUBE_LOG_DIR/NAME.log. setsid keeps Ctrl-C away from the child, so
    # that stop() decides the order of shutdown.
    local name="$1" script="$2" logfile="${RKUBE_LOG_DIR}/$1.log"
    rotate_log "${logfile}"
    if command -v setsid >/dev/null 2>&1; then
        setsid "${script}" >>"${logfile}" 2>&1 </dev/null &
    else
        "${script}" >>"${logfile}" 2>&1 </dev/null &
    fi
    printf -v "${name}_pid" '%s' "$!"
}

# shellcheck disable=SC2317 # reached through the traps below
stop_one() {
    # stop_one NAME PID: SIGTERM, up to 15 s to exit, then SIGKILL.
    local name="$1" pid="$2"
    [[ -n "${pid}" ]] || return 0
    kill -0 "${pid}" 2>/dev/null || return 0
    log "stopping ${name} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 75); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "${pid}" 2>/dev/null; then
        log "${name} did not exit after 15s; killing it"
        kill -KILL "${pid}" 2>/dev/null || true
    fi
    wait "${pid}" 2>/dev/null || true
}

stopping=false
# shellcheck disable=SC2317 # reached through the traps below
stop() {
    [[ "${stopping}" == false ]] || return 0
    stopping=true
    if [[ -n "${follow_pid}" ]]; then kill "${follow_pid}" 2>/dev/null || true; fi
    stop_one apiserver "${apiserver_pid}"
    stop_one etcd "${etcd_pid}"
}
trap 'stop; log "stopped"; exit 0' INT TERM
trap stop EXIT

wait_healthy() {
    # wait_healthy NAME PID SECONDS: polls hack/healthcheck.sh NAME.
    local name="$1" pid="$2" deadline=$((SECONDS + $3))
    while ! "${hack_dir}/healthcheck.sh" "${name}" 2>/dev/null; do
        if ! kill -0 "${pid}" 2>/dev/null; then
            log "${name} exited during start-up; last lines of ${RKUBE_LOG_DIR}/${name}.log:"
            tail -n 30 "${RKUBE_LOG_DIR}/${name}.log" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "${name} not healthy after $3s; last lines of ${RKUBE_LOG_DIR}/${name}.log:"
            tail -n 30 "${RKUBE_LOG_DIR}/${name}.log" >&2 || true
            exit 1
        fi
        sleep 0.3
    done
    log "${name} is healthy (pid ${pid})"
}

log "starting etcd on $(rkube_etcd_url), data in ${RKUBE_ETCD_DATA_DIR}"
start etcd "${hack_dir}/run-etcd.sh"
wait_healthy etcd "${etcd_pid}" 30

log "starting rkube-apiserver on ${server}"
start apiserver "${hack_dir}/run-apiserver.sh"
wait_healthy apiserver "${apiserver_pid}" 60

usage
if [[ "${RKUBE_FOLLOW_LOGS:-}" == 1 ]]; then
    tail -n 0 -F "${RKUBE_LOG_DIR}/apiserver.log" &
    follow_pid=$!
fi

# Stay in the foreground until Ctrl-C or until one process dies.
set +e
wait -n "${etcd_pid}" "${apiserver_pid}"
status=$?
set -e
for name in etcd apiserver; do
    pid_var="${name}_pid"
    if ! kill -0 "${!pid_var}" 2>/dev/null; then
        log "${name} exited unexpectedly (status ${status}); last lines of ${RKUBE_LOG_DIR}/${name}.log:"
        tail -n 30 "${RKUBE_LOG_DIR}/${name}.log" >&2 || true
    fi
done
exit 1
