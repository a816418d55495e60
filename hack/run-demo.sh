#!/usr/bin/env bash
# The demo app of the local cluster (used by hack/local-up.sh and process-compose.yaml):
#   run-demo.sh import   build the busybox-local image (hack/build-test-image.sh) and import
#                        it into the private containerd's namespace `rkube`
#   run-demo.sh apply    apply manifests/demo with rkubectl and wait until the demo
#                        Deployment's pods are Ready and answer HTTP on their pod IPs,
#                        and the Service demo answers on its node port 30080 (through
#                        rkube-proxy; on the pod network's gateway, an address of this
#                        machine that needs no default route) (RKUBE_DEMO_TIMEOUT, default 180s)
# Settings in hack/local-env.sh.
set -euo pipefail
hack_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/local-env.sh
source "${hack_dir}/local-env.sh"

log() { printf 'run-demo: %s\n' "$*"; }

# demo_serves: the Deployment is rolled out and every demo pod answers on its pod IP.
demo_serves() {
    local ips ip
    "${RKUBECTL_BIN}" rollout status deploy/demo --timeout=10s >/dev/null 2>&1 || return 1
    ips="$("${RKUBECTL_BIN}" get pods -l app=demo -o jsonpath='{.items[*].status.podIP}' 2>/dev/null)" || return 1
    [[ -n "${ips}" ]] || return 1
    for ip in ${ips}; do
        curl --silent --fail --max-time 2 --output /dev/null "http://${ip}:8080/" || return 1
    done
    # The Service, through rkube-proxy's rules.
    curl --silent --fail --max-time 2 --output /dev/null "http://$(pod_gateway):30080/" || return 1
}

# pod_gateway: the first address of the node's pod CIDR (the CNI bridge's, on this machine).
pod_gateway() {
    local network="${RKUBE_POD_CIDR%/*}"
    printf '%s.%s' "${network%.*}" "$((${network##*.} + 1))"
}

case "${1:-}" in
import)
    bash "${hack_dir}/build-test-image.sh" "${RKUBE_DEMO_IMAGE_TAR}" >/dev/null
    rkube_ctr image import "${RKUBE_DEMO_IMAGE_TAR}" >/dev/null
    log "image busybox-local imported into ${RKUBE_CONTAINERD_ADDRESS} (namespace rkube)"
    ;;
apply)
    timeout="${RKUBE_DEMO_TIMEOUT:-180}"
    export KUBECONFIG="${RKUBE_KUBECONFIG}"
    "${RKUBECTL_BIN}" apply -f "${RKUBE_ROOT}/manifests/demo/"
    log "waiting up to ${timeout}s for the demo pods to be Ready and answer HTTP"
    deadline=$((SECONDS + timeout))
    # Ready in the apiserver is the kubelet's word (and after a restart it may still be the
    # last run's): also ask every pod over HTTP, reading the pod IPs afresh each time.
    until demo_serves; do
        if ((SECONDS >= deadline)); then
            log "the demo is not Ready after ${timeout}s:"
            "${RKUBECTL_BIN}" get pods -l app=demo -o wide >&2 || true
            exit 1
        fi
        sleep 1
    done
    "${RKUBECTL_BIN}" get pods,svc -l app=demo -o wide
    ;;
*)
    echo "usage: $0 import|apply" >&2
    exit 2
    ;;
esac
