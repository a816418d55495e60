#!/usr/bin/env bash
# Runs rkube-apiserver in the foreground against the local etcd; with RKUBE_SECURE=1
# over HTTPS with the certificates of .rkube/pki and RBAC. Used by
# hack/local-up.sh and process-compose.yaml; settings in hack/local-env.sh
# (extra flags: RKUBE_APISERVER_FLAGS).
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

[[ -x "${RKUBE_APISERVER_BIN}" ]] || {
    echo "run-apiserver: ${RKUBE_APISERVER_BIN} not found; run 'make build'" >&2
    exit 1
}
read -r -a extra_flags <<<"${RKUBE_APISERVER_FLAGS}"
secure_flags=()
if [[ "${RKUBE_SECURE}" == 1 ]]; then
    secure_flags=(
        --tls-cert-file "${RKUBE_PKI_DIR}/apiserver.crt"
        --tls-private-key-file "${RKUBE_PKI_DIR}/apiserver.key"
        --client-ca-file "${RKUBE_PKI_DIR}/ca.crt"
        --authorization-mode Node,RBAC
        --kubelet-certificate-authority "${RKUBE_PKI_DIR}/ca.crt"
        --kubelet-client-certificate "${RKUBE_PKI_DIR}/apiserver-kubelet-client.crt"
        --kubelet-client-key "${RKUBE_PKI_DIR}/apiserver-kubelet-client.key"
        --service-account-signing-key-file "${RKUBE_PKI_DIR}/sa.key"
    )
fi
exec "${RKUBE_APISERVER_BIN}" \
    --etcd-servers "$(rkube_etcd_url)" \
    --bind-address "${RKUBE_BIND_ADDRESS}" \
    --port "${RKUBE_PORT}" \
    --log-format "${RKUBE_LOG_FORMAT}" \
    "${secure_flags[@]}" \
    "${extra_flags[@]}"
