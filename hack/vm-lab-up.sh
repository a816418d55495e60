#!/usr/bin/env bash
# The multi-node lab on three real virtual machines (QEMU/KVM): a master (etcd, apiserver,
# controller-manager, scheduler, rkube-dns) and two workers (containerd, rkubelet, rkube-proxy),
# each a Debian 12 VM with its own kernel, systemd and network, provisioned by the same
# lima/vm-provision.sh the Lima templates (lima/*.yaml) run. Needs root, and /dev/kvm to be
# quick (without a /dev/kvm that boots Debian's kernel, QEMU emulates the CPU: see VM_ACCEL).
#
#   hack/vm-lab-up.sh                 build the image if needed (hack/vm-image.sh), take down a
#                                     previous VM lab, boot the three VMs and wait until the
#                                     apiserver answers and both Nodes are Ready (make vm-lab-up)
#   hack/vm-lab-up.sh poweroff NAME   pull NAME's plug: kill -9 of its QEMU (no shutdown)
#   hack/vm-lab-up.sh poweron NAME    boot NAME again from its disk and wait until it is back
#                                     (master: apiserver ready; worker: kubelet healthy)
#   hack/vm-lab-up.sh reboot NAME     press NAME's reset button (QMP system_reset) and wait
#                                     until it is back, as for poweron
#   hack/vm-lab-up.sh ssh NAME [CMD]  a root shell in NAME, or run CMD there
#   hack/vm-lab-up.sh console NAME    NAME's serial console (root logged in; Ctrl-] leaves)
#   hack/vm-lab-up.sh status          each VM: running or off, its address and pid
# NAME is master, worker1 or worker2. hack/vm-lab-down.sh (make vm-lab-down) removes it all.
#
# How it is built: each VM boots the image's kernel directly (-kernel/-initrd) with a qcow2
# overlay of the image's root filesystem as /dev/vda (the image stays pristine; the overlay
# keeps the VM's state across poweroff/poweron), and a NoCloud seed ISO (volume cidata) that
# gives cloud-init its hostname (lima-rkube-master, lima-rkube-worker1, lima-rkube-worker2, as
# in Lima), its static address, an /etc/hosts naming the peers lima-rkube-<name>.internal (as
# Lima's user-v2 network does), root's ssh key, the checkout's 9p mount at /rkube (read-only,
# as the Lima templates mount it) and a unit, rkube-vm-provision, that runs
# `/rkube/lima/vm-provision.sh master|worker` at every boot (as Lima's provisioning does).
# The VMs have no internet: everything they run is in the image or the checkout.
#
# Network: a bridge on this machine (${VM_LAB_NAME}-br, ${VM_NET}.1/24) with one tap per VM
# (${VM_LAB_NAME}-m, -w1, -w2). Addresses: master ${VM_NET}.10, worker1 .11, worker2 .12. Pods:
# worker1 10.244.1.0/24, worker2 10.244.2.0/24 (lima/vm-provision.sh), routed from this machine
# through the workers' addresses (host-gw), so `curl http://<pod IP>:8080/` works from here.
# The apiserver is http://${VM_NET}.10:6443 (plain HTTP, as in the Lima lab); the kubeconfig
# for this machine is ${VM_LAB_STATE}/kubeconfig (lima/kubeconfig is left to Lima).
#
# Settings (environment; `up` records them in ${VM_LAB_STATE}/lab.env, which the other
# commands read):
#   VM_LAB_STATE      state directory: per VM its disk overlay, seed, pid file, QMP and console
#                     sockets, console log (default <repo>/.rkube/vm-lab)
#   VM_CACHE          the image (default <repo>/.rkube/vm; see hack/vm-image.sh)
#   VM_LAB_NAME       prefix of the bridge and taps (default rkvm; at most 8 characters)
#   VM_BRIDGE         the bridge (default ${VM_LAB_NAME}-br)
#   VM_NET            the first three octets of the VMs' /24 (default 10.249.0; the namespace
#                     lab uses 10.250-10.252, pods 10.244.x, Services 10.96.0.0/12)
#   VM_CPUS           vCPUs of each VM (default 1)
#   VM_MASTER_MEMORY  the master's memory in MiB (default 1536)
#   VM_WORKER_MEMORY  each worker's memory in MiB (default 1024)
#   VM_LAB_ENV        hack/lab-provision.sh settings for the lab's processes, space-separated
#                     NAME=VALUE (NODE_MONITOR_PERIOD, NODE_MONITOR_GRACE, POD_EVICTION_TIMEOUT,
#                     NODE_EVICTION_RATE, PODGC_QUARANTINE, LEASE_RENEW, SYNC_FREQUENCY), e.g.
#                     "POD_EVICTION_TIMEOUT=30s": written to each VM's /etc/default/rkube-lab,
#                     which its provisioning unit reads (default: none, lab-provision.sh's defaults)
#   VM_ACCEL          kvm, tcg (QEMU's software emulation: works anywhere, about ten times
#                     slower) or auto (default): kvm when a probe boot of the image's kernel
#                     under /dev/kvm prints its banner, else tcg with a warning saying why. (A
#                     /dev/kvm of the PVM kind, kvm_pvm, runs only kernels built as PVM guests:
#                     Debian's kernel hangs there, so auto picks tcg.) The probe's answer is
#                     kept in ${VM_CACHE} per host kernel and image.
#   VM_BOOT_TIMEOUT   seconds to wait for the lab, or a VM powered on (default 300 with kvm,
#                     900 with tcg)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VM_LAB_STATE="${VM_LAB_STATE:-${repo_root}/.rkube/vm-lab}"
if [[ -f "${VM_LAB_STATE}/lab.env" && "${1:-up}" != up ]]; then
    # shellcheck source=/dev/null
    source "${VM_LAB_STATE}/lab.env"
