#!/usr/bin/env bash
# Runs the whole local rkube cluster in the foreground, one node on this machine:
# etcd, a private containerd, rkube-apiserver, rkube-controller-manager,
# rkube-scheduler, rkube-proxy (this machine's nftables), rkube-dns (the cluster DNS) and one rkubelet
# (containerd runtime, pod CIDR RKUBE_POD_CIDR), then deploys the demo app (manifests/demo) and waits until
# its pods are Ready. `make run` calls this; needs root (containerd, CNI).
#
# Ctrl-C stops everything in order: the kubelet first, then the proxy, the scheduler,
# controller-manager and apiserver, then containerd (which removes the demo's
# containers first) and etcd. State is kept in .rkube/ (etcd data, kubelet root
# dir, containerd root), so the next run starts from the same objects and the
# kubelet starts their containers again.
#
# Steps: install missing deps (hack/deps.sh), `cargo build --bins`, write
# .rkube/kubeconfig, then start the processes under process-compose
# (process-compose.yaml) when it is installed, or supervise them from here.
#
# Environment (defaults in hack/local-env.sh):
#   RKUBE_PORT=6443  ETCD_PORT=2379  RKUBE_ETCD_PEER_PORT=ETCD_PORT+1
#   RKUBE_CONTROLLER_MANAGER_PORT=10257  RKUBE_SCHEDULER_PORT=10259  RKUBE_KUBELET_PORT=10250
#   RKUBE_PROXY_PORT=10256  RKUBE_CLUSTER_CIDR=10.244.0.0/16
#   RKUBE_DNS_PORT=1053  RKUBE_DNS_HEALTH_PORT=10055  RKUBE_CLUSTER_DNS=10.96.0.10
#   RKUBE_NODE_NAME=node1  RKUBE_POD_CIDR=10.244.1.0/24  RKUBE_STATE_DIR=.rkube
#   RKUBE_{APISERVER,CONTROLLER_MANAGER,SCHEDULER,PROXY,DNS,KUBELET}_FLAGS="..." (extra flags)
#   RKUBE_SKIP_BUILD=1         do not run cargo build
#   RKUBE_NO_DEMO=1            do not deploy manifests/demo
#   RKUBE_NO_PROCESS_COMPOSE=1 supervise from this script even if process-compose exists
#   RKUBE_FOLLOW_LOGS=1        also print the apiserver log here
# A process that exits while the cluster runs is started again (at most 5 times).
# Process IDs: .rkube/run/NAME.pid (NAME: etcd containerd apiserver controller-manager
# scheduler proxy dns kubelet), e.g. `kill -9 $(cat .rkube/run/apiserver.pid)`.
set -euo pipefail
hack_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/local-env.sh
source "${hack_dir}/local-env.sh"

# Never fail on a closed stdout (e.g. `make run | tee`, its reader gone at Ctrl-C): the
# shutdown must go on.
log() { printf 'local-up: %s\n' "$*" 2>/dev/null || true; }
die() {
    printf 'local-up: error: %s\n' "$*" >&2
    exit 1
}

