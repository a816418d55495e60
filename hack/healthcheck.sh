#!/usr/bin/env bash
# Exits 0 when a local-cluster process answers its health endpoint:
#   healthcheck.sh etcd        GET http://127.0.0.1:${ETCD_PORT}/health
#   healthcheck.sh apiserver   GET http://${RKUBE_BIND_ADDRESS}:${RKUBE_PORT}/readyz
# The readiness probe of process-compose.yaml, and the wait loop of local-up.sh.
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

case "${1:-}" in
etcd) url="$(rkube_etcd_url)/health" ;;
apiserver) url="$(rkube_apiserver_url)/readyz" ;;
*)
    echo "usage: $0 etcd|apiserver" >&2
    exit 2
    ;;
esac
exec curl --silent --show-error --fail --max-time 2 --output /dev/null "${url}"
