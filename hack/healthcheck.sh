#!/usr/bin/env bash
# Exits 0 when a local-cluster process answers its health endpoint:
#   healthcheck.sh etcd                GET http://127.0.0.1:${ETCD_PORT}/health
#   healthcheck.sh containerd          ctr --address ${RKUBE_CONTAINERD_ADDRESS} version
#   healthcheck.sh apiserver           GET http(s)://${RKUBE_BIND_ADDRESS}:${RKUBE_PORT}/readyz
#   healthcheck.sh controller-manager  GET http://127.0.0.1:${RKUBE_CONTROLLER_MANAGER_PORT}/readyz
#   healthcheck.sh scheduler           GET http://127.0.0.1:${RKUBE_SCHEDULER_PORT}/readyz
#   healthcheck.sh proxy               GET http://127.0.0.1:${RKUBE_PROXY_PORT}/readyz
#   healthcheck.sh dns                 GET http://127.0.0.1:${RKUBE_DNS_HEALTH_PORT}/readyz
#   healthcheck.sh kubelet             GET http(s)://127.0.0.1:${RKUBE_KUBELET_PORT}/readyz
# The readiness probe of process-compose.yaml, and the wait loop of local-up.sh.
set -euo pipefail
# shellcheck source=SCRIPTDIR/local-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-env.sh"

case "${1:-}" in
etcd) url="$(rkube_etcd_url)/health" ;;
containerd)
    exec "${RKUBE_CTR_BIN}" --address "${RKUBE_CONTAINERD_ADDRESS}" --timeout 2s version >/dev/null
    ;;
apiserver) url="$(rkube_apiserver_url)/readyz" ;;
controller-manager) url="http://127.0.0.1:${RKUBE_CONTROLLER_MANAGER_PORT}/readyz" ;;
scheduler) url="http://127.0.0.1:${RKUBE_SCHEDULER_PORT}/readyz" ;;
proxy) url="http://127.0.0.1:${RKUBE_PROXY_PORT}/readyz" ;;
dns) url="http://127.0.0.1:${RKUBE_DNS_HEALTH_PORT}/readyz" ;;
kubelet)
    url="http://127.0.0.1:${RKUBE_KUBELET_PORT}/readyz"
    if [[ "${RKUBE_SECURE}" == 1 ]]; then url="https://127.0.0.1:${RKUBE_KUBELET_PORT}/readyz"; fi
    ;;
*)
    echo "usage: $0 etcd|containerd|apiserver|controller-manager|scheduler|proxy|dns|kubelet" >&2
    exit 2
    ;;
esac
tls=()
if [[ "${url}" == https://* ]]; then tls=(--cacert "${RKUBE_PKI_DIR}/ca.crt"); fi
exec curl --silent --show-error --fail --max-time 2 "${tls[@]}" --output /dev/null "${url}"
