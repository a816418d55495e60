#!/usr/bin/env bash
# Per-host provisioning of the multi-node lab, shared by the one-machine lab (hack/lab-up.sh
# runs it inside each host's network namespace) and the Lima VMs (lima/*.yaml run it in each
# VM). It starts processes in the background, in whatever network namespace it is run in, and
# keeps their pid files and logs under ${LAB_STATE}.
#
#   hack/lab-provision.sh packages   install etcd, containerd, runc, CNI plugins, busybox-static
#                                    from Debian (apt-get; what a fresh VM needs)
#   hack/lab-provision.sh master     start etcd, rkube-apiserver, rkube-controller-manager,
#                                    rkube-scheduler and rkube-dns (the kube-dns Service) on ${NODE_IP}
#   hack/lab-provision.sh etcd       start this master's etcd without waiting for it (hack/lab-up.sh
#                                    starts every member of an HA control plane first: a member
#                                    is healthy only once a majority runs)
#   hack/lab-provision.sh lb         start HAProxy on ${NODE_IP}:${API_PORT} in front of the
#                                    apiservers at ${LB_BACKENDS} (HA control plane)
#   hack/lab-provision.sh worker     start a private containerd (test image imported), add the
#                                    routes to the other workers' pod CIDRs (${LAB_ROUTES}), start
#                                    rkubelet as ${NODE_NAME} with ${POD_CIDR} and ${NODE_IP}, and rkube-proxy
#                                    (Services in nftables; pods of the lab in ${CLUSTER_CIDR:-10.248.0.0/13})
#   hack/lab-provision.sh restart NAME
#                                    start NAME (etcd, apiserver, controller-manager, scheduler on
#                                    the master; kubelet on a worker) again with the flags it was
#                                    first started with, killing it first if it still runs (after
#                                    it was killed in an exercise or test), and wait until healthy
#   hack/lab-provision.sh restart-kubelet
#                                    the same as `restart kubelet`
#   hack/lab-provision.sh stop       stop what master/worker started under ${LAB_STATE}: pods'
#                                    containers, network namespaces and cgroups, then processes
#
# Settings (environment):
#   LAB_STATE      this host's state directory (required for master/worker/stop)
#   NODE_IP        this host's address (required for master/worker)
#   BIN_DIR        where the rkube binaries are (default: <repo>/target/debug)
#   PKI_DIR        certificates and kubeconfigs made by rkube-pki for this lab (default
#                  ${LAB_STATE}/pki): when it holds ca.crt, everything speaks TLS — etcd with
#                  client-certificate authentication on the master's loopback, the apiserver
#                  (Node,RBAC, ServiceAccount tokens) and the kubelets — and each process runs
#                  as its own identity; without it, plain HTTP and AlwaysAllow (loud in the logs)
#   API_URL        the apiserver, for workers (https://<master>:6443, or http:// without PKI_DIR;
#                  the load balancer's address with an HA control plane)
#   LAB_MEMBERS    HA control plane: the etcd members, space-separated NAME=IP (one per master);
#                  each master's etcd then joins them on its address with peer TLS, and its
#                  apiserver uses all of them. Unset: one etcd on the master's loopback
#   LAB_MEMBER     this master's member name in LAB_MEMBERS
#   LEADER_ELECT   1: controller-manager and scheduler run with --leader-elect (several masters);
#                  default 0
#   LEADER_ELECT_TIMING  their lease duration, renew deadline and retry period (default
#                  "15s 10s 2s", client-go's)
#   RUN_DNS        0: no rkube-dns on this master (default 1; an HA lab runs it on the first)
#   LB_BACKENDS    for lb: the apiservers' addresses, space-separated (LAB_ROUTES: the pod
#                  networks, so that pods reach the apiservers through it)
#   API_PORT       the apiserver's port on the master (default 6443)
#   NODE_NAME      the worker's node name (default: hostname)
#   POD_CIDR       the worker's pod network, e.g. 10.251.0.0/24 (required for worker)
#   LAB_ROUTES     space-separated CIDR=GATEWAY pairs added on this host (host-gw routing)
#   LEASE_RENEW    kubelet --node-lease-renew-interval in seconds (default 10)
#   KUBELET_EXTRA_ARGS  more rkubelet flags, split on spaces (e.g.
#                  "--insecure-registry 10.250.0.1:5000" to pull from a registry on the machine)
#   NODE_MONITOR_PERIOD, NODE_MONITOR_GRACE, POD_EVICTION_TIMEOUT, NODE_EVICTION_RATE
#                  controller-manager node lifecycle flags (defaults 5s, 40s, 5m, 0.1)
#   PODGC_QUARANTINE  controller-manager --podgc-orphan-quarantine: how long a deleted Node's
#                  pods stay before they are collected (default 40s)
#   TEST_IMAGE_TAR an OCI archive of the test image (default: built by hack/build-test-image.sh)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${BIN_DIR:-${repo_root}/target/debug}"
API_PORT="${API_PORT:-6443}"
PKI_DIR="${PKI_DIR:-${LAB_STATE:-/nonexistent}/pki}"