port_in_use() {
    # A successful TCP connect means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- 1. dependencies and build --------------------------------------------------
[[ "$(id -u)" == 0 ]] || die "the local node needs root (containerd, network namespaces): run 'sudo make run'"
if ! bash "${hack_dir}/deps.sh" --check >/dev/null 2>&1; then
    log "something the cluster needs is missing (make check-deps names it): running hack/deps.sh"
    bash "${hack_dir}/deps.sh"
fi

if [[ "${RKUBE_SKIP_BUILD:-}" != 1 ]]; then
    log "building (cargo build --bins)"
    (cd "${RKUBE_ROOT}" && cargo build --bins)
fi
for bin in "${RKUBE_APISERVER_BIN}" "${RKUBE_CONTROLLER_MANAGER_BIN}" "${RKUBE_SCHEDULER_BIN}" "${RKUBELET_BIN}" "${RKUBECTL_BIN}" "${RKUBE_PKI_BIN}"; do
    [[ -x "${bin}" ]] || die "${bin} not found after the build"
done

# --- 2. state directory, ports, kubeconfig -------------------------------------
mkdir -p "${RKUBE_LOG_DIR}" "${RKUBE_ETCD_DATA_DIR}" "${RKUBE_CONTAINERD_DIR}" "${RKUBE_KUBELET_DIR}" "${RKUBE_STATE_DIR}/run"

for port in "${ETCD_PORT}" "${RKUBE_ETCD_PEER_PORT}" "${RKUBE_PORT}" "${RKUBE_CONTROLLER_MANAGER_PORT}" \
    "${RKUBE_SCHEDULER_PORT}" "${RKUBE_KUBELET_PORT}"; do
    if port_in_use "${port}"; then
        die "port ${port} is already in use (a 'make run' still running? Debian's etcd.service?). Stop it, or pick other ports: RKUBE_PORT=... ETCD_PORT=... make run"
    fi
done
if [[ -S "${RKUBE_CONTAINERD_ADDRESS}" ]] && "${hack_dir}/healthcheck.sh" containerd >/dev/null 2>&1; then
    die "a containerd already answers on ${RKUBE_CONTAINERD_ADDRESS} (a 'make run' still running?)"
fi

server="$(rkube_apiserver_url)"
kubeconfig_tmp="$(mktemp "${RKUBE_KUBECONFIG}.XXXXXX")"
if [[ "${RKUBE_SECURE}" == 1 ]]; then
    # The cluster's CA and every identity's certificate (kept across runs for the same URL).
    "${RKUBE_PKI_BIN}" --dir "${RKUBE_PKI_DIR}" --server "${server}" \
        --apiserver-address "${RKUBE_BIND_ADDRESS}" --node "${RKUBE_NODE_NAME}=127.0.0.1" | sed 's/^/local-up: /'
    cp "${RKUBE_PKI_DIR}/admin.kubeconfig" "${kubeconfig_tmp}"
    chmod 600 "${kubeconfig_tmp}"
else
    cat >"${kubeconfig_tmp}" <<EOF
# Written by hack/local-up.sh for the local rkube cluster (RKUBE_SECURE=0: plain HTTP).
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
fi
mv "${kubeconfig_tmp}" "${RKUBE_KUBECONFIG}"

usage() {
    local ip service
    ip="$(KUBECONFIG="${RKUBE_KUBECONFIG}" "${RKUBECTL_BIN}" get pods -l app=demo \
        -o jsonpath='{.items[0].status.podIP}' 2>/dev/null || true)"
    service="$(KUBECONFIG="${RKUBE_KUBECONFIG}" "${RKUBECTL_BIN}" get svc demo \
        -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)"
    cat <<EOF

rkube is up: apiserver ${server}, etcd $(rkube_etcd_url), node ${RKUBE_NODE_NAME} (pods in ${RKUBE_POD_CIDR})
In another terminal:

  export KUBECONFIG=${RKUBE_KUBECONFIG}
  ${RKUBECTL_BIN} get nodes
  ${RKUBECTL_BIN} get deploy,rs,pods -o wide
  curl http://${ip:-<pod IP>}:8080/          (one pod)
  curl http://${service:-<cluster IP>}/          (the Service: any of the pods; docs/services.md)
  ${RKUBECTL_BIN} scale deploy demo --replicas=5
  ${RKUBE_VENV}/bin/kubectl get pods -o wide          (kubectl works too)
  ETCDCTL_API=3 etcdctl --endpoints $(rkube_etcd_url) get /registry --prefix --keys-only

The lab guide: docs/lab.md.   More examples: ${RKUBE_ROOT}/manifests/
Logs: ${RKUBE_LOG_DIR}/   State: ${RKUBE_STATE_DIR} (kept; 'make clean-state' to start empty)
Press Ctrl-C to stop.
EOF
}

# --- 3a. process-compose, when installed ---------------------------------------
if [[ "${RKUBE_NO_PROCESS_COMPOSE:-}" != 1 ]] && command -v process-compose >/dev/null 2>&1; then
    log "starting under process-compose (process-compose.yaml); RKUBE_NO_PROCESS_COMPOSE=1 to skip"
    tui=true
    [[ -t 0 && -t 1 ]] || tui=false
    cd "${RKUBE_ROOT}"
    exec process-compose --config "${RKUBE_ROOT}/process-compose.yaml" up --tui="${tui}"
fi

# --- 3b. otherwise, supervise the processes from here --------------------------
# Start order; the stop order is the reverse.
names=(etcd containerd apiserver controller-manager scheduler proxy dns kubelet)
declare -A pids=()
follow_pid=""

rotate_log() {
    if [[ -s "$1" ]]; then mv -f "$1" "$1.1"; fi
    : >"$1"
}

start() {
    # start NAME: runs hack/run-NAME.sh in the background with its output in
    # $RKUBE_LOG_DIR/NAME.log. setsid keeps Ctrl-C away from the child, so
    # that stop() decides the order of shutdown.
    local name="$1" logfile="${RKUBE_LOG_DIR}/$1.log"
    rotate_log "${logfile}"
    if command -v setsid >/dev/null 2>&1; then
        setsid "${hack_dir}/run-${name}.sh" >>"${logfile}" 2>&1 </dev/null &
    else
        "${hack_dir}/run-${name}.sh" >>"${logfile}" 2>&1 </dev/null &
    fi
    pids[${name}]=$!
    echo "${pids[${name}]}" >"${RKUBE_STATE_DIR}/run/${name}.pid"
}

# shellcheck disable=SC2317 # reached through the traps below
stop_one() {
    # stop_one NAME SECONDS: SIGTERM, up to SECONDS to exit, then SIGKILL.
    local name="$1" pid="${pids[$1]:-}" limit="$2"
    [[ -n "${pid}" ]] || return 0
    kill -0 "${pid}" 2>/dev/null || return 0
    log "stopping ${name} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 $((limit * 5))); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "${pid}" 2>/dev/null; then
        log "${name} did not exit after ${limit}s; killing it"
        kill -KILL "${pid}" 2>/dev/null || true
    fi
    wait "${pid}" 2>/dev/null || true
}

stopping=false
# shellcheck disable=SC2317 # reached through the traps below
stop() {
    [[ "${stopping}" == false ]] || return 0
    stopping=true
    trap '' INT TERM PIPE
    if [[ -n "${follow_pid}" ]]; then kill "${follow_pid}" 2>/dev/null || true; fi
    local i
    for ((i = ${#names[@]} - 1; i >= 0; i--)); do
        # containerd removes the pods' containers before it exits: give it longer.
        if [[ "${names[i]}" == containerd ]]; then
            stop_one containerd 60
        else
            stop_one "${names[i]}" 15
        fi
        # The proxy's rules outlive it (as kube-proxy's do); the cluster is going away.
        if [[ "${names[i]}" == proxy ]]; then
            nft delete table ip rkube-proxy 2>/dev/null || true
        fi
    done
}
trap 'stop; log "stopped"; exit 0' INT TERM
trap stop EXIT

wait_healthy() {
    # wait_healthy NAME SECONDS: polls hack/healthcheck.sh NAME.
    local name="$1" pid="${pids[$1]}" deadline=$((SECONDS + $2))
    while ! "${hack_dir}/healthcheck.sh" "${name}" >/dev/null 2>&1; do
        if ! kill -0 "${pid}" 2>/dev/null; then
            log "${name} exited during start-up; last lines of ${RKUBE_LOG_DIR}/${name}.log:"
            tail -n 30 "${RKUBE_LOG_DIR}/${name}.log" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "${name} not healthy after $2s; last lines of ${RKUBE_LOG_DIR}/${name}.log:"
            tail -n 30 "${RKUBE_LOG_DIR}/${name}.log" >&2 || true
            exit 1
        fi
        sleep 0.3
    done
    log "${name} is healthy (pid ${pid})"
}

log "starting etcd on $(rkube_etcd_url), data in ${RKUBE_ETCD_DATA_DIR}"
start etcd
wait_healthy etcd 30

log "starting containerd on ${RKUBE_CONTAINERD_ADDRESS}"
start containerd
wait_healthy containerd 30
"${hack_dir}/run-demo.sh" import

log "starting rkube-apiserver on ${server}"
start apiserver
wait_healthy apiserver 60

log "starting rkube-controller-manager (port ${RKUBE_CONTROLLER_MANAGER_PORT})"
start controller-manager
wait_healthy controller-manager 60

log "starting rkube-scheduler (port ${RKUBE_SCHEDULER_PORT})"
start scheduler
wait_healthy scheduler 60

log "starting rkube-proxy: nftables table ip rkube-proxy (port ${RKUBE_PROXY_PORT})"
start proxy
wait_healthy proxy 60

log "starting rkube-dns: the kube-dns Service ${RKUBE_CLUSTER_DNS} (port ${RKUBE_DNS_PORT})"
start dns
wait_healthy dns 60

log "starting rkubelet: node ${RKUBE_NODE_NAME}, pod CIDR ${RKUBE_POD_CIDR} (port ${RKUBE_KUBELET_PORT})"
start kubelet
wait_healthy kubelet 60

if [[ "${RKUBE_NO_DEMO:-}" != 1 ]]; then
    "${hack_dir}/run-demo.sh" apply
fi

usage
if [[ "${RKUBE_FOLLOW_LOGS:-}" == 1 ]]; then
    tail -n 0 -F "${RKUBE_LOG_DIR}/apiserver.log" &
    follow_pid=$!
fi

# Stay in the foreground until Ctrl-C. A process that exits is started again after 2 s
# (at most 5 times each, like process-compose's `restart: on_failure`), so the lab can
# kill the apiserver and watch the others reconnect (docs/lab.md).
declare -A restarts=()
while true; do
    set +e
    wait -n "${pids[@]}"
    status=$?
    set -e
    for name in "${names[@]}"; do
        kill -0 "${pids[${name}]}" 2>/dev/null && continue
        restarts[${name}]=$((${restarts[${name}]:-0} + 1))
        if ((restarts[${name}] > 5)); then
            log "${name} exited ${restarts[${name}]} times; giving up. Last lines of ${RKUBE_LOG_DIR}/${name}.log:"
            tail -n 30 "${RKUBE_LOG_DIR}/${name}.log" >&2 || true
            exit 1
        fi
        log "${name} exited (status ${status}); starting it again in 2s (restart ${restarts[${name}]} of 5)"
        sleep 2
        # Append to the log rather than rotate it: the lab reads what happened around the restart.
        if command -v setsid >/dev/null 2>&1; then
            setsid "${hack_dir}/run-${name}.sh" >>"${RKUBE_LOG_DIR}/${name}.log" 2>&1 </dev/null &
        else
            "${hack_dir}/run-${name}.sh" >>"${RKUBE_LOG_DIR}/${name}.log" 2>&1 </dev/null &
        fi
        pids[${name}]=$!
        echo "${pids[${name}]}" >"${RKUBE_STATE_DIR}/run/${name}.pid"
    done
done