fi
VM_CACHE="${VM_CACHE:-${repo_root}/.rkube/vm}"
VM_LAB_NAME="${VM_LAB_NAME:-rkvm}"
VM_BRIDGE="${VM_BRIDGE:-${VM_LAB_NAME}-br}"
VM_NET="${VM_NET:-10.249.0}"
VM_CPUS="${VM_CPUS:-1}"
VM_MASTER_MEMORY="${VM_MASTER_MEMORY:-1536}"
VM_WORKER_MEMORY="${VM_WORKER_MEMORY:-1024}"
VM_ACCEL="${VM_ACCEL:-auto}"
VM_LAB_ENV="${VM_LAB_ENV:-}"
VM_BOOT_TIMEOUT="${VM_BOOT_TIMEOUT:-}"
rkubectl="${repo_root}/target/debug/rkubectl"

vms=(master worker1 worker2)
declare -A ip=([master]="${VM_NET}.10" [worker1]="${VM_NET}.11" [worker2]="${VM_NET}.12")
declare -A tap=([master]="${VM_LAB_NAME}-m" [worker1]="${VM_LAB_NAME}-w1" [worker2]="${VM_LAB_NAME}-w2")
declare -A mac=([master]="52:54:00:f9:00:10" [worker1]="52:54:00:f9:00:11" [worker2]="52:54:00:f9:00:12")
declare -A memory=([master]="${VM_MASTER_MEMORY}" [worker1]="${VM_WORKER_MEMORY}" [worker2]="${VM_WORKER_MEMORY}")
declare -A pods=([worker1]="10.244.1.0/24" [worker2]="10.244.2.0/24")

log() { echo "vm-lab: $*"; }
die() {
    echo "vm-lab: $*" >&2
    exit 1
}

# ms: milliseconds since the epoch; secs START: seconds since START (ms) with one decimal.
ms() { date +%s%3N; }
secs() {
    local d=$(($(ms) - $1))
    printf '%d.%d' $((d / 1000)) $((d % 1000 / 100))
}

check_name() {
    [[ -n "${ip[${1:-}]:-}" ]] || die "unknown VM '${1:-}': master, worker1 or worker2"
}

# pid NAME: the pid of NAME's QEMU if it runs (empty otherwise).
pid() {
    local file="${VM_LAB_STATE}/$1/qemu.pid" p
    [[ -f "${file}" ]] || return 0
    p="$(cat "${file}")"
    if [[ -n "${p}" && -d "/proc/${p}" ]] && [[ "$(readlink "/proc/${p}/exe")" == *qemu-system* ]]; then
        echo "${p}"
    fi
}