# secure: whether this lab has certificates (see PKI_DIR).
secure() {
    [[ -f "${PKI_DIR}/ca.crt" ]]
}

die() {
    echo "lab-provision: $*" >&2
    exit 1
}

need_tool() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: run 'make deps'"
}

need_bin() {
    [[ -x "${BIN_DIR}/$1" ]] || die "${BIN_DIR}/$1 not found: build it first (make build)"
}

# start NAME PROGRAM ARGS...: runs PROGRAM in its own session, output to NAME.log, pid to NAME.pid.
start() {
    local name="$1"
    shift
    setsid "$@" </dev/null >>"${LAB_STATE}/${name}.log" 2>&1 &
    echo "$!" >"${LAB_STATE}/${name}.pid"
}

# launch NAME HEALTH PROGRAM ARGS...: records PROGRAM's command line (NAME.args, one word a
# line) and HEALTH (NAME.health: curl's arguments, e.g. "--cacert ca.crt https://.../healthz")
# for `restart NAME`, starts it and waits until HEALTH answers.
launch() {
    local name="$1" health="$2"
    shift 2
    printf '%s\n' "$@" >"${LAB_STATE}/${name}.args"
    echo "${health}" >"${LAB_STATE}/${name}.health"
    relaunch "${name}"
}

# relaunch NAME: starts NAME again from NAME.args and waits (60 s at most) until it is healthy.
relaunch() {
    local name="$1" args
    mapfile -t args <"${LAB_STATE}/${name}.args"
    start "${name}" "${args[@]}"
    local health
    read -r -a health <"${LAB_STATE}/${name}.health"
    wait_for "${name}" 60 curl -fsS "${health[@]}"
}

# wait_for NAME SECONDS COMMAND...: polls COMMAND until it succeeds; fails naming NAME's log.
wait_for() {
    local name="$1" seconds="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ! alive "$(cat "${LAB_STATE}/${name}.pid")"; then
            tail -n 30 "${LAB_STATE}/${name}.log" >&2 || true
            die "${name} exited during start (log: ${LAB_STATE}/${name}.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "${LAB_STATE}/${name}.log" >&2 || true
            die "${name} not ready after ${seconds}s (log: ${LAB_STATE}/${name}.log)"
        fi
        sleep 0.2
    done
}

# add_routes: host-gw routing, each CIDR=GATEWAY of ${LAB_ROUTES} (other hosts' pod networks
# through their addresses; on the master too, so the apiserver answers pods and reaches them).
add_routes() {
    local route
    for route in ${LAB_ROUTES:-}; do
        ip route replace "${route%%=*}" via "${route#*=}"
    done
}

write_kubeconfig() {
    cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rkube-lab
  cluster:
    server: $1
users:
- name: rkube-lab
  user: {}
contexts:
- name: rkube-lab
  context:
    cluster: rkube-lab
    user: rkube-lab
    namespace: default
current-context: rkube-lab
preferences: {}
EOF
}

packages() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends etcd-server etcd-client containerd runc \
        containernetworking-plugins busybox-static iproute2 curl ca-certificates util-linux haproxy nftables
    # Debian's etcd-server starts a service on 127.0.0.1:2379, where the master's etcd goes.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
}

