#!/usr/bin/env bash
# Runs rkube-apiserver in the foreground against the local etcd. Used by
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
exec "${RKUBE_APISERVER_BIN}" \
    --etcd-servers "$(rkube_etcd_url)" \
    --bind-address "${RKUBE_BIND_ADDRESS}" \
    --port "${RKUBE_PORT}" \
    --log-format "${RKUBE_LOG_FORMAT}" \
    "${extra_flags[@]}"
