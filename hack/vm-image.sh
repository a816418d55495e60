#!/usr/bin/env bash
# Builds the VM lab's Debian 12 (bookworm) image once, from Debian's packages with mmdebstrap,
# and keeps it: later runs reuse it until this script (which holds the package list) changes.
# hack/vm-lab-up.sh runs it; run it alone to build the image ahead of time. Needs root and the
# Debian mirror (the only step of the VM lab that downloads; the VMs themselves have no
# internet).
#
#   hack/vm-image.sh            build the image if it is missing or out of date, print its path
#   hack/vm-image.sh --force    build it again
#
# What is in it: the kernel (linux-image-amd64, with virtio and 9p), systemd, udev, cloud-init
# (NoCloud: hack/vm-lab-up.sh gives each VM its hostname, address, /etc/hosts and provisioning
# through a seed ISO), systemd-networkd (the renderer cloud-init uses for the network-config),
# openssh-server, and every package `hack/lab-provision.sh packages` installs (etcd-server,
# etcd-client, containerd, runc, containernetworking-plugins, busybox-static, iproute2, curl,
# ca-certificates, util-linux, haproxy) plus nftables and iptables (rkube-proxy's nft), so
# lima/vm-provision.sh never needs apt in these VMs. Debian's etcd, containerd and haproxy
# services are disabled: the lab starts its own. The serial console (ttyS0) logs in as root by
# itself: it is reachable only through a socket under the lab's root-owned state directory.
#
# Output, in ${VM_CACHE}:
#   rootfs.img   the root filesystem: ext4, no partition table (mkfs.ext4 -d), booted as /dev/vda
#                (VMs boot from qcow2 overlays on it: it stays pristine)
#   vmlinuz, initrd.img   the image's kernel and initramfs, for QEMU's direct kernel boot
#   image.key    the hash of this script the image was built from
#
# Settings (environment):
#   VM_CACHE        where the image goes (default <repo>/.rkube/vm)
#   VM_IMAGE_SIZE   size of the root filesystem (default 6G; sparse: only what is written is
#                   stored)
#   VM_MIRROR       Debian mirror (default http://deb.debian.org/debian; the security updates
#                   come from http://deb.debian.org/debian-security)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VM_CACHE="${VM_CACHE:-${repo_root}/.rkube/vm}"
VM_IMAGE_SIZE="${VM_IMAGE_SIZE:-6G}"
VM_MIRROR="${VM_MIRROR:-http://deb.debian.org/debian}"

# The packages, beyond mmdebstrap's minbase (Essential and required).
packages=(
    # boot: kernel, initramfs (virtio_blk and ext4 are modules), init, devices, fsck of the root
    linux-image-amd64 initramfs-tools systemd systemd-sysv udev dbus kmod e2fsprogs
    # first-boot configuration (NoCloud seed) and the network it configures
    cloud-init
    # a shell from the host (hack/vm-lab-up.sh ssh NAME)
    openssh-server
    # hack/lab-provision.sh packages
    etcd-server etcd-client containerd runc containernetworking-plugins busybox-static iproute2
    curl ca-certificates util-linux haproxy
    # what hack/lab-provision.sh uses besides: nft (rkube-proxy), iptables, sysctl, ps
    nftables iptables procps
    # for a person in the VM
    iputils-ping less
)

force=false
case "${1:-}" in
"") ;;
--force) force=true ;;
-h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "vm-image: unknown argument $1 (try --help)" >&2
    exit 2
    ;;
esac

log() { echo "vm-image: $*" >&2; }
die() {
    echo "vm-image: $*" >&2
    exit 1
}

# The key: this script (the package list and every step are in it) and the settings it uses.
key="$(cat "${BASH_SOURCE[0]}" <(echo "${VM_IMAGE_SIZE} ${VM_MIRROR}") | sha256sum | cut -c1-16)"
if [[ "${force}" == false && -f "${VM_CACHE}/image.key" && "$(cat "${VM_CACHE}/image.key")" == "${key}" &&
    -f "${VM_CACHE}/rootfs.img" && -f "${VM_CACHE}/vmlinuz" && -f "${VM_CACHE}/initrd.img" ]]; then
    log "image ${key} up to date in ${VM_CACHE}"
    echo "${VM_CACHE}"
    exit 0
fi

[[ "$(id -u)" == 0 ]] || die "must run as root (mmdebstrap builds the root as root)"
command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap not found: run 'make deps'"
command -v mkfs.ext4 >/dev/null 2>&1 || die "mkfs.ext4 not found: run 'make deps' (e2fsprogs)"

