#!/usr/bin/env bash
# Runs inside a Lima VM of the lab (lima/master.yaml, lima/worker.yaml) at every boot, and again
# on `make lima/run`; the QEMU VMs of `make vm-lab-up` (hack/vm-lab-up.sh) run it the same way,
# at every boot, from a systemd unit their cloud-init seed installs. It installs the packages
# once (hack/lab-provision.sh packages), works out this VM's address and its peers', then
# (re)starts the lab's processes with hack/lab-provision.sh in a systemd unit `rkube-lab`, so
# they outlive the provisioning and `systemctl restart rkube-lab` starts them again.
#
#   lima/vm-provision.sh master|worker
#
# The VM's role and worker number come from its hostname (lima-rkube-master,
# lima-rkube-worker1, lima-rkube-worker2). Peers are found as lima-rkube-<name>.internal on the
# user-v2 network (in the QEMU VM lab, through the /etc/hosts its seed writes). State and logs:
# /var/lib/rkube-lab.
set -euo pipefail

role="${1:?usage: vm-provision.sh master|worker}"
repo=/rkube
state=/var/lib/rkube-lab
bin_dir="${LAB_BIN_DIR:-${repo}/target/debug}"

die() {
    echo "vm-provision: $*" >&2
    exit 1
}

[[ -x "${repo}/hack/lab-provision.sh" ]] || die "${repo} is not the rkube checkout (see lima/README.md)"
[[ -x "${bin_dir}/rkube-apiserver" ]] || die "no binaries in ${bin_dir}: run 'make build' on the host first"

if ! command -v etcd >/dev/null || ! command -v containerd >/dev/null || [[ ! -x /usr/lib/cni/bridge ]]; then
    "${repo}/hack/lab-provision.sh" packages
fi

# This VM's address on the shared network: the source address of its route to a peer.
peer_ip() {
    getent ahostsv4 "lima-rkube-$1.internal" | awk 'NR == 1 { print $1 }'
}
own_ip() {
    local probe
    probe="$(peer_ip master)"
    [[ -n "${probe}" ]] || die "cannot resolve lima-rkube-master.internal (is the VM on the user-v2 network?)"
    ip -4 route get "${probe}" | sed -n 's/.* src \([0-9.]*\).*/\1/p'
}

mkdir -p "${state}"
# After a reboot (a power-off, a reset), what the previous boot's processes left behind is stale:
# their pid files name pids this boot may have given to other processes (the `stop` below would
# kill those), and containerd's state directory, which containerd expects on a tmpfs, still
# holds the old tasks' bundles (a pod's new task then fails: "failed to start shim: mkdir ...:
# file exists"). Both go, as a tmpfs would have. (The boot id tells a new boot from `make
# lima/run` re-running this script.)
boot_id="$(cat /proc/sys/kernel/random/boot_id)"
if [[ -f "${state}/boot-id" && "$(cat "${state}/boot-id")" != "${boot_id}" ]]; then
    rm -f "${state}"/*.pid
    rm -rf "${state}/containerd/state"
fi
echo "${boot_id}" >"${state}/boot-id"
node_ip="$(own_ip)"
echo "${node_ip}" >"${state}/node-ip"
env_args=(--setenv=LAB_STATE="${state}" --setenv=NODE_IP="${node_ip}" --setenv=BIN_DIR="${bin_dir}"
    --setenv=TEST_IMAGE_TAR="${state}/busybox-oci.tar")

# hack/lab-provision.sh's timing settings, when this script is given them (the QEMU VM lab's
# VM_LAB_ENV, through /etc/default/rkube-lab), go on to the lab's processes.
for var in NODE_MONITOR_PERIOD NODE_MONITOR_GRACE POD_EVICTION_TIMEOUT NODE_EVICTION_RATE \
    PODGC_QUARANTINE LEASE_RENEW SYNC_FREQUENCY KUBELET_EXTRA_ARGS; do
    if [[ -n "${!var:-}" ]]; then env_args+=(--setenv="${var}=${!var}"); fi
done

case "${role}" in
master) ;;
worker)
    host="$(hostname)"
    number="${host##*worker}"
    [[ "${number}" == 1 || "${number}" == 2 ]] || die "hostname ${host} is not lima-rkube-worker1/2"
    other=$((3 - number))
    master_ip="$(peer_ip master)"
    # CLUSTER_CIDR: the pods of these labs, for rkube-proxy (lab-provision.sh's default,
    # 10.248.0.0/13, is the namespace lab's: it misses these pods and holds the addresses of
    # the QEMU VM lab's nodes, 10.249.0.x).
    env_args+=(--setenv=NODE_NAME="worker${number}" --setenv=POD_CIDR="10.244.${number}.0/24"
        --setenv=CLUSTER_CIDR=10.244.0.0/16 --setenv=API_URL="http://${master_ip}:6443")
    # host-gw: the other worker's pods through its address. At first boot the other worker may
    # not be up yet: `make lima/run` (run by `make lima/init-vms` at the end) adds the route.
    other_ip="$(peer_ip "worker${other}")"
    if [[ -n "${other_ip}" ]]; then
        env_args+=(--setenv=LAB_ROUTES="10.244.${other}.0/24=${other_ip}")
    else
        echo "vm-provision: lima-rkube-worker${other}.internal not up yet: no route to its pods until 'make lima/run'" >&2
    fi
    # The test image is built here (the checkout is mounted read-only).
    [[ -f "${state}/busybox-oci.tar" ]] || bash "${repo}/hack/build-test-image.sh" "${state}/busybox-oci.tar"
    ;;
*) die "unknown role ${role}" ;;
esac

# A oneshot unit that stays active: the processes lab-provision.sh starts in the background live
# in its cgroup until `systemctl stop rkube-lab` (or restart) ends them all.
systemctl stop rkube-lab 2>/dev/null || true
systemctl reset-failed rkube-lab 2>/dev/null || true
LAB_STATE="${state}" "${repo}/hack/lab-provision.sh" stop
systemd-run --unit=rkube-lab --property=Type=oneshot --property=RemainAfterExit=yes \
    --property=TimeoutStartSec=300 "${env_args[@]}" "${repo}/hack/lab-provision.sh" "${role}"
echo "vm-provision: ${role} started at ${node_ip} (state and logs in ${state})"
