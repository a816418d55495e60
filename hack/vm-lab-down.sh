#!/usr/bin/env bash
# Takes down the VM lab hack/vm-lab-up.sh made (same VM_LAB_STATE): kills the VMs' QEMUs,
# removes the host routes to the pods, the taps and the bridge, and the state directory (the
# VMs' disks with it). The image (VM_CACHE) is kept for the next `make vm-lab-up`.
# Idempotent: what is already gone is skipped.
#
# Settings (environment): VM_LAB_STATE, and VM_LAB_NAME / VM_BRIDGE when there is no
# ${VM_LAB_STATE}/lab.env left to read them from (see hack/vm-lab-up.sh).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VM_LAB_STATE="${VM_LAB_STATE:-${repo_root}/.rkube/vm-lab}"
if [[ -f "${VM_LAB_STATE}/lab.env" ]]; then
    # shellcheck source=/dev/null
    source "${VM_LAB_STATE}/lab.env"
fi
VM_LAB_NAME="${VM_LAB_NAME:-rkvm}"
VM_BRIDGE="${VM_BRIDGE:-${VM_LAB_NAME}-br}"

[[ "$(id -u)" == 0 ]] || {
    echo "vm-lab-down: must run as root" >&2
    exit 1
}

for name in master worker1 worker2; do
    file="${VM_LAB_STATE}/${name}/qemu.pid"
    [[ -f "${file}" ]] || continue
    pid="$(cat "${file}")"
    # Only a QEMU: the pid may have been reused since.
    if [[ -n "${pid}" && -d "/proc/${pid}" ]] && [[ "$(readlink "/proc/${pid}/exe")" == *qemu-system* ]]; then
        kill -KILL "${pid}" 2>/dev/null || true
        while [[ -d "/proc/${pid}" ]]; do sleep 0.1; done
    fi
done
# The routes to the pods go with the bridge; the taps are the VMs' (persistent) links.
for dev in "${VM_LAB_NAME}"-{m,w1,w2} "${VM_BRIDGE}"; do
    if ip link show "${dev}" >/dev/null 2>&1; then
        ip link delete "${dev}"
    fi
done
rm -rf "${VM_LAB_STATE}"
echo "vm-lab-down: VM lab removed (the image in ${VM_CACHE:-${repo_root}/.rkube/vm} is kept)"
