# shellcheck shell=bash
# Settings of the local cluster, sourced by hack/local-up.sh, every hack/run-*.sh
# and hack/healthcheck.sh (and so by process-compose.yaml).
# Every value can be overridden from the environment; the defaults give the
# layout documented in README.md:
#
#   .rkube/etcd/        etcd's data, kept across runs (delete it to start empty)
#   .rkube/containerd/  the private containerd: config.toml, root/, state/, containerd.sock
#   .rkube/kubelet/     the rkubelet's --root-dir (pod logs, CNI state)
#   .rkube/logs/        one log file per process
#   .rkube/pki/         the CA, the apiserver's certificate, one kubeconfig per identity
#   .rkube/kubeconfig   points kubectl at the apiserver (as kubernetes-admin when secure)
#
# Sourcing this file only sets and exports variables; it runs nothing.

RKUBE_ROOT="${RKUBE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
RKUBE_STATE_DIR="${RKUBE_STATE_DIR:-${RKUBE_ROOT}/.rkube}"
RKUBE_LOG_DIR="${RKUBE_LOG_DIR:-${RKUBE_STATE_DIR}/logs}"
RKUBE_KUBECONFIG="${RKUBE_KUBECONFIG:-${RKUBE_STATE_DIR}/kubeconfig}"
RKUBE_VENV="${RKUBE_VENV:-${RKUBE_ROOT}/.venv}"

# RKUBE_SECURE=1 (the default): the apiserver serves HTTPS, every process presents a client
# certificate from .rkube/pki (made by rkube-pki), and RBAC decides who may do what
# (docs/security.md). RKUBE_SECURE=0: plain HTTP, everyone may do everything (loopback only).
RKUBE_SECURE="${RKUBE_SECURE:-1}"
RKUBE_PKI_DIR="${RKUBE_PKI_DIR:-${RKUBE_STATE_DIR}/pki}"
RKUBE_PKI_BIN="${RKUBE_PKI_BIN:-${RKUBE_ROOT}/target/debug/rkube-pki}"
RKUBE_BIND_ADDRESS="${RKUBE_BIND_ADDRESS:-127.0.0.1}"
RKUBE_PORT="${RKUBE_PORT:-6443}"
RKUBE_LOG_FORMAT="${RKUBE_LOG_FORMAT:-text}"
RKUBE_APISERVER_BIN="${RKUBE_APISERVER_BIN:-${RKUBE_ROOT}/target/debug/rkube-apiserver}"
# Extra flags for rkube-apiserver, split on spaces (e.g. "--watch-bookmark-interval-seconds 5").
RKUBE_APISERVER_FLAGS="${RKUBE_APISERVER_FLAGS:-}"

RKUBE_ETCD_BIN="${RKUBE_ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}"
ETCD_PORT="${ETCD_PORT:-2379}"
RKUBE_ETCD_PEER_PORT="${RKUBE_ETCD_PEER_PORT:-$((ETCD_PORT + 1))}"
RKUBE_ETCD_DATA_DIR="${RKUBE_ETCD_DATA_DIR:-${RKUBE_STATE_DIR}/etcd}"

# The other components: binaries, and the ports of their /healthz, /readyz and /metrics.
RKUBE_CONTROLLER_MANAGER_BIN="${RKUBE_CONTROLLER_MANAGER_BIN:-${RKUBE_ROOT}/target/debug/rkube-controller-manager}"
RKUBE_CONTROLLER_MANAGER_PORT="${RKUBE_CONTROLLER_MANAGER_PORT:-10257}"
RKUBE_CONTROLLER_MANAGER_FLAGS="${RKUBE_CONTROLLER_MANAGER_FLAGS:-}"
RKUBE_SCHEDULER_BIN="${RKUBE_SCHEDULER_BIN:-${RKUBE_ROOT}/target/debug/rkube-scheduler}"
RKUBE_SCHEDULER_PORT="${RKUBE_SCHEDULER_PORT:-10259}"
RKUBE_SCHEDULER_FLAGS="${RKUBE_SCHEDULER_FLAGS:-}"
RKUBECTL_BIN="${RKUBECTL_BIN:-${RKUBE_ROOT}/target/debug/rkubectl}"
RKUBE_PROXY_BIN="${RKUBE_PROXY_BIN:-${RKUBE_ROOT}/target/debug/rkube-proxy}"
RKUBE_PROXY_PORT="${RKUBE_PROXY_PORT:-10256}"
RKUBE_PROXY_FLAGS="${RKUBE_PROXY_FLAGS:-}"
# Every pod address of the cluster (the node's pod CIDR lies in it): Service traffic from
# elsewhere is masqueraded by rkube-proxy.
RKUBE_CLUSTER_CIDR="${RKUBE_CLUSTER_CIDR:-10.244.0.0/16}"
# The cluster DNS: rkube-dns answers on RKUBE_DNS_PORT (a high port: 53 is often taken) and is
# the kube-dns Service RKUBE_CLUSTER_DNS, which the kubelet writes into pods' resolv.conf.
RKUBE_DNS_BIN="${RKUBE_DNS_BIN:-${RKUBE_ROOT}/target/debug/rkube-dns}"
RKUBE_DNS_PORT="${RKUBE_DNS_PORT:-1053}"
RKUBE_DNS_HEALTH_PORT="${RKUBE_DNS_HEALTH_PORT:-10055}"
RKUBE_DNS_FLAGS="${RKUBE_DNS_FLAGS:-}"
RKUBE_CLUSTER_DNS="${RKUBE_CLUSTER_DNS:-10.96.0.10}"

