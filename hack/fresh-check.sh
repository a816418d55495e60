#!/usr/bin/env bash
# make fresh-check: the README's commands, run as a new user would, on a pristine
# Debian 12 root built from Debian's packages. It shows a missing install step
# before CI does (a machine that has been used for a while hides one: the
# package was installed by hand long ago).
#
#   hack/fresh-check.sh [--suite bookworm|noble] [--smoke] [--vm] [--keep] [--dir DIR]
#
# Phases (each prints its duration):
#   1. root      mmdebstrap --variant=minbase: Essential and required packages and apt,
#                nothing else (what `debootstrap --variant=minbase` gives)
#   2. setup     inside the root, with the host's network: the README's prerequisites
#                (apt-get install ca-certificates git make), `git clone` of this
#                repository's HEAD, `make deps`, and `cargo fetch` (crates for the
#                offline phases below)
#   3. make run  inside the root, in a network namespace of its own (loopback only, so
#                nothing clashes with the host's ports): `make run` builds from scratch,
#                starts the cluster and the demo; the demo must answer over HTTP through
#                a pod IP; then Ctrl-C (SIGINT to make's process group) must stop
#                everything, leaving no process behind
#   4. make test the README's test command, in the same kind of namespace
#   5. make lint cargo fmt --check and clippy -D warnings
#   6. VM lab    with --vm: the VM lab's end-to-end test (test/tests/e2e_vm.rs: three Debian
#                VMs booted with QEMU, provisioned by lima/vm-provision.sh) in the same kind of
#                namespace. It runs under QEMU's emulation (RKUBE_VM_TEST=tcg), which works on
#                any machine, KVM or not (about 10 minutes on 2 cores); `make test` runs it
#                itself where /dev/kvm boots Debian's kernel. The VM image is built in phase 2,
#                which has the network (hack/vm-image.sh downloads Debian's packages).
# --smoke stops after phase 3 (a quicker check of the install steps). CI (.ci/run) passes --vm.
#
# What "inside the root" means: a mount and PID namespace whose root is the new
# tree (pivot_root, so runc can pivot into containers as on a real machine),
# with /proc, /sys (and so cgroups), /dev, a private /dev/shm and /run. The Rust
# toolchain is the host's rustup one, mounted read-only (nothing installs Rust
# from a package registry here); cargo's download cache is the host's, shared
# so crates are not downloaded twice; CA certificates added to the host by hand
# (/usr/local/share/ca-certificates) are copied in, for networks that inspect
# TLS. Everything else comes from the packages the README's steps install. The clone is of HEAD: commit first, uncommitted
# changes are not part of the check.
#
# Needs root, mmdebstrap (make deps installs it), util-linux's unshare and
# pivot_root, and about 15 GB of disk under DIR (default
# /var/tmp/rkube-fresh, removed at the end unless --keep).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
suite=bookworm
smoke=false
vm=false
keep=false
dir="${RKUBE_FRESH_DIR:-/var/tmp/rkube-fresh}"
while [[ $# -gt 0 ]]; do
    case "$1" in
    --suite)
        suite="${2:?--suite needs bookworm or noble}"
        shift
        ;;
    --smoke) smoke=true ;;
    --vm) vm=true ;;
    --keep) keep=true ;;
    --dir)
        dir="${2:?--dir needs a directory}"
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        printf 'fresh-check: unknown argument %q (try --help)\n' "$1" >&2
        exit 2
        ;;
    esac
    shift
done

log() { printf 'fresh-check: %s\n' "$*"; }
die() {
    printf 'fresh-check: error: %s\n' "$*" >&2
    exit 1
}

