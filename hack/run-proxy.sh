#!/usr/bin/env bash
# Runs rkube-proxy in the foreground against the local apiserver: it programs this
# machine's nftables (table ip rkube-proxy) so that Services reach their pods.
# Used by hack/local-up.sh and process-compose.yaml; settings in hack/local-env.sh
# (extra flags: RKUBE_PROXY_FLAGS). Needs root and nft (make deps).
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

[[ -x "${RKUBE_PROXY_BIN}" ]] || {
    echo "run-proxy: ${RKUBE_PROXY_BIN} not found; run 'make build'" >&2
    exit 1
}
read -r -a extra_flags <<<"${RKUBE_PROXY_FLAGS}"
exec "${RKUBE_PROXY_BIN}" \
    --kubeconfig "$(rkube_kubeconfig_of "proxy")" \
    --node-name "${RKUBE_NODE_NAME}" \
    --cluster-cidr "${RKUBE_CLUSTER_CIDR}" \
    --bind-address 127.0.0.1 \
    --port "${RKUBE_PROXY_PORT}" \
    --log-format "${RKUBE_LOG_FORMAT}" \
    "${extra_flags[@]}"