ssh_opts=(-i "${VM_LAB_STATE}/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes)

# qmp NAME COMMAND: one QMP command (e.g. system_reset) to NAME's QEMU.
qmp() {
    local socket="${VM_LAB_STATE}/$1/qmp.sock"
    [[ -S "${socket}" ]] || die "$1 has no QMP socket (${socket}): is it running?"
    local reply
    reply="$(printf '{"execute":"qmp_capabilities"}\n{"execute":"%s"}\n' "$2" | socat -t 2 - "UNIX-CONNECT:${socket}")"
    # The greeting, then one reply for each command.
    [[ "${reply}" != *'"error"'* && "$(grep -c '"return"' <<<"${reply}")" -ge 2 ]] ||
        die "QMP $2 to $1 failed: ${reply}"
}

# launch NAME: starts NAME's QEMU in the background (its disk and seed must exist).
launch() {
    local name="$1" dir="${VM_LAB_STATE}/$1"
    [[ -z "$(pid "${name}")" ]] || die "${name} is already running (pid $(pid "${name}"))"
    rm -f "${dir}/qemu.pid" "${dir}/qmp.sock" "${dir}/console.sock"
    echo "=== $(date -u '+%F %T') boot" >>"${dir}/console.log"
    # Direct kernel boot of the image's kernel; the root filesystem is the overlay (vda), the
    # seed the second disk. The serial console is a socket (console NAME) and a log.
    local accel=(-machine q35,accel=kvm -cpu host)
    if [[ "${VM_ACCEL}" == tcg ]]; then accel=(-machine q35,accel=tcg -cpu max); fi
    qemu-system-x86_64 -name "rkube-${name},process=rkvm-${name}" "${accel[@]}" \
        -smp "${VM_CPUS}" -m "${memory[${name}]}" -nodefaults -no-user-config -display none \
        -kernel "${VM_CACHE}/vmlinuz" -initrd "${VM_CACHE}/initrd.img" \
        -append "root=/dev/vda ro console=ttyS0,115200 net.ifnames=0 systemd.show_status=error" \
        -drive "file=${dir}/disk.qcow2,if=virtio,format=qcow2,discard=unmap" \
        -drive "file=${dir}/seed.iso,if=virtio,format=raw,readonly=on" \
        -netdev "tap,id=lab,ifname=${tap[${name}]},script=no,downscript=no" \
        -device "virtio-net-pci,netdev=lab,mac=${mac[${name}]}" \
        -virtfs "local,path=${repo_root},mount_tag=rkube,security_model=none,readonly=on" \
        -device virtio-rng-pci \
        -chardev "socket,id=console,path=${dir}/console.sock,server=on,wait=off,logfile=${dir}/console.log,logappend=on" \
        -serial chardev:console \
        -qmp "unix:${dir}/qmp.sock,server=on,wait=off" \
        -pidfile "${dir}/qemu.pid" -daemonize 2>>"${dir}/qemu.log" ||
        die "QEMU did not start ${name} (see ${dir}/qemu.log)"
}

# ready NAME: whether NAME's lab role answers (master: the apiserver's /readyz; worker: the
# kubelet's /healthz).
ready() {
    case "$1" in
    master) curl -fsS -m 2 "http://${ip[master]}:6443/readyz" >/dev/null 2>&1 ;;
    *) curl -fsS -m 2 "http://${ip[$1]}:10250/healthz" >/dev/null 2>&1 ;;
    esac
}

# sshd_up NAME: whether NAME's sshd accepts connections (the OS has booted).
sshd_up() {
    timeout 1 bash -c "exec 3<>/dev/tcp/${ip[$1]}/22" 2>/dev/null
}

# node_ready NODE: whether the Node's Ready condition is True.
node_ready() {
    "${rkubectl}" --kubeconfig "${VM_LAB_STATE}/kubeconfig" get nodes 2>/dev/null |
        awk -v n="$1" '$1 == n && $2 == "Ready" { found = 1 } END { exit !found }'
}

# explain_failure NAME: what to look at when NAME did not come up.
explain_failure() {
    local dir="${VM_LAB_STATE}/$1"
    echo "--- last lines of ${dir}/console.log:" >&2
    tail -n 25 "${dir}/console.log" >&2 || true
    echo "--- more: hack/vm-lab-up.sh ssh $1 journalctl -u rkube-vm-provision -u rkube-lab; logs in /var/lib/rkube-lab/*.log" >&2
}