phase_names=()
phase_seconds=()
phase_started=0
phase() {
    phase_done
    log "=== $* ($(date -u +%H:%M:%S))"
    phase_names+=("$*")
    phase_started=${SECONDS}
}
phase_done() {
    if ((${#phase_names[@]} > ${#phase_seconds[@]})); then
        phase_seconds+=($((SECONDS - phase_started)))
        log "    took ${phase_seconds[-1]}s"
    fi
}
summary() {
    phase_done
    local i
    log "phase durations:"
    for i in "${!phase_seconds[@]}"; do
        printf 'fresh-check:   %-48s %5ss\n' "${phase_names[i]}" "${phase_seconds[i]}"
    done
}

# --- host prerequisites ---------------------------------------------------------
[[ "$(id -u)" == 0 ]] || die "needs root (mmdebstrap, namespaces, containerd inside): run 'sudo make fresh-check'"
command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap not found: run 'make deps' (or apt-get install mmdebstrap)"
for tool in unshare pivot_root git ip; do
    command -v "${tool}" >/dev/null 2>&1 || die "${tool} not found (util-linux, git, iproute2): run 'make deps'"
done
cargo_home="${CARGO_HOME:-${HOME:-/root}/.cargo}"
rustup_home="${RUSTUP_HOME:-${HOME:-/root}/.rustup}"
[[ -x "${cargo_home}/bin/cargo" ]] || die "no cargo in ${cargo_home}/bin: the check mounts the host's rustup toolchain (install Rust with rustup)"
[[ -d "${rustup_home}/toolchains" ]] || die "no rustup toolchains in ${rustup_home}: the check mounts the host's rustup toolchain"
mkdir -p "${cargo_home}/registry" "${cargo_home}/git"

head="$(git -C "${repo}" rev-parse HEAD)"
# The clone inside the root comes from a bundle of HEAD, so it works from a worktree too
# and the root never sees this checkout.
if [[ -n "$(git -C "${repo}" status --porcelain --untracked-files=no)" ]]; then
    log "warning: uncommitted changes are not checked; the clone is of HEAD ${head:0:12}"
fi

case "${suite}" in
bookworm)
    sources=("deb http://deb.debian.org/debian bookworm main"
        "deb http://deb.debian.org/debian bookworm-updates main"
        "deb http://deb.debian.org/debian-security bookworm-security main")
    keyring_args=()
    ;;
noble)
    # Debian 12 has no Ubuntu keyring package: take Ubuntu's own, checked against a pinned hash.
    sources=("deb http://archive.ubuntu.com/ubuntu noble main universe"
        "deb http://archive.ubuntu.com/ubuntu noble-updates main universe"
        "deb http://security.ubuntu.com/ubuntu noble-security main universe")
    keyring_deb="${dir}/ubuntu-keyring.deb"
    keyring_sha256=36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8
    keyring_args=(--keyring="${dir}/ubuntu-keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg")
    ;;
*) die "unknown suite ${suite}: bookworm (Debian 12) or noble (Ubuntu 24.04)" ;;
esac

root="${dir}/root"
cleanup() {
    local status=$?
    summary
    if [[ "${keep}" == true ]]; then
        log "kept ${dir} (the root: ${root})"
    else
        rm -rf --one-file-system "${dir}"
    fi
    if ((status == 0)); then
        log "passed"
    else
        log "FAILED (exit ${status})"
    fi
    exit "${status}"
}

if [[ -e "${dir}" ]]; then
    log "removing the previous ${dir}"
    rm -rf --one-file-system "${dir}"
fi
mkdir -p "${dir}"
trap cleanup EXIT
# Killed or interrupted is a failure, not a pass: the EXIT trap sees these codes.
trap 'exit 143' TERM
trap 'exit 130' INT

# --- 1. the pristine root -------------------------------------------------------
phase "1. pristine ${suite} root (mmdebstrap --variant=minbase)"
if [[ "${suite}" == noble ]]; then
    url="http://archive.ubuntu.com/ubuntu/pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
    curl -fsSL -o "${keyring_deb}" "${url}" || die "could not download ${url}"
    echo "${keyring_sha256}  ${keyring_deb}" | sha256sum -c --quiet - ||
        die "ubuntu-keyring.deb does not have the pinned hash"
    dpkg-deb -x "${keyring_deb}" "${dir}/ubuntu-keyring"
