#!/usr/bin/env bash
# Runs rkube-controller-manager in the foreground against the local apiserver
# (.rkube/kubeconfig). Used by hack/local-up.sh and process-compose.yaml;
# settings in hack/local-env.sh (extra flags: RKUBE_CONTROLLER_MANAGER_FLAGS).
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

[[ -x "${RKUBE_CONTROLLER_MANAGER_BIN}" ]] || {
    echo "run-controller-manager: ${RKUBE_CONTROLLER_MANAGER_BIN} not found; run 'make build'" >&2
    exit 1
}
read -r -a extra_flags <<<"${RKUBE_CONTROLLER_MANAGER_FLAGS}"
secure_flags=()
if [[ "${RKUBE_SECURE}" == 1 ]]; then
    # Published to every namespace as kube-root-ca.crt: pods verify the apiserver with it.
    secure_flags=(--root-ca-file "${RKUBE_PKI_DIR}/ca.crt")
fi
exec "${RKUBE_CONTROLLER_MANAGER_BIN}" \
    --kubeconfig "$(rkube_kubeconfig_of "controller-manager")" \
    --bind-address 127.0.0.1 \
    --port "${RKUBE_CONTROLLER_MANAGER_PORT}" \
    --log-format "${RKUBE_LOG_FORMAT}" \
    "${secure_flags[@]}" \
    "${extra_flags[@]}"
