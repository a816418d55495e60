#!/usr/bin/env bash
# Runs rkubelet in the foreground: node ${RKUBE_NODE_NAME}, containerd runtime
# (the private one of hack/run-containerd.sh), pod IPs from ${RKUBE_POD_CIDR}
# on a CNI bridge, state in .rkube/kubelet. Used by hack/local-up.sh and
# process-compose.yaml; settings in hack/local-env.sh (extra flags:
# RKUBE_KUBELET_FLAGS). Needs root.
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

[[ -x "${RKUBELET_BIN}" ]] || {
    echo "run-kubelet: ${RKUBELET_BIN} not found; run 'make build'" >&2
    exit 1
}
mkdir -p "${RKUBE_KUBELET_DIR}"
read -r -a extra_flags <<<"${RKUBE_KUBELET_FLAGS}"
secure_flags=()
if [[ "${RKUBE_SECURE}" == 1 ]]; then
    # HTTPS for the kubelet API; logs and exec only for the apiserver's client certificate.
    secure_flags=(
        --tls-cert-file "${RKUBE_PKI_DIR}/kubelet-${RKUBE_NODE_NAME}.crt"
        --tls-private-key-file "${RKUBE_PKI_DIR}/kubelet-${RKUBE_NODE_NAME}.key"
        --client-ca-file "${RKUBE_PKI_DIR}/ca.crt"
    )
fi
exec "${RKUBELET_BIN}" \
    --kubeconfig "$(rkube_kubeconfig_of "kubelet-${RKUBE_NODE_NAME}")" \
    --node-name "${RKUBE_NODE_NAME}" \
    --runtime containerd \
    --containerd-address "${RKUBE_CONTAINERD_ADDRESS}" \
    --root-dir "${RKUBE_KUBELET_DIR}" \
    --pod-cidr "${RKUBE_POD_CIDR}" \
    --address 127.0.0.1 \
    --port "${RKUBE_KUBELET_PORT}" \
    --node-ip 127.0.0.1 \
    --cluster-dns "${RKUBE_CLUSTER_DNS}" \
    --log-format "${RKUBE_LOG_FORMAT}" \
    "${secure_flags[@]}" \
    "${extra_flags[@]}"