# wait_back NAME START: waits until NAME's OS and role are up again, printing the times.
wait_back() {
    local name="$1" start="$2" os=""
    local deadline=$((SECONDS + VM_BOOT_TIMEOUT))
    until ready "${name}" && { [[ -n "${os}" ]] || sshd_up "${name}"; }; do
        [[ -n "$(pid "${name}")" ]] || {
            explain_failure "${name}"
            die "${name}'s QEMU exited (see ${VM_LAB_STATE}/${name}/qemu.log)"
        }
        if [[ -z "${os}" ]] && sshd_up "${name}"; then os="$(secs "${start}")"; fi
        if ((SECONDS >= deadline)); then
            explain_failure "${name}"
            die "${name} not back after ${VM_BOOT_TIMEOUT}s"
        fi
        sleep 0.5
    done
    [[ -n "${os}" ]] || os="$(secs "${start}")"
    log "${name} is back: booted (sshd) in ${os}s, $(role_word "${name}") in $(secs "${start}")s"
}

role_word() {
    if [[ "$1" == master ]]; then echo "apiserver ready"; else echo "kubelet healthy"; fi
}

write_seed() {
    local name="$1" dir="${VM_LAB_STATE}/$1" role=worker host="lima-rkube-$1" key
    [[ "${name}" == master ]] && role=master
    key="$(cat "${VM_LAB_STATE}/id_ed25519.pub")"
    mkdir -p "${dir}/seed"
    cat >"${dir}/seed/meta-data" <<EOF
instance-id: ${host}-$(date +%s)
local-hostname: ${host}
EOF
    cat >"${dir}/seed/network-config" <<EOF
version: 2
ethernets:
  lab:
    match:
      macaddress: "${mac[${name}]}"
    addresses: [${ip[${name}]}/24]
    # No internet behind it (nothing is forwarded out): the default route is there so that
    # connections from the VM itself to Service IPs are routed, then DNAT-ed by rkube-proxy.
    routes:
      - to: 0.0.0.0/0
        via: ${VM_NET}.1
EOF
    cat >"${dir}/seed/user-data" <<EOF
#cloud-config
# rkube VM lab (hack/vm-lab-up.sh): ${host}, ${role}.
users: []
disable_root: false
ssh_authorized_keys:
  - ${key}
preserve_hostname: false
manage_etc_hosts: false
write_files:
  # The peers by the names Lima's user-v2 network gives them (lima/vm-provision.sh finds
  # them so).
  - path: /etc/hosts
    content: |
      127.0.0.1 localhost
      127.0.1.1 ${host}
      ${VM_NET}.1 host.rkube-vm-lab.internal
      ${ip[master]} lima-rkube-master.internal
      ${ip[worker1]} lima-rkube-worker1.internal
      ${ip[worker2]} lima-rkube-worker2.internal
  # Settings for the lab's processes (VM_LAB_ENV), read by the unit below.
  - path: /etc/default/rkube-lab
    content: |
$(for setting in ${VM_LAB_ENV}; do echo "      ${setting}"; done)
  # The checkout, read-only, where the Lima templates mount it.
  - path: /etc/fstab
    append: true
    content: |
      rkube /rkube 9p trans=virtio,version=9p2000.L,ro,msize=262144,nofail 0 0
  # Lima runs its provisioning scripts at every boot: so does this unit.
  - path: /etc/systemd/system/rkube-vm-provision.service
    content: |
      [Unit]
      Description=rkube lab: /rkube/lima/vm-provision.sh ${role} (at every boot, as Lima's provisioning)
      Wants=network-online.target
      After=network-online.target
      RequiresMountsFor=/rkube
      [Service]
      EnvironmentFile=-/etc/default/rkube-lab
      Type=oneshot
      RemainAfterExit=yes
      ExecStart=/rkube/lima/vm-provision.sh ${role}
      TimeoutStartSec=600
      Restart=on-failure
      RestartSec=5
      StandardOutput=journal+console
      StandardError=journal+console
      [Install]
      WantedBy=multi-user.target
runcmd:
  - [mkdir, -p, /rkube]
  - [systemctl, daemon-reload]
  - [systemctl, enable, rkube-vm-provision.service]
  - [systemctl, start, --no-block, rkube-vm-provision.service]
EOF
    genisoimage -quiet -output "${dir}/seed.iso" -volid cidata -joliet -rock \
        "${dir}/seed/user-data" "${dir}/seed/meta-data" "${dir}/seed/network-config" ||
        die "genisoimage failed for ${name}'s seed"
}

write_kubeconfig() {
    # As `make lima/run` writes lima/kubeconfig, with the master's address.
    printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: rkube-vm-lab\n  cluster:\n    server: http://%s:6443\nusers:\n- name: rkube-vm-lab\n  user: {}\ncontexts:\n- name: rkube-vm-lab\n  context:\n    cluster: rkube-vm-lab\n    user: rkube-vm-lab\n    namespace: default\ncurrent-context: rkube-vm-lab\n' \
        "${ip[master]}" >"${VM_LAB_STATE}/kubeconfig"
}

# choose_accel: settles VM_ACCEL (auto: kvm if a probe boot works, else tcg) and VM_BOOT_TIMEOUT.
choose_accel() {
    case "${VM_ACCEL}" in
    kvm)
        [[ -c /dev/kvm && -r /dev/kvm && -w /dev/kvm ]] ||
            die "/dev/kvm is missing or not usable (VM_ACCEL=kvm): this machine has no hardware virtualization for QEMU; VM_ACCEL=tcg emulates it"
        ;;
    tcg) ;;
    auto)
        local why=""
        if [[ ! -c /dev/kvm || ! -r /dev/kvm || ! -w /dev/kvm ]]; then
            why="/dev/kvm is missing or not usable"
        else
            # The kernel, with no root, prints its banner at once under KVM, then panics; QEMU
            # exits (-no-reboot). A KVM that cannot run it stays silent until the timeout.
            local probe
            probe="${VM_CACHE}/kvm-probe.$(uname -r).$(cat "${VM_CACHE}/image.key")"
            if [[ ! -f "${probe}" ]]; then
                log "probing /dev/kvm with the image's kernel (once for this host kernel and image)"
                # (In a group whose stderr goes too: bash's "Aborted" when a QEMU aborts, as it
                # does on a CPU it cannot set up.)
                { timeout 30 qemu-system-x86_64 -machine q35,accel=kvm -cpu host -m 256 -nodefaults \
                    -no-user-config -display none -kernel "${VM_CACHE}/vmlinuz" \
                    -append "console=ttyS0 panic=-1" -serial "file:${probe}.log" -no-reboot; } \
                    >/dev/null 2>&1 || true
                if grep -aq 'Linux version' "${probe}.log" 2>/dev/null; then echo ok >"${probe}"; else echo fail >"${probe}"; fi
                rm -f "${probe}.log"
            fi
            if [[ "$(cat "${probe}")" != ok ]]; then
                why="the image's kernel does not boot under this machine's /dev/kvm"
                if [[ -d /sys/module/kvm_pvm ]]; then
                    why+=" (it is PVM, module kvm_pvm: it runs only kernels built as PVM guests)"
                fi
            fi
        fi
        if [[ -z "${why}" ]]; then
            VM_ACCEL=kvm
        else
            VM_ACCEL=tcg
            echo "vm-lab: WARNING: ${why}: the VMs run under QEMU's software emulation (TCG), about ten times slower than KVM (VM_ACCEL=kvm forces KVM)" >&2
        fi
        ;;
    *) die "VM_ACCEL '${VM_ACCEL}' is not kvm, tcg or auto" ;;
    esac
    if [[ -z "${VM_BOOT_TIMEOUT}" ]]; then
        VM_BOOT_TIMEOUT=300
        if [[ "${VM_ACCEL}" == tcg ]]; then VM_BOOT_TIMEOUT=900; fi
    fi
}