fi
mmdebstrap --variant=minbase --quiet "${keyring_args[@]}" "${suite}" "${root}" "${sources[@]}"
# The one thing taken from the host besides the toolchain: CA certificates added to this
# machine by hand (/usr/local/share/ca-certificates), as a network that inspects TLS needs.
# The ca-certificates package, installed by the README's first step, trusts them.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "${root}/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "${root}/usr/local/share/ca-certificates/"
    log "copied the host's local CA certificates: $(cd /usr/local/share/ca-certificates && echo *.crt)"
fi
git -C "${repo}" bundle create --quiet "${root}/root/rkube.bundle" HEAD
log "root: $(du -sh --one-file-system "${root}" | cut -f1), $(chroot "${root}" dpkg-query -W | wc -l) packages"

# in_root NETWORK SCRIPT: runs SCRIPT with bash as root inside the root (see the header).
# NETWORK is "host" (the host's network, for downloads) or "private" (a new network
# namespace with only loopback up).
in_root() {
    local network="$1" script="$2" net_flag=()
    [[ "${network}" == private ]] && net_flag=(--net)
    unshare --mount --pid --fork --propagation private "${net_flag[@]}" -- \
        bash -euo pipefail -c '
            root="$1" cargo_home="$2" rustup_home="$3" network="$4" script="$5"
            mount --bind "${root}" "${root}"
            mount -t proc proc "${root}/proc"
            mount --rbind /sys "${root}/sys"
            mount --rbind /dev "${root}/dev"
            mount -t tmpfs -o mode=1777 shm "${root}/dev/shm"
            mount -t tmpfs -o mode=755 run "${root}/run"
            touch "${root}/etc/resolv.conf"
            mount --bind /etc/resolv.conf "${root}/etc/resolv.conf"
            mkdir -p "${root}/root/.cargo/bin" "${root}/root/.cargo/registry" \
                "${root}/root/.cargo/git" "${root}/root/.rustup"
            mount --bind -o ro "${cargo_home}/bin" "${root}/root/.cargo/bin"
            mount --bind -o ro "${rustup_home}" "${root}/root/.rustup"
            mount --bind "${cargo_home}/registry" "${root}/root/.cargo/registry"
            mount --bind "${cargo_home}/git" "${root}/root/.cargo/git"
            if [[ "${network}" == private ]]; then ip link set lo up; fi
            cd "${root}"
            mkdir -p .host
            pivot_root . .host
            cd /
            umount -l /.host
            rmdir /.host
            exec /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI="${CI:-}" \
                PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                CARGO_TERM_COLOR=never RUST_BACKTRACE=1 \
                /bin/bash -euo pipefail -c "${script}"
        ' fresh-root "${root}" "${cargo_home}" "${rustup_home}" "${network}" "${script}"
}

# --- 2. the README's set-up -----------------------------------------------------
phase "2. setup: apt-get install git make; git clone; make deps; cargo fetch (--vm: the VM image)"
vm_image_step=:
if [[ "${vm}" == true ]]; then
    vm_image_step='echo "fresh-check: building the VM lab image (hack/vm-image.sh; phase 6 boots it)"; hack/vm-image.sh'
fi
in_root host '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The README: "apt-get install --no-install-recommends ca-certificates git make"
    apt-get install -y -qq --no-install-recommends ca-certificates git make >/dev/null
    git clone --quiet /root/rkube.bundle /root/rkube
    cd /root/rkube
    echo "fresh-check: cloned $(git rev-parse --short HEAD)"
    make deps
    cargo fetch --locked --quiet
'"${vm_image_step}"

