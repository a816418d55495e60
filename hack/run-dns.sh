#!/usr/bin/env bash
# Runs rkube-dns in the foreground against the local apiserver: the cluster DNS, on
# RKUBE_DNS_PORT of every address of this machine, registered as the kube-dns Service
# (10.96.0.10) with the pod network's gateway as its endpoint (what pods reach this machine
# at). Used by hack/local-up.sh and process-compose.yaml; settings in hack/local-env.sh
# (extra flags: RKUBE_DNS_FLAGS).
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

[[ -x "${RKUBE_DNS_BIN}" ]] || {
    echo "run-dns: ${RKUBE_DNS_BIN} not found; run 'make build'" >&2
    exit 1
}
# The first address of the node's pod CIDR: the CNI bridge's, on this machine.
network="${RKUBE_POD_CIDR%/*}"
gateway="${network%.*}.$((${network##*.} + 1))"
read -r -a extra_flags <<<"${RKUBE_DNS_FLAGS}"
exec "${RKUBE_DNS_BIN}" \
    --kubeconfig "${RKUBE_KUBECONFIG}" \
    --listen "0.0.0.0:${RKUBE_DNS_PORT}" \
    --advertise-address "${gateway}" \
    --service-ip "${RKUBE_CLUSTER_DNS}" \
    --bind-address 127.0.0.1 \
    --port "${RKUBE_DNS_HEALTH_PORT}" \
    --log-format "${RKUBE_LOG_FORMAT}" \
    "${extra_flags[@]}"