# etcd_setup: the flags of this host's etcd (ETCD_ARGS) and the curl arguments of its health check
# (ETCD_HEALTH), and the --etcd-servers of its apiserver (ETCD_SERVERS): one member on loopback,
# or with ${LAB_MEMBERS} this host's member ${LAB_MEMBER} of a cluster on the hosts' addresses,
# with peer TLS as well when the lab has certificates.
etcd_setup() {
    local scheme=http tls=() peer_tls=()
    if secure; then scheme=https; fi
    if [[ -z "${LAB_MEMBERS:-}" ]]; then
        ETCD_URL="${scheme}://127.0.0.1:2379"
        ETCD_SERVERS="${ETCD_URL}"
        if secure; then
            tls=(--cert-file "${PKI_DIR}/etcd-server.crt" --key-file "${PKI_DIR}/etcd-server.key"
                --trusted-ca-file "${PKI_DIR}/etcd-ca.crt" --client-cert-auth)
        fi
        # (etcd reads ETCD_* variables as flags: run it without any.)
        ETCD_ARGS=(env -u ETCD_PORT etcd --name lab --data-dir "${LAB_STATE}/etcd"
            --listen-client-urls "${ETCD_URL}" --advertise-client-urls "${ETCD_URL}"
            --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380
            --initial-cluster lab=http://127.0.0.1:2380 --logger zap --log-outputs stderr "${tls[@]}")
    else
        : "${LAB_MEMBER:?LAB_MEMBER (the etcd member name of this host) is required with LAB_MEMBERS}"
        local member cluster="" servers=""
        for member in ${LAB_MEMBERS}; do
            cluster+="${cluster:+,}${member%%=*}=${scheme}://${member#*=}:2380"
            servers+="${servers:+,}${scheme}://${member#*=}:2379"
        done
        ETCD_URL="${scheme}://${NODE_IP}:2379"
        ETCD_SERVERS="${servers}"
        if secure; then
            local pki="${PKI_DIR}/etcd-${LAB_MEMBER}"
            [[ -f "${pki}-peer.crt" ]] || die "${PKI_DIR} has no certificates for etcd member ${LAB_MEMBER} (rkube-pki --etcd-member ${LAB_MEMBER}=${NODE_IP})"
            tls=(--cert-file "${pki}-server.crt" --key-file "${pki}-server.key"
                --trusted-ca-file "${PKI_DIR}/etcd-ca.crt" --client-cert-auth)
            peer_tls=(--peer-cert-file "${pki}-peer.crt" --peer-key-file "${pki}-peer.key"
                --peer-trusted-ca-file "${PKI_DIR}/etcd-ca.crt" --peer-client-cert-auth)
        fi
        ETCD_ARGS=(env -u ETCD_PORT etcd --name "${LAB_MEMBER}" --data-dir "${LAB_STATE}/etcd"
            --listen-client-urls "${ETCD_URL},${scheme}://127.0.0.1:2379" --advertise-client-urls "${ETCD_URL}"
            --listen-peer-urls "${scheme}://${NODE_IP}:2380" --initial-advertise-peer-urls "${scheme}://${NODE_IP}:2380"
            --initial-cluster "${cluster}" --initial-cluster-state new --initial-cluster-token "${LAB_NAME:-rkube}"
            --logger zap --log-outputs stderr "${tls[@]}" "${peer_tls[@]}")
    fi
    ETCD_HEALTH="${ETCD_URL}/health"
    if secure; then
        ETCD_HEALTH="--cacert ${PKI_DIR}/etcd-ca.crt --cert ${PKI_DIR}/apiserver-etcd-client.crt"
        ETCD_HEALTH+=" --key ${PKI_DIR}/apiserver-etcd-client.key ${ETCD_URL}/health"
    fi
}

# Starts this host's etcd without waiting for it: a member of several answers its health check
# only once a majority of them runs, so hack/lab-up.sh starts every member first.
start_etcd() {
    : "${LAB_STATE:?LAB_STATE is required}" "${NODE_IP:?NODE_IP is required}"
    need_tool etcd
    mkdir -p "${LAB_STATE}/etcd"
    chmod 700 "${LAB_STATE}/etcd"
    etcd_setup
    printf '%s\n' "${ETCD_ARGS[@]}" >"${LAB_STATE}/etcd.args"
    echo "${ETCD_HEALTH}" >"${LAB_STATE}/etcd.health"
    start etcd "${ETCD_ARGS[@]}"
}

master() {
    : "${LAB_STATE:?LAB_STATE is required}" "${NODE_IP:?NODE_IP is required}"
    need_tool etcd
    need_tool curl
    for bin in rkube-apiserver rkube-controller-manager rkube-scheduler rkube-dns; do need_bin "${bin}"; done
    local scheme=http api_health
    local apiserver_tls=() cm_tls=() cm_kubeconfig sched_kubeconfig
    etcd_setup
    if secure; then
        scheme=https
        apiserver_tls=(--etcd-cafile "${PKI_DIR}/etcd-ca.crt" --etcd-certfile "${PKI_DIR}/apiserver-etcd-client.crt"
            --etcd-keyfile "${PKI_DIR}/apiserver-etcd-client.key"
            --tls-cert-file "${PKI_DIR}/apiserver.crt" --tls-private-key-file "${PKI_DIR}/apiserver.key"
            --client-ca-file "${PKI_DIR}/ca.crt" --authorization-mode Node,RBAC
            --kubelet-certificate-authority "${PKI_DIR}/ca.crt"
            --kubelet-client-certificate "${PKI_DIR}/apiserver-kubelet-client.crt"
            --kubelet-client-key "${PKI_DIR}/apiserver-kubelet-client.key"
            --service-account-signing-key-file "${PKI_DIR}/sa.key")
        api_health="--cacert ${PKI_DIR}/ca.crt https://${NODE_IP}:${API_PORT}/readyz"
        cm_tls=(--root-ca-file "${PKI_DIR}/ca.crt")
        cm_kubeconfig="${PKI_DIR}/controller-manager.kubeconfig"
        sched_kubeconfig="${PKI_DIR}/scheduler.kubeconfig"
        cp "${PKI_DIR}/admin.kubeconfig" "${LAB_STATE}/kubeconfig"
    else
        echo "lab-provision: no ${PKI_DIR}/ca.crt: the lab runs on PLAIN HTTP with AlwaysAllow: anyone on its network may do anything" >&2
        api_health="http://${NODE_IP}:${API_PORT}/readyz"
        write_kubeconfig "${API_URL:-http://${NODE_IP}:${API_PORT}}" "${LAB_STATE}/kubeconfig"
        cm_kubeconfig="${LAB_STATE}/kubeconfig"
        sched_kubeconfig="${LAB_STATE}/kubeconfig"
    fi
    local api_url="${scheme}://${NODE_IP}:${API_PORT}"
    add_routes

    # etcd: started here unless hack/lab-up.sh started every member already (start_etcd).
    if ! { [[ -f "${LAB_STATE}/etcd.pid" ]] && alive "$(cat "${LAB_STATE}/etcd.pid")"; }; then
        start_etcd
    fi
    local etcd_health
    read -r -a etcd_health <<<"${ETCD_HEALTH}"
    wait_for etcd 60 curl -fsS "${etcd_health[@]}"

    launch apiserver "${api_health}" \
        "${BIN_DIR}/rkube-apiserver" --etcd-servers "${ETCD_SERVERS}" --bind-address 0.0.0.0 --port "${API_PORT}" \
        --advertise-address "${NODE_IP}" "${apiserver_tls[@]}"
    # With a load balancer in front (API_URL), the components below reach this apiserver through
    # it: wait until it sends them somewhere (its health checks need a second or two).
    if [[ -n "${API_URL:-}" && "${API_URL}" != "${api_url}" ]]; then
        local through=("${API_URL}/readyz")
        if secure; then through=(--cacert "${PKI_DIR}/ca.crt" "${API_URL}/readyz"); fi
        wait_for apiserver 60 curl -fsS "${through[@]}"
    fi

    # Leader election: with several masters (LEADER_ELECT=1) one controller-manager and one
    # scheduler act, the others wait to take over.
    local election=(--leader-elect=false) timing
    if [[ "${LEADER_ELECT:-0}" == 1 ]]; then
        read -r -a timing <<<"${LEADER_ELECT_TIMING:-15s 10s 2s}"
        # Named after the master (the lab's hosts share one hostname): `kubectl get leases -n
        # kube-system` shows which master leads.
        election=(--leader-elect=true --leader-elect-lease-duration "${timing[0]}"
            --leader-elect-renew-deadline "${timing[1]}" --leader-elect-retry-period "${timing[2]}"
            --identity "${LAB_MEMBER:-$(hostname)}")
    fi
    launch controller-manager "http://${NODE_IP}:10257/healthz" \
        "${BIN_DIR}/rkube-controller-manager" --kubeconfig "${cm_kubeconfig}" \
        --bind-address "${NODE_IP}" --port 10257 "${election[@]}" \
        --node-monitor-period "${NODE_MONITOR_PERIOD:-5s}" \
        --node-monitor-grace-period "${NODE_MONITOR_GRACE:-40s}" \
        --pod-eviction-timeout "${POD_EVICTION_TIMEOUT:-5m}" \
        --node-eviction-rate "${NODE_EVICTION_RATE:-0.1}" \
        --podgc-orphan-quarantine "${PODGC_QUARANTINE:-40s}" "${cm_tls[@]}"

    launch scheduler "http://${NODE_IP}:10251/healthz" \
        "${BIN_DIR}/rkube-scheduler" --kubeconfig "${sched_kubeconfig}" \
        --bind-address "${NODE_IP}" --port 10251 "${election[@]}"
    # The cluster DNS: the kube-dns Service (10.96.0.10) it registers points at this host.
    if [[ "${RUN_DNS:-1}" == 1 ]]; then
        launch dns "http://127.0.0.1:10055/healthz" \
            "${BIN_DIR}/rkube-dns" --kubeconfig "${LAB_STATE}/kubeconfig" --listen 0.0.0.0:1053 \
            --advertise-address "${NODE_IP}" --upstream "${DNS_UPSTREAM:-127.0.0.1:53}" --port 10055
    fi
    echo "lab-provision: master ready at ${api_url}"
}

# The load balancer of an HA control plane, as kubeadm's HA guide sets it up: HAProxy passes TCP
# through to every apiserver of ${LB_BACKENDS} (their addresses) on ${API_PORT} and sends new
# connections only to those whose /readyz answers 200 (checked every second, over TLS when the
# lab has certificates).
lb() {
    : "${LAB_STATE:?LAB_STATE is required}" "${NODE_IP:?NODE_IP is required}"
    : "${LB_BACKENDS:?LB_BACKENDS (the addresses of the apiservers) is required}"
    need_tool haproxy
    need_tool curl
    mkdir -p "${LAB_STATE}"
    # Pods reach the apiservers through it too: the replies go back to their networks.
    add_routes
    local check="check" backend n=0
    if secure; then check="check check-ssl verify required ca-file ${PKI_DIR}/ca.crt"; fi
    {
        cat <<EOF
# Made by hack/lab-provision.sh lb: TCP passthrough to the apiservers (TLS ends at each of them,
# so clients keep authenticating with their own certificates).
global
    log stderr format raw local0 info
    maxconn 4096

defaults
    log global
    mode tcp
    option tcplog
    timeout connect 2s
    # A connection an apiserver refuses (it just died, before the health checks notice) is
    # tried again on another one.
    retries 2
    option redispatch 1
    # Watches stay open for minutes.
    timeout client 1h
    timeout server 1h

frontend apiserver
    bind ${NODE_IP}:${API_PORT}
    default_backend apiservers

# HAProxy's own liveness (200 while it runs, whatever the apiservers do).
frontend health
    mode http
    bind ${NODE_IP}:${LB_HEALTH_PORT:-8404}
    monitor-uri /healthz

backend apiservers
    option httpchk GET /readyz
    http-check expect status 200
    balance roundrobin
    # A dead apiserver is out at the first connection it refuses (observe) or after two failed
    # checks (about 2 s), back after two good checks; connections to it are closed when it
    # goes (a client then reconnects to another).
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions observe layer4 error-limit 1 on-error mark-down
EOF
        for backend in ${LB_BACKENDS}; do
            n=$((n + 1))
            echo "    server apiserver${n} ${backend}:${API_PORT} ${check}"
        done
    } >"${LAB_STATE}/haproxy.cfg"
    haproxy -c -q -f "${LAB_STATE}/haproxy.cfg" || die "haproxy rejects ${LAB_STATE}/haproxy.cfg"
    launch haproxy "http://${NODE_IP}:${LB_HEALTH_PORT:-8404}/healthz" haproxy -db -f "${LAB_STATE}/haproxy.cfg"
    echo "lab-provision: load balancer ready at ${NODE_IP}:${API_PORT} (apiservers ${LB_BACKENDS})"
}

worker() {
    : "${LAB_STATE:?LAB_STATE is required}" "${NODE_IP:?NODE_IP is required}" "${POD_CIDR:?POD_CIDR is required}"
    : "${API_URL:?API_URL is required (https://MASTER_IP:6443)}"
    local node_name="${NODE_NAME:-$(hostname)}"
    for tool in containerd ctr runc containerd-shim-runc-v2 curl ip; do need_tool "${tool}"; done
    [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] ||
        die "CNI plugins missing in /usr/lib/cni: run 'make deps' (containernetworking-plugins)"
    need_bin rkubelet
    need_bin rkube-proxy
    need_tool nft
    mkdir -p "${LAB_STATE}/containerd"
    local base="${LAB_STATE}/containerd"
    local socket="${base}/containerd.sock"
    cat >"${base}/config.toml" <<EOF
version = 2
root = "${base}/root"
state = "${base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${socket}.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${base}/opt"
EOF
    start containerd containerd --config "${base}/config.toml"
    wait_for containerd 60 ctr --address "${socket}" version

    local image="${TEST_IMAGE_TAR:-${LAB_STATE}/busybox-oci.tar}"
    [[ -f "${image}" ]] || bash "${repo_root}/hack/build-test-image.sh" "${image}"
    ctr --address "${socket}" -n rkube image import "${image}" >/dev/null
    # On disk before anything runs from it: containerd unpacks layers without fsync, and a
    # machine that loses power (a VM of the lab powered off) would otherwise keep a torn image
    # whose binaries fail with "exec format error".
    sync

    # host-gw routing: the other workers' pod networks through their node addresses.
    sysctl -qw net.ipv4.ip_forward=1
    add_routes

    local kubelet_tls=() kubelet_health="http://${NODE_IP}:10250/healthz"
    if secure; then
        [[ -f "${PKI_DIR}/kubelet-${node_name}.kubeconfig" ]] ||
            die "${PKI_DIR} has no certificates for node ${node_name} (rkube-pki --node ${node_name}=${NODE_IP})"
        cp "${PKI_DIR}/kubelet-${node_name}.kubeconfig" "${LAB_STATE}/kubeconfig"
        kubelet_tls=(--tls-cert-file "${PKI_DIR}/kubelet-${node_name}.crt"
            --tls-private-key-file "${PKI_DIR}/kubelet-${node_name}.key" --client-ca-file "${PKI_DIR}/ca.crt")
        kubelet_health="--cacert ${PKI_DIR}/ca.crt https://${NODE_IP}:10250/healthz"
    else
        write_kubeconfig "${API_URL}" "${LAB_STATE}/kubeconfig"
    fi
    echo "${socket}" >"${LAB_STATE}/containerd.address"
    local kubelet_extra=()
    read -r -a kubelet_extra <<<"${KUBELET_EXTRA_ARGS:-}"
    launch kubelet "${kubelet_health}" \
        "${BIN_DIR}/rkubelet" --kubeconfig "${LAB_STATE}/kubeconfig" --node-name "${node_name}" \
        --runtime containerd --containerd-address "${socket}" --root-dir "${LAB_STATE}/kubelet" \
        --pod-cidr "${POD_CIDR}" --node-ip "${NODE_IP}" --address "${NODE_IP}" --port 10250 \
        --cluster-dns "${CLUSTER_DNS:-10.96.0.10}" \
        --node-lease-renew-interval "${LEASE_RENEW:-10}" --sync-frequency "${SYNC_FREQUENCY:-10}" \
        "${kubelet_tls[@]}" "${kubelet_extra[@]}"
    # Services on this worker: rkube-proxy's nftables rules (every pod network of the lab lies
    # in CLUSTER_CIDR; traffic from elsewhere is masqueraded).
    local proxy_kubeconfig="${LAB_STATE}/kubeconfig"
    if secure; then proxy_kubeconfig="${PKI_DIR}/proxy.kubeconfig"; fi
    launch proxy "http://127.0.0.1:10256/healthz" \
        "${BIN_DIR}/rkube-proxy" --kubeconfig "${proxy_kubeconfig}" --node-name "${node_name}" \
        --cluster-cidr "${CLUSTER_CIDR:-10.248.0.0/13}" --bind-address 127.0.0.1 --port 10256
    echo "lab-provision: worker ${node_name} ready (${NODE_IP}, pods ${POD_CIDR})"
}

# Starts NAME again with the flags it was first started with (after it was killed in an exercise
# or a test); kills it first if it still runs.
restart() {
    local name="${1:?usage: lab-provision.sh restart NAME}"
    : "${LAB_STATE:?LAB_STATE is required}"
    [[ "${name}" =~ ^[a-z-]+$ && -f "${LAB_STATE}/${name}.args" ]] ||
        die "${name} was never started under ${LAB_STATE} (no ${name}.args)"
    kill_pidfile "${name}"
    relaunch "${name}"
    echo "lab-provision: ${name} restarted"
}

# alive PID: whether PID runs (a zombie, killed but not yet reaped by its new parent, does not).
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

# kill_pidfile NAME: SIGKILL the process of NAME.pid (and its session) if it still runs.
kill_pidfile() {
    local file="${LAB_STATE}/$1.pid" pid
    [[ -f "${file}" ]] || return 0
    pid="$(cat "${file}")"
    if [[ -n "${pid}" ]] && alive "${pid}"; then
        kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
        local tries=100
        while ((tries-- > 0)) && alive "${pid}"; do
            sleep 0.05
        done
    fi
    rm -f "${file}"
}

# Removes /sys/fs/cgroup/<hierarchy>/rkube/pod<uid> (children first), as the kubelet made them.
remove_pod_cgroups() {
    local uid="$1" pod child
    for pod in /sys/fs/cgroup/rkube/"pod${uid}" /sys/fs/cgroup/*/rkube/"pod${uid}"; do
        [[ -d "${pod}" ]] || continue
        for child in "${pod}"/*/; do
            if [[ -d "${child}" ]]; then rmdir "${child}" 2>/dev/null || true; fi
        done
        rmdir "${pod}" 2>/dev/null || true
    done
}

stop() {
    : "${LAB_STATE:?LAB_STATE is required}"
    [[ -d "${LAB_STATE}" ]] || return 0
    kill_pidfile kubelet
    kill_pidfile proxy
    # Its rules go with it (each worker has a network namespace of its own in the lab).
    nft delete table ip rkube-proxy 2>/dev/null || true
    kill_pidfile scheduler
    kill_pidfile dns
    kill_pidfile controller-manager
    # The pods: their containers (through containerd, still running), cgroups and netns.
    local uids=() id uid
    if [[ -f "${LAB_STATE}/containerd.address" ]]; then
        local socket
        socket="$(cat "${LAB_STATE}/containerd.address")"
        if [[ -S "${socket}" ]]; then
            while read -r id; do
                [[ -n "${id}" ]] || continue
                ctr --address "${socket}" -n rkube tasks kill --all --signal SIGKILL "${id}" >/dev/null 2>&1 || true
                ctr --address "${socket}" -n rkube tasks delete --force "${id}" >/dev/null 2>&1 || true
                ctr --address "${socket}" -n rkube containers delete "${id}" >/dev/null 2>&1 || true
                uids+=("${id:0:36}")
            done < <(ctr --address "${socket}" -n rkube containers list --quiet 2>/dev/null || true)
        fi
    fi
    if [[ -d "${LAB_STATE}/kubelet/pods" ]]; then
        for id in "${LAB_STATE}"/kubelet/pods/*/; do
            # <namespace>_<pod>_<uid>
            if [[ -d "${id}" ]]; then uids+=("$(basename "${id}" | sed 's/.*_//')"); fi
        done
    fi
    for uid in "${uids[@]}"; do
        [[ "${uid}" =~ ^[0-9a-f-]{36}$ ]] || continue
        remove_pod_cgroups "${uid}"
        if [[ -e "/run/netns/rkube-${uid}" ]]; then ip netns delete "rkube-${uid}" 2>/dev/null || true; fi
    done
    kill_pidfile containerd
    kill_pidfile haproxy
    kill_pidfile apiserver
    kill_pidfile etcd
}

case "${1:-}" in
packages) packages ;;
etcd) start_etcd ;;
master) master ;;
lb) lb ;;
worker) worker ;;
stop) stop ;;
restart) restart "${2:-}" ;;
restart-kubelet) restart kubelet ;;
*)
    echo "usage: $0 packages|etcd|master|lb|worker|restart NAME|restart-kubelet|stop   (settings: see the header)" >&2
    exit 2
    ;;
esac
