#!/usr/bin/env bash
# Takes down the lab hack/lab-up.sh made (same LAB_NAME and LAB_STATE): stops the pods and the
# processes of every host, deletes the namespaces, links and bridge, and removes the state
# directory. Idempotent: what is already gone is skipped.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB_NAME="${LAB_NAME:-rkube}"
LAB_STATE="${LAB_STATE:-${repo_root}/.rkube/lab-${LAB_NAME}}"

[[ "$(id -u)" == 0 ]] || { echo "lab-down: must run as root" >&2; exit 1; }

# Workers first (their pods), then the masters and the load balancer (LAB_HA=1).
for host in worker1 worker2 master master2 master3 lb; do
    if [[ -d "${LAB_STATE}/${host}" ]]; then
        # In the host's namespace while it exists: `stop` removes that host's nftables table.
        in_ns=()
        if [[ -e "/run/netns/${LAB_NAME}-${host}" ]]; then in_ns=(nsenter --net="/run/netns/${LAB_NAME}-${host}"); fi
        "${in_ns[@]}" env LAB_STATE="${LAB_STATE}/${host}" "${repo_root}/hack/lab-provision.sh" stop
    fi
done
for host in worker1 worker2 master master2 master3 lb; do
    ns="${LAB_NAME}-${host}"
    if [[ -e "/run/netns/${ns}" ]]; then
        # Anything still running in the namespace (started by hand in the lab) goes too.
        for pid in $(ip netns pids "${ns}" 2>/dev/null); do
            kill -KILL "${pid}" 2>/dev/null || true
        done
        ip netns delete "${ns}"
    fi
done
for dev in "${LAB_NAME}"-{m,m2,m3,lb,w1,w2,br}; do
    if ip link show "${dev}" >/dev/null 2>&1; then
        ip link delete "${dev}"
    fi
done
rm -rf "${LAB_STATE}"
echo "lab-down: lab '${LAB_NAME}' removed"
