#!/usr/bin/env bash
# Runs rkube-scheduler in the foreground against the local apiserver
# (.rkube/kubeconfig). Used by hack/local-up.sh and process-compose.yaml;
# settings in hack/local-env.sh (extra flags: RKUBE_SCHEDULER_FLAGS).
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

[[ -x "${RKUBE_SCHEDULER_BIN}" ]] || {
    echo "run-scheduler: ${RKUBE_SCHEDULER_BIN} not found; run 'make build'" >&2
    exit 1
}
read -r -a extra_flags <<<"${RKUBE_SCHEDULER_FLAGS}"
exec "${RKUBE_SCHEDULER_BIN}" \
    --kubeconfig "$(rkube_kubeconfig_of "scheduler")" \
    --bind-address 127.0.0.1 \
    --port "${RKUBE_SCHEDULER_PORT}" \
    --log-format "${RKUBE_LOG_FORMAT}" \
    "${extra_flags[@]}"
