#!/usr/bin/env bash
# Brings up the multi-node lab on this machine: three hosts as network namespaces
# (<name>-master, <name>-worker1, <name>-worker2) joined by a bridge on the host, etcd and the
# control plane in the master, a containerd and an rkubelet in each worker, routes to the
# workers' pod networks (host-gw) in the workers and on the machine itself. Needs root.
# Idempotent: a lab of the same name is taken down first. hack/lab-down.sh removes everything
# this made.
#
# Settings (environment):
#   LAB_NAME    prefix of the namespaces and links (default rkube; at most 11 characters)
#   LAB_INDEX   0-255: the lab's networks are 10.250.<i>.0/24 (hosts), 10.251.<i>.0/24 (worker1's
#               pods), 10.252.<i>.0/24 (worker2's pods) (default 0)
#   LAB_STATE   state directory (default <repo>/.rkube/lab-<name>)
#   LAB_SECURE  1 (default): rkube-pki makes the lab's certificates (<state>/pki) and everything
#               speaks TLS with its own identity (see hack/lab-provision.sh); 0: plain HTTP
#   LAB_HA      1: a highly available control plane: three masters (master, master2, master3),
#               each with an etcd member (one cluster, peer TLS), an apiserver, a controller-manager
#               and a scheduler (leader-elected), and a load balancer host (lb, HAProxy) in front
#               of the apiservers, which every kubeconfig points at. 0 (default): one master
#   LEADER_ELECT_TIMING  with LAB_HA=1: lease duration, renew deadline, retry period of the
#               controller-managers and schedulers (default "15s 10s 2s")
#   BIN_DIR, LEASE_RENEW, SYNC_FREQUENCY, KUBELET_EXTRA_ARGS, NODE_MONITOR_PERIOD, NODE_MONITOR_GRACE,
#   POD_EVICTION_TIMEOUT, NODE_EVICTION_RATE, PODGC_QUARANTINE, TEST_IMAGE_TAR: see
#   hack/lab-provision.sh
#
# Addresses: the host's end of the bridge .1, master .10, worker1 .11, worker2 .12; with LAB_HA=1
# also lb .9, master2 .13, master3 .14.
# The apiserver is https://10.250.<i>.10:6443 (with LAB_HA=1 the load balancer,
# https://10.250.<i>.9:6443); the kubeconfig is <state>/kubeconfig (the admin's:
# kubernetes-admin in system:masters).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB_NAME="${LAB_NAME:-rkube}"
LAB_INDEX="${LAB_INDEX:-0}"
export LAB_NAME LAB_INDEX
LAB_STATE="${LAB_STATE:-${repo_root}/.rkube/lab-${LAB_NAME}}"
LAB_SECURE="${LAB_SECURE:-1}"
LAB_HA="${LAB_HA:-0}"
BIN_DIR="${BIN_DIR:-${repo_root}/target/debug}"
export BIN_DIR

die() {
    echo "lab-up: $*" >&2
    exit 1
}

