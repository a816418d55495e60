#!/usr/bin/env bash
# Runs the local cluster's etcd in the foreground (single member, loopback only),
# with its data in ${RKUBE_ETCD_DATA_DIR} (default .rkube/etcd), which is kept across
# runs. Used by hack/local-up.sh and process-compose.yaml; settings in
# hack/local-env.sh.
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

[[ -x "${RKUBE_ETCD_BIN}" ]] || {
    echo "run-etcd: ${RKUBE_ETCD_BIN} not found or not executable; run 'make deps'" >&2
    exit 1
}
mkdir -p "${RKUBE_ETCD_DATA_DIR}"
chmod 700 "${RKUBE_ETCD_DATA_DIR}"

client_url="http://127.0.0.1:${ETCD_PORT}"
peer_url="http://127.0.0.1:${RKUBE_ETCD_PEER_PORT}"

# etcd reads every ETCD_* environment variable as a flag (ETCD_PORT included,
# which is ours), and refuses to start when one conflicts with a flag below.
while IFS= read -r var; do
    unset "${var}"
done < <(compgen -e | grep '^ETCD_' || true)

exec "${RKUBE_ETCD_BIN}" \
    --name rkube \
    --data-dir "${RKUBE_ETCD_DATA_DIR}" \
    --listen-client-urls "${client_url}" \
    --advertise-client-urls "${client_url}" \
    --listen-peer-urls "${peer_url}" \
    --initial-advertise-peer-urls "${peer_url}" \
    --initial-cluster "rkube=${peer_url}" \
    --logger zap \
    --log-outputs stderr