need_lab() {
    [[ -f "${VM_LAB_STATE}/lab.env" ]] || die "no VM lab in ${VM_LAB_STATE}: run 'make vm-lab-up' first"
}

up() {
    [[ "$(id -u)" == 0 ]] || die "must run as root (bridge, taps, routes, /dev/kvm)"
    ((${#VM_LAB_NAME} <= 8)) || die "VM_LAB_NAME '${VM_LAB_NAME}' is longer than 8 characters"
    [[ "${VM_NET}" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VM_NET '${VM_NET}' is not three octets (e.g. 10.249.0)"
    local setting
    for setting in ${VM_LAB_ENV}; do
        [[ "${setting}" =~ ^[A-Z_]+=[^\'\"]*$ ]] || die "VM_LAB_ENV: '${setting}' is not NAME=VALUE"
    done
    local tool
    for tool in qemu-system-x86_64 qemu-img genisoimage socat ssh ssh-keygen ip curl mmdebstrap mkfs.ext4; do
        command -v "${tool}" >/dev/null 2>&1 || die "${tool} not found: run 'make deps'"
    done
    local bin
    for bin in rkube-apiserver rkube-controller-manager rkube-scheduler rkube-dns rkubelet rkube-proxy rkubectl; do
        [[ -x "${repo_root}/target/debug/${bin}" ]] || die "target/debug/${bin} not found: run 'make build'"
    done
    local route
    for name in worker1 worker2; do
        route="$(ip -4 route show "${pods[${name}]}")"
        if [[ -n "${route}" && "${route}" != *"dev ${VM_BRIDGE}"* ]]; then
            die "this machine already routes ${pods[${name}]} (${route}): is 'make run' up? The VM lab's pods use it"
        fi
    done

    local total
    total="$(ms)"
    bash "${repo_root}/hack/vm-image.sh" >/dev/null
    choose_accel
    # Start from nothing: a VM lab may be left over.
    VM_LAB_STATE="${VM_LAB_STATE}" VM_LAB_NAME="${VM_LAB_NAME}" VM_BRIDGE="${VM_BRIDGE}" \
        "${repo_root}/hack/vm-lab-down.sh" >/dev/null

    mkdir -p "${VM_LAB_STATE}"
    chmod 700 "${VM_LAB_STATE}"
    cat >"${VM_LAB_STATE}/lab.env" <<EOF
# Written by hack/vm-lab-up.sh: the settings of this VM lab.
VM_CACHE='${VM_CACHE}'
VM_LAB_NAME='${VM_LAB_NAME}'
VM_BRIDGE='${VM_BRIDGE}'
VM_NET='${VM_NET}'
VM_CPUS='${VM_CPUS}'
VM_MASTER_MEMORY='${VM_MASTER_MEMORY}'
VM_WORKER_MEMORY='${VM_WORKER_MEMORY}'
VM_BOOT_TIMEOUT='${VM_BOOT_TIMEOUT}'
VM_ACCEL='${VM_ACCEL}'
VM_LAB_ENV='${VM_LAB_ENV}'
EOF
    ssh-keygen -q -t ed25519 -N '' -C rkube-vm-lab -f "${VM_LAB_STATE}/id_ed25519"
    write_kubeconfig

    # nf_call_*: the VMs' traffic is not passed through this machine's iptables (a FORWARD
    # policy of DROP, as Docker sets, would cut the VMs off from each other).
    ip link add "${VM_BRIDGE}" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0
    ip addr add "${VM_NET}.1/24" dev "${VM_BRIDGE}"
    ip link set "${VM_BRIDGE}" up
    local name
    for name in "${vms[@]}"; do
        ip tuntap add dev "${tap[${name}]}" mode tap
        ip link set "${tap[${name}]}" master "${VM_BRIDGE}" up
        mkdir -p "${VM_LAB_STATE}/${name}"
        qemu-img create -q -f qcow2 -F raw -b "${VM_CACHE}/rootfs.img" "${VM_LAB_STATE}/${name}/disk.qcow2"
        write_seed "${name}"
    done
    # This machine reaches the pods through the workers (host-gw, as hack/lab-up.sh does).
    for name in worker1 worker2; do
        ip route replace "${pods[${name}]}" via "${ip[${name}]}" dev "${VM_BRIDGE}"
    done

    # All three at once: a worker's provisioning retries until the master's apiserver answers.
    declare -A start=() os=() role=()
    for name in "${vms[@]}"; do
        start[${name}]="$(ms)"
        launch "${name}"
    done
    log "booting master (${ip[master]}, ${VM_MASTER_MEMORY} MiB), worker1 (${ip[worker1]}) and worker2 (${ip[worker2]}) (${VM_WORKER_MEMORY} MiB), ${VM_CPUS} vCPU each, with ${VM_ACCEL}; consoles in ${VM_LAB_STATE}/<name>/console.log"
    local deadline=$((SECONDS + VM_BOOT_TIMEOUT)) pending=3
    while ((pending > 0)); do
        pending=0
        for name in "${vms[@]}"; do
            [[ -n "$(pid "${name}")" ]] || {
                explain_failure "${name}"
                die "${name}'s QEMU exited (see ${VM_LAB_STATE}/${name}/qemu.log)"
            }
            if [[ -z "${os[${name}]:-}" ]] && sshd_up "${name}"; then
                os[${name}]="$(secs "${start[${name}]}")"
                log "${name}: booted (sshd answers) in ${os[${name}]}s"
            fi
            if [[ -z "${role[${name}]:-}" ]]; then
                if [[ "${name}" == master ]] && ready master; then
                    role[${name}]="$(secs "${start[${name}]}")"
                    log "master: apiserver ready in ${role[${name}]}s"
                elif [[ "${name}" != master ]] && node_ready "${name}"; then
                    role[${name}]="$(secs "${start[${name}]}")"
                    log "${name}: Node Ready in ${role[${name}]}s"
                fi
            fi
            [[ -n "${role[${name}]:-}" ]] || pending=$((pending + 1))
        done
        if ((pending > 0 && SECONDS >= deadline)); then
            for name in "${vms[@]}"; do
                [[ -n "${role[${name}]:-}" ]] || explain_failure "${name}"
            done
            die "the VM lab is not up after ${VM_BOOT_TIMEOUT}s (VM_BOOT_TIMEOUT)"
        fi
        ((pending == 0)) || sleep 1
    done

    cat <<MSG
vm-lab: the VM lab is up in $(secs "${total}")s with ${VM_ACCEL} (state in ${VM_LAB_STATE}, image in ${VM_CACHE})
  master  ${ip[master]}  booted in ${os[master]:-?}s, apiserver ready in ${role[master]}s: etcd, apiserver http://${ip[master]}:6443, controller-manager, scheduler, rkube-dns
  worker1 ${ip[worker1]}  booted in ${os[worker1]:-?}s, Node Ready in ${role[worker1]}s: containerd, rkubelet, rkube-proxy (pods ${pods[worker1]})
  worker2 ${ip[worker2]}  booted in ${os[worker2]:-?}s, Node Ready in ${role[worker2]}s: containerd, rkubelet, rkube-proxy (pods ${pods[worker2]})
Use it:      export KUBECONFIG=${VM_LAB_STATE}/kubeconfig; ${rkubectl} get nodes -o wide
A shell:     hack/vm-lab-up.sh ssh worker1     (or: hack/vm-lab-up.sh console worker1, Ctrl-] leaves)
             in the VM: journalctl -u rkube-vm-provision -u rkube-lab; /var/lib/rkube-lab/*.log
Power:       hack/vm-lab-up.sh poweroff worker2 | poweron worker2 | reboot master | status
Take it down: make vm-lab-down
MSG
}

cmd="${1:-up}"
case "${cmd}" in
up) up ;;
poweroff)
    need_lab
    check_name "${2:-}"
    p="$(pid "$2")"
    if [[ -z "${p}" ]]; then
        log "$2 is already off"
    else
        kill -KILL "${p}"
        while [[ -d "/proc/${p}" ]]; do sleep 0.1; done
        rm -f "${VM_LAB_STATE}/$2/qemu.pid"
        log "$2 powered off (its QEMU killed: no shutdown, as a pulled plug)"
    fi
    ;;
poweron)
    need_lab
    check_name "${2:-}"
    t="$(ms)"
    launch "$2"
    log "$2 powering on"
    wait_back "$2" "${t}"
    ;;
reboot)
    need_lab
    check_name "${2:-}"
    [[ -n "$(pid "$2")" ]] || die "$2 is off: use poweron"
    t="$(ms)"
    qmp "$2" system_reset
    log "$2 reset"
    # Its services go at once; the checks must not see the old ones.
    sleep 1
    wait_back "$2" "${t}"
    ;;
ssh)
    need_lab
    check_name "${2:-}"
    name="$2"
    shift 2
    exec ssh "${ssh_opts[@]}" "root@${ip[${name}]}" "$@"
    ;;
console)
    need_lab
    check_name "${2:-}"
    [[ -S "${VM_LAB_STATE}/$2/console.sock" ]] || die "$2 has no console socket: is it running?"
    echo "vm-lab: $2's serial console (press Enter for a prompt; Ctrl-] leaves)" >&2
    exec socat -,raw,echo=0,escape=0x1d "UNIX-CONNECT:${VM_LAB_STATE}/$2/console.sock"
    ;;
status)
    need_lab
    for name in "${vms[@]}"; do
        p="$(pid "${name}")"
        if [[ -n "${p}" ]]; then state="running (pid ${p})"; else state=off; fi
        printf '%-8s %-12s %s\n' "${name}" "${ip[${name}]}" "${state}"
    done
    ;;
-h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    ;;
*)
    echo "usage: $0 [up] | poweroff NAME | poweron NAME | reboot NAME | ssh NAME [CMD] | console NAME | status   (see --help)" >&2
    exit 2
    ;;
esac