mkdir -p "${VM_CACHE}"
work="$(mktemp -d "${VM_CACHE}/build.XXXXXX")"
trap 'rm -rf --one-file-system "${work}"' EXIT
root="${work}/root"
started=${SECONDS}
log "building the VM image (Debian 12, $((${#packages[@]})) packages and their dependencies) in ${VM_CACHE}; log: ${work}/mmdebstrap.log"

# Hooks, run by mmdebstrap on the host with the new root as $1.
# - Debian's etcd, containerd and haproxy services off (the lab runs its own; the VMs are small).
# - systemd-networkd on: cloud-init writes its configuration from the seed's network-config.
# - cloud-init looks only for a NoCloud seed (no waiting on cloud metadata services) and runs
#   only the modules the seed's user-data needs.
# - 9p and its virtio transport loaded early, so the fstab mount of /rkube finds them.
# - the root's fstab; no machine-id or hostname of the build machine (made at first boot).
# - root logged in on the serial console (a socket in the lab's state directory).
# - no periodic apt or maintenance jobs (nor e2scrub_reap's scan of LVM at boot).
customize=$(
    cat <<'HOOK'
set -eu
r="$1"
chroot "$r" systemctl disable etcd.service containerd.service haproxy.service >/dev/null 2>&1 || true
chroot "$r" systemctl enable systemd-networkd.service >/dev/null 2>&1
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer; do
    chroot "$r" systemctl mask "$unit" >/dev/null 2>&1 || true
done
cat >"$r/etc/cloud/cloud.cfg.d/90-rkube-vm-lab.cfg" <<'EOF'
# rkube VM lab (hack/vm-image.sh): configured by a NoCloud seed (hack/vm-lab-up.sh) only, and
# only the modules its user-data uses (the others cost seconds at each boot, minutes when the
# VMs run under software emulation).
datasource_list: [ NoCloud, None ]
cloud_init_modules: [ write-files, set_hostname, update_hostname, users-groups, ssh ]
cloud_config_modules: [ runcmd ]
cloud_final_modules: [ scripts-user, final-message ]
EOF
mkdir -p "$r/etc/modules-load.d"
printf '9p\n9pnet_virtio\n' >"$r/etc/modules-load.d/rkube-9p.conf"
printf '/dev/vda / ext4 errors=remount-ro 0 1\n' >"$r/etc/fstab"
: >"$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id" "$r/etc/hostname"
: >"$r/etc/resolv.conf"
mkdir -p "$r/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$r/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
# rkube VM lab: the serial console is a socket in the lab's root-owned state directory.
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
EOF
HOOK
)

mmdebstrap --variant=minbase --include="$(
    IFS=,
    echo "${packages[*]}"
)" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="${customize}" \
    bookworm "${root}" \
    "deb ${VM_MIRROR} bookworm main" "deb ${VM_MIRROR} bookworm-updates main" \
    "deb ${VM_MIRROR%/debian}/debian-security bookworm-security main" \
    >"${work}/mmdebstrap.log" 2>&1 || {
    tail -n 30 "${work}/mmdebstrap.log" >&2
    trap - EXIT
    die "mmdebstrap failed (its last lines above; the log: ${work}/mmdebstrap.log)"
}
log "root built in $((SECONDS - started))s: $(du -sh --one-file-system "${root}" | cut -f1), $(chroot "${root}" dpkg-query -W | wc -l) packages"

kernel="$(find "${root}/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)"
initrd="$(find "${root}/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)"
[[ -f "${kernel}" && -f "${initrd}" ]] || die "no kernel or initramfs in the image's /boot"
cp "${kernel}" "${work}/vmlinuz"
cp "${initrd}" "${work}/initrd.img"

# The root filesystem: ext4 filled from the directory (no partition table, no boot loader:
# QEMU boots the kernel above directly).
mkfs.ext4 -q -F -L rkube-vm-root -d "${root}" "${work}/rootfs.img" "${VM_IMAGE_SIZE}" >/dev/null ||
    die "mkfs.ext4 -d failed"
mv "${work}/rootfs.img" "${work}/vmlinuz" "${work}/initrd.img" "${VM_CACHE}/"
echo "${key}" >"${VM_CACHE}/image.key"
# hack/vm-lab-up.sh's answers about /dev/kvm were for the previous kernel.
rm -f "${VM_CACHE}"/kvm-probe.*
log "image ${key} built in $((SECONDS - started))s: ${VM_CACHE}/rootfs.img ($(du -h "${VM_CACHE}/rootfs.img" | cut -f1) used of ${VM_IMAGE_SIZE}), kernel $(basename "${kernel}" | sed 's/vmlinuz-//')"
echo "${VM_CACHE}"
