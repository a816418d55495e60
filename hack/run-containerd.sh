#!/usr/bin/env bash
# Runs a private containerd for the local node: its own config, root, state and
# socket under .rkube/containerd (CRI off), so it never touches the
# distribution's containerd service. Used by hack/local-up.sh and
# process-compose.yaml; settings in hack/local-env.sh. Needs root.
#
# On SIGTERM or SIGINT it first removes every pod container of the kubelet's
# namespace `rkube` (kill the tasks, delete tasks and containers, the pods'
# network namespaces, cgroups and CNI reservations), then stops containerd. Stop
# the kubelet before this (local-up.sh and process-compose do); the next run's
# kubelet starts the pods' containers again from what the apiserver holds.
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

log() { printf 'run-containerd: %s\n' "$*" >&2; }

[[ -x "${RKUBE_CONTAINERD_BIN}" ]] || {
    log "${RKUBE_CONTAINERD_BIN} not found; run 'make deps'"
    exit 1
}
[[ "$(id -u)" == 0 ]] || {
    log "containerd needs root (run 'sudo make run')"
    exit 1
}
dir="${RKUBE_CONTAINERD_DIR}"
mkdir -p "${dir}/root" "${dir}/state" "${dir}/opt"
cat >"${dir}/config.toml" <<CONFIG
# Written by hack/run-containerd.sh: the local rkube node's private containerd.
version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${RKUBE_CONTAINERD_ADDRESS}"
[ttrpc]
  address = "${RKUBE_CONTAINERD_ADDRESS}.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"
CONFIG

# shellcheck disable=SC2317 # reached through the trap below
remove_pod_containers() {
    local ids id uid hierarchy
    ids="$(rkube_ctr --timeout 10s containers list --quiet 2>/dev/null || true)"
    for id in ${ids}; do
        log "removing container ${id}"
        rkube_ctr --timeout 10s tasks kill --all --signal SIGKILL "${id}" >/dev/null 2>&1 || true
        rkube_ctr --timeout 10s tasks delete --force "${id}" >/dev/null 2>&1 || true
        rkube_ctr --timeout 10s containers delete "${id}" >/dev/null 2>&1 || true
        # Container IDs are `<pod uid>-<name>`.
        uid="${id:0:36}"
        ip netns delete "rkube-${uid}" >/dev/null 2>&1 || true
        for hierarchy in /sys/fs/cgroup /sys/fs/cgroup/*; do
            [[ -d "${hierarchy}/rkube/pod${uid}" ]] || continue
            find "${hierarchy}/rkube/pod${uid}" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
            rmdir "${hierarchy}/rkube/pod${uid}" 2>/dev/null || true
        done
    done
    # The CNI results and host-local reservations of the pods just removed.
    rm -rf "${RKUBE_KUBELET_DIR}/cni/results" "${RKUBE_KUBELET_DIR}/cni/networks"
}

containerd_pid=""
# shellcheck disable=SC2317 # reached through the trap below
stop() {
    trap '' INT TERM
    remove_pod_containers
    if [[ -n "${containerd_pid}" ]]; then
        kill -TERM "${containerd_pid}" 2>/dev/null || true
        wait "${containerd_pid}" 2>/dev/null || true
    fi
    exit 0
}
trap stop INT TERM

"${RKUBE_CONTAINERD_BIN}" --config "${dir}/config.toml" &
containerd_pid=$!
set +e
wait "${containerd_pid}"
status=$?
# `wait` also returns when a trapped signal arrives; then stop() has exited already.
exit "${status}"