# The one node: a private containerd (not the distribution's service) and an rkubelet.
RKUBE_CONTAINERD_BIN="${RKUBE_CONTAINERD_BIN:-$(command -v containerd || echo /usr/bin/containerd)}"
RKUBE_CTR_BIN="${RKUBE_CTR_BIN:-$(command -v ctr || echo /usr/bin/ctr)}"
RKUBE_CONTAINERD_DIR="${RKUBE_CONTAINERD_DIR:-${RKUBE_STATE_DIR}/containerd}"
RKUBE_CONTAINERD_ADDRESS="${RKUBE_CONTAINERD_ADDRESS:-${RKUBE_CONTAINERD_DIR}/containerd.sock}"
RKUBELET_BIN="${RKUBELET_BIN:-${RKUBE_ROOT}/target/debug/rkubelet}"
RKUBE_NODE_NAME="${RKUBE_NODE_NAME:-node1}"
RKUBE_POD_CIDR="${RKUBE_POD_CIDR:-10.244.1.0/24}"
RKUBE_KUBELET_DIR="${RKUBE_KUBELET_DIR:-${RKUBE_STATE_DIR}/kubelet}"
RKUBE_KUBELET_PORT="${RKUBE_KUBELET_PORT:-10250}"
RKUBE_KUBELET_FLAGS="${RKUBE_KUBELET_FLAGS:-}"
# The demo image (hack/build-test-image.sh) as pods name it, and where its archive is written.
RKUBE_DEMO_IMAGE_TAR="${RKUBE_DEMO_IMAGE_TAR:-${RKUBE_STATE_DIR}/busybox-oci.tar}"

export RKUBE_ROOT RKUBE_STATE_DIR RKUBE_LOG_DIR RKUBE_KUBECONFIG RKUBE_VENV RKUBE_SECURE RKUBE_PKI_DIR RKUBE_PKI_BIN
export RKUBE_BIND_ADDRESS RKUBE_PORT RKUBE_LOG_FORMAT RKUBE_APISERVER_BIN RKUBE_APISERVER_FLAGS
export RKUBE_ETCD_BIN ETCD_PORT RKUBE_ETCD_PEER_PORT RKUBE_ETCD_DATA_DIR
export RKUBE_CONTROLLER_MANAGER_BIN RKUBE_CONTROLLER_MANAGER_PORT RKUBE_CONTROLLER_MANAGER_FLAGS
export RKUBE_SCHEDULER_BIN RKUBE_SCHEDULER_PORT RKUBE_SCHEDULER_FLAGS RKUBECTL_BIN
export RKUBE_PROXY_BIN RKUBE_PROXY_PORT RKUBE_PROXY_FLAGS RKUBE_CLUSTER_CIDR
export RKUBE_DNS_BIN RKUBE_DNS_PORT RKUBE_DNS_HEALTH_PORT RKUBE_DNS_FLAGS RKUBE_CLUSTER_DNS
export RKUBE_CONTAINERD_BIN RKUBE_CTR_BIN RKUBE_CONTAINERD_DIR RKUBE_CONTAINERD_ADDRESS
export RKUBELET_BIN RKUBE_NODE_NAME RKUBE_POD_CIDR RKUBE_KUBELET_DIR RKUBE_KUBELET_PORT RKUBE_KUBELET_FLAGS
export RKUBE_DEMO_IMAGE_TAR

rkube_etcd_url() { printf 'http://127.0.0.1:%s' "${ETCD_PORT}"; }
rkube_apiserver_url() {
    if [[ "${RKUBE_SECURE}" == 1 ]]; then
        printf 'https://%s:%s' "${RKUBE_BIND_ADDRESS}" "${RKUBE_PORT}"
    else
        printf 'http://%s:%s' "${RKUBE_BIND_ADDRESS}" "${RKUBE_PORT}"
    fi
}

# rkube_kubeconfig_of NAME: the kubeconfig a component connects with: its own identity
# (.rkube/pki/NAME.kubeconfig) when secure, else the shared one.
rkube_kubeconfig_of() {
    if [[ "${RKUBE_SECURE}" == 1 ]]; then
        printf '%s/%s.kubeconfig' "${RKUBE_PKI_DIR}" "$1"
    else
        printf '%s' "${RKUBE_KUBECONFIG}"
    fi
}

# rkube_ctr ARGS...: ctr against the private containerd, in the kubelet's namespace `rkube`.
rkube_ctr() { "${RKUBE_CTR_BIN}" --address "${RKUBE_CONTAINERD_ADDRESS}" -n rkube "$@"; }