[[ "$(id -u)" == 0 ]] || die "must run as root (network namespaces, containerd)"
((${#LAB_NAME} <= 11)) || die "LAB_NAME '${LAB_NAME}' is longer than 11 characters"
if ! [[ "${LAB_INDEX}" =~ ^[0-9]+$ ]] || ((LAB_INDEX > 255)); then
    die "LAB_INDEX must be 0-255"
fi
tools=(ip nsenter etcd containerd ctr runc curl)
if [[ "${LAB_HA}" == 1 ]]; then tools+=(haproxy); fi
for tool in "${tools[@]}"; do
    command -v "${tool}" >/dev/null 2>&1 || die "${tool} not found: run 'make deps'"
done
[[ -x /usr/lib/cni/bridge ]] || die "CNI plugins missing in /usr/lib/cni: run 'make deps'"

# Start from nothing: a lab of this name may be left over.
LAB_STATE="${LAB_STATE}" "${repo_root}/hack/lab-down.sh"

net="10.250.${LAB_INDEX}"
bridge="${LAB_NAME}-br"
declare -A ip=([master]="${net}.10" [worker1]="${net}.11" [worker2]="${net}.12"
    [lb]="${net}.9" [master2]="${net}.13" [master3]="${net}.14")
declare -A link=([master]="${LAB_NAME}-m" [worker1]="${LAB_NAME}-w1" [worker2]="${LAB_NAME}-w2"
    [lb]="${LAB_NAME}-lb" [master2]="${LAB_NAME}-m2" [master3]="${LAB_NAME}-m3")
declare -A pods=([worker1]="10.251.${LAB_INDEX}.0/24" [worker2]="10.252.${LAB_INDEX}.0/24")
masters=(master)
hosts=(master worker1 worker2)
api_host="${ip[master]}"
if [[ "${LAB_HA}" == 1 ]]; then
    masters=(master master2 master3)
    hosts=(lb master master2 master3 worker1 worker2)
    api_host="${ip[lb]}"
fi

mkdir -p "${LAB_STATE}"
# nf_call_*: traffic between the hosts is not passed through the machine's own iptables
# (a FORWARD policy of DROP, as Docker sets, would otherwise cut the hosts off).
ip link add "${bridge}" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0
ip addr add "${net}.1/24" dev "${bridge}"
ip link set "${bridge}" up
for host in "${hosts[@]}"; do
    ns="${LAB_NAME}-${host}"
    ip netns add "${ns}"
    ip link add "${link[${host}]}" type veth peer name eth0 netns "${ns}"
    ip link set "${link[${host}]}" master "${bridge}" up
    ip -n "${ns}" link set lo up
    ip -n "${ns}" addr add "${ip[${host}]}/24" dev eth0
    ip -n "${ns}" link set eth0 up
    mkdir -p "${LAB_STATE}/${host}"
done

# In a host: `nsenter --net` switches only the network namespace (unlike `ip netns exec`, which
# also remounts /sys and so hides /sys/fs/cgroup from runc).
in_host() {
    local host="$1"
    shift
    nsenter --net="/run/netns/${LAB_NAME}-${host}" env LAB_STATE="${LAB_STATE}/${host}" NODE_IP="${ip[${host}]}" \
        PKI_DIR="${LAB_STATE}/pki" "$@"
}

scheme=http
if [[ "${LAB_SECURE}" == 1 ]]; then
    scheme=https
    [[ -x "${BIN_DIR}/rkube-pki" ]] || die "${BIN_DIR}/rkube-pki not found: build it first (make build)"
    pki_args=(--apiserver-address "${api_host}")
    for host in "${masters[@]}"; do
        pki_args+=(--apiserver-address "${ip[${host}]}")
        if [[ "${LAB_HA}" == 1 ]]; then pki_args+=(--etcd-member "${host}=${ip[${host}]}"); fi
    done
    "${BIN_DIR}/rkube-pki" --dir "${LAB_STATE}/pki" --server "https://${api_host}:6443" "${pki_args[@]}" \
        --node "worker1=${ip[worker1]}" --node "worker2=${ip[worker2]}" >/dev/null
fi
api_url="${scheme}://${api_host}:6443"

routes="${pods[worker1]}=${ip[worker1]} ${pods[worker2]}=${ip[worker2]}"
if [[ "${LAB_HA}" == 1 ]]; then
    # Every etcd member first: each is healthy only once a majority of them runs.
    members=""
    for host in "${masters[@]}"; do members+="${members:+ }${host}=${ip[${host}]}"; done
    for host in "${masters[@]}"; do
        in_host "${host}" LAB_MEMBERS="${members}" LAB_MEMBER="${host}" "${repo_root}/hack/lab-provision.sh" etcd
    done
    # The load balancer before the control planes, whose kubeconfigs point at it.
    backends=""
    for host in "${masters[@]}"; do backends+="${backends:+ }${ip[${host}]}"; done
    in_host lb LB_BACKENDS="${backends}" LAB_ROUTES="${routes}" "${repo_root}/hack/lab-provision.sh" lb
    for host in "${masters[@]}"; do
        dns=0
        if [[ "${host}" == master ]]; then dns=1; fi
        in_host "${host}" LAB_MEMBERS="${members}" LAB_MEMBER="${host}" LEADER_ELECT=1 RUN_DNS="${dns}" \
            API_URL="${api_url}" LAB_ROUTES="${routes}" "${repo_root}/hack/lab-provision.sh" master
    done
else
    in_host master LAB_ROUTES="${routes}" "${repo_root}/hack/lab-provision.sh" master
fi
image="${TEST_IMAGE_TAR:-${LAB_STATE}/busybox-oci.tar}"
[[ -f "${image}" ]] || bash "${repo_root}/hack/build-test-image.sh" "${image}"
in_host worker1 NODE_NAME=worker1 POD_CIDR="${pods[worker1]}" API_URL="${api_url}" \
    LAB_ROUTES="${pods[worker2]}=${ip[worker2]}" TEST_IMAGE_TAR="${image}" \
    "${repo_root}/hack/lab-provision.sh" worker
in_host worker2 NODE_NAME=worker2 POD_CIDR="${pods[worker2]}" API_URL="${api_url}" \
    LAB_ROUTES="${pods[worker1]}=${ip[worker1]}" TEST_IMAGE_TAR="${image}" \
    "${repo_root}/hack/lab-provision.sh" worker

# The machine reaches the pods too (`curl http://<pod IP>:8080/` from the machine, as the tests'
# HTTP clients do): host-gw routes to each worker's pod network through the lab bridge. They go
# away with the bridge (lab-down.sh).
ip route replace "${pods[worker1]}" via "${ip[worker1]}" dev "${bridge}"
ip route replace "${pods[worker2]}" via "${ip[worker2]}" dev "${bridge}"

cp "${LAB_STATE}/master/kubeconfig" "${LAB_STATE}/kubeconfig"
if [[ "${LAB_HA}" == 1 ]]; then
    cat <<MSG
lab-up: lab '${LAB_NAME}' is up with an HA control plane (state in ${LAB_STATE})
  lb      ${ip[lb]}    HAProxy: the apiservers at ${api_url}
  master  ${ip[master]}   etcd member, apiserver, controller-manager, scheduler (leader-elected), rkube-dns
  master2 ${ip[master2]}   etcd member, apiserver, controller-manager, scheduler (leader-elected)
  master3 ${ip[master3]}   etcd member, apiserver, controller-manager, scheduler (leader-elected)
MSG
else
    echo "lab-up: lab '${LAB_NAME}' is up (state in ${LAB_STATE})"
    echo "  master  ${ip[master]}   etcd, apiserver ${api_url}, controller-manager, scheduler"
fi
cat <<MSG
  worker1 ${ip[worker1]}   containerd, rkubelet (pods ${pods[worker1]})
  worker2 ${ip[worker2]}   containerd, rkubelet (pods ${pods[worker2]})
Use it:   export KUBECONFIG=${LAB_STATE}/kubeconfig; ${repo_root}/target/debug/rkubectl get nodes
Enter a host:  ip netns exec ${LAB_NAME}-worker1 bash
Take it down:  make lab-down   (or LAB_NAME=${LAB_NAME} hack/lab-down.sh)
MSG