# --- 3. make run ----------------------------------------------------------------
phase "3. make run (own network namespace): build, cluster, demo over HTTP, Ctrl-C"
in_root private '
    export CARGO_NET_OFFLINE=true
    cd /root/rkube
    log=/root/make-run.log
    set -m   # job control: `make run` gets its own process group and takes SIGINT like Ctrl-C
    # SIGINT back to its default: a launcher that ran this check in the background (a
    # non-interactive `cmd &`) left it ignored, and an ignored signal cannot be trapped, so
    # local-up would never see the Ctrl-C.
    env --default-signal=INT make run >"${log}" 2>&1 </dev/null &
    run_pid=$!
    set +m
    deadline=$((SECONDS + 1500))
    until grep -q "rkube is up" "${log}"; do
        if ! kill -0 "${run_pid}" 2>/dev/null; then
            echo "fresh-check: make run exited before the cluster was up; its output:" >&2
            tail -n 60 "${log}" >&2
            # A missing install step usually shows as a file something could not find.
            missing="$(sed "s/\\\\n/\\n/g" "${log}" | grep -oE "[^ \"]+: (File not found|No such file or directory|not found)" | sort -u | head -n 5)"
            if [[ -n "${missing}" ]]; then
                echo "fresh-check: make run failed on a missing file; is an install step missing from hack/deps.sh?" >&2
                echo "${missing}" | sed "s/^/fresh-check:   /" >&2
            fi
            exit 1
        fi
        if ((SECONDS > deadline)); then
            echo "fresh-check: make run not up after 25 min; its output:" >&2
            tail -n 60 "${log}" >&2
            exit 1
        fi
        sleep 2
    done
    echo "fresh-check: make run says the cluster is up"
    export KUBECONFIG=/root/rkube/.rkube/kubeconfig
    target/debug/rkubectl get nodes,pods -o wide
    ip="$(target/debug/rkubectl get pods -l app=demo -o jsonpath="{.items[0].status.podIP}")"
    [[ -n "${ip}" ]] || { echo "fresh-check: the demo pod has no IP" >&2; exit 1; }
    body="$(curl -fsS --max-time 5 "http://${ip}:8080/")"
    echo "fresh-check: the demo at http://${ip}:8080/ answered: ${body:0:80}"
    kill -INT -- "-${run_pid}"
    for _ in $(seq 1 120); do kill -0 "${run_pid}" 2>/dev/null || break; sleep 1; done
    if kill -0 "${run_pid}" 2>/dev/null; then
        echo "fresh-check: make run still running 120 s after Ctrl-C; its output:" >&2
        tail -n 40 "${log}" >&2
        echo "fresh-check: the processes (pid, group, state, where they wait):" >&2
        ps -eo pid=,pgid=,stat=,wchan:24=,args= >&2 || true
        exit 1
    fi
    grep -q "local-up: stopped" "${log}" || {
        echo "fresh-check: make run did not report a clean stop; its output:" >&2
        tail -n 40 "${log}" >&2
        exit 1
    }
    left="$(ps -eo pid=,comm= | grep -E "etcd|containerd|rkube|rkubelet" || true)"
    if [[ -n "${left}" ]]; then
        echo "fresh-check: processes left after Ctrl-C:" >&2
        echo "${left}" >&2
        exit 1
    fi
    echo "fresh-check: Ctrl-C stopped the cluster; no process left"
'
if [[ "${smoke}" == true ]]; then
    exit 0
fi

# --- 4. make test ---------------------------------------------------------------
phase "4. make test (own network namespace)"
in_root private '
    export CARGO_NET_OFFLINE=true
    cd /root/rkube
    make test </dev/null
'

# --- 5. make lint ---------------------------------------------------------------
phase "5. make lint"
in_root private '
    export CARGO_NET_OFFLINE=true
    cd /root/rkube
    make lint </dev/null
'

# --- 6. the VM lab ---------------------------------------------------------------
if [[ "${vm}" == true ]]; then
    phase "6. VM lab end to end under emulation (own network namespace)"
    in_root private '
        export CARGO_NET_OFFLINE=true RKUBE_VM_TEST=tcg
        cd /root/rkube
        cargo test --quiet -p rkube-tests --test e2e_vm -- --nocapture </dev/null
    '
fi
