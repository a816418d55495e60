//! Harness for the multi-node lab tests: the lab of `hack/lab-up.sh` (three hosts as network
//! namespaces — master, worker1, worker2 — on a bridge, the control plane in the master, a
//! containerd and an rkubelet in each worker, host-gw routes between the pod networks), built
//! from a test with a name and networks of its own.
//!
//! [`Lab::start`] takes a free lab index (a lock file, held with `flock` while the [`Lab`] lives,
//! so parallel tests and test binaries never share one), runs `hack/lab-up.sh` with
//! `LAB_NAME=rkt<index>`, `LAB_INDEX=<index>` and a state directory of its own, and waits until
//! both Nodes are Ready. Dropping the [`Lab`] (also while a test panics) runs `hack/lab-down.sh`,
//! which removes the pods, processes, namespaces, links and state. A lab left behind by a killed
//! test binary is removed by the next `lab-up.sh` of the same index (the state path is derived
//! from the index).
//!
//! Addresses, for index `i`: hosts on `10.250.i.0/24` (bridge `.1`, master `.10`, worker1 `.11`,
//! worker2 `.12`), worker1's pods in `10.251.i.0/24`, worker2's in `10.252.i.0/24`; the machine
//! routes to both pod networks through the bridge, so a test reaches pod IPs directly (e.g. with
//! reqwest). Nothing is sent anywhere else.
//!
//! The lab is secure as `make lab-up` makes it: certificates from rkube-pki in `<state>/pki`,
//! etcd with client-certificate authentication, the apiserver over HTTPS with Node,RBAC,
//! kubelets over HTTPS with their own identities; [`Lab::api`] is the admin.
//!
//! Crashes and restarts: [`Lab::kill`] (SIGKILL) or [`Lab::stop`] (SIGTERM, waiting until it is
//! gone) any process of a host, [`Lab::restart`] starts it again with the flags it was first
//! started with (`hack/lab-provision.sh restart <name>`) and waits until it is healthy.
//!
//! Needs root, etcd, containerd, runc, the CNI plugins, busybox-static, curl and nsenter: a
//! missing one fails the start naming `make deps`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::api::Api;
use crate::paths::{binary, repo_root};
use crate::process::run;
use crate::wait::eventually;

/// The lab indexes the tests use (`make lab-up` uses 0).
const TEST_INDEXES: std::ops::RangeInclusive<u8> = 100..=199;
/// How long both Nodes may take to report Ready after `lab-up.sh` returns.
const NODES_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The two workers of a lab.
pub const WORKERS: [&str; 2] = ["worker1", "worker2"];

/// Settings of a lab, passed to `hack/lab-up.sh` (see `hack/lab-provision.sh`).
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// kubelet `--node-lease-renew-interval`, seconds.
    pub lease_renew_seconds: u32,
    /// controller-manager `--node-monitor-period`, e.g. `1s`.
    pub node_monitor_period: String,
    /// controller-manager `--node-monitor-grace-period`, e.g. `6s`.
    pub node_monitor_grace: String,
    /// controller-manager `--pod-eviction-timeout`, e.g. `4s`.
    pub pod_eviction_timeout: String,
    /// controller-manager `--node-eviction-rate` (nodes per second).
    pub node_eviction_rate: String,
    /// controller-manager `--podgc-orphan-quarantine`, e.g. `2s`.
    pub podgc_quarantine: String,
    /// A highly available control plane (`LAB_HA=1`): three masters (`master`, `master2`,
    /// `master3`), each with an etcd member, an apiserver, a controller-manager and a scheduler
    /// (leader-elected), behind HAProxy on the host `lb`, which [`Lab::url`] names.
    pub ha: bool,
    /// With `ha`: the leader election's lease duration, renew deadline and retry period
    /// (`LEADER_ELECT_TIMING`, e.g. `"6s 4s 1s"`).
    pub leader_election_timing: String,
}

impl Default for LabOptions {
    /// Quick heartbeats and the node lifecycle defaults of rkube (40 s grace, 5 min eviction);
    /// one master, or the HA control plane when `RKUBE_LAB_HA=1` (to run the lab scenarios on
    /// it: `RKUBE_LAB_HA=1 cargo test -p rkube-tests --test e2e_lab`).
    fn default() -> LabOptions {
        LabOptions {
            lease_renew_seconds: 1,
            node_monitor_period: "1s".into(),
            node_monitor_grace: "40s".into(),
            pod_eviction_timeout: "5m".into(),
            node_eviction_rate: "0.1".into(),
            podgc_quarantine: "40s".into(),
            ha: std::env::var("RKUBE_LAB_HA").is_ok_and(|value| value == "1"),
            leader_election_timing: "15s 10s 2s".into(),
        }
    }
}

/// A running lab. Dropping it takes the whole lab down.
pub struct Lab {
    /// The lab's name: the prefix of its namespaces (`<name>-master`, ...) and links.
    pub name: String,
    /// The lab's index: its networks are `10.250.<index>.0/24` and so on.
    pub index: u8,
    state: PathBuf,
    options: LabOptions,
    up: bool,
    // Held (flock) while the lab exists; released last, after lab-down.
    _lock: File,
}

/// The directory for lab state: `/dev/shm` when there is one (fast), else the temp dir.
fn state_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("RKUBE_TEST_TMPDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() }
}

/// The lock file of lab index `index`.
fn lock_index(index: u8) -> anyhow::Result<Option<File>> {
    let path = state_root().join(format!("rkube-lab-t{index}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok(file.try_lock().is_ok().then_some(file))
}

/// The name and state directory of test lab `index`.
fn lab_paths(index: u8) -> (String, PathBuf) {
    (format!("rkt{index}"), state_root().join(format!("rkube-lab-t{index}")))
}

/// Takes the first free test index, returning it and its lock.
///
/// Labs left behind by test binaries that were killed (no one holds their lock, but their
/// state or namespaces exist) are taken down on the way.
fn take_index() -> anyhow::Result<(u8, File)> {
    let count = (*TEST_INDEXES.end() - *TEST_INDEXES.start()) as usize + 1;
    // Start at a place that differs between test binaries, so they rarely contend.
    let offset = std::process::id() as usize % count;
    let mut chosen = None;
    for step in 0..count {
        let index = *TEST_INDEXES.start() + ((offset + step) % count) as u8;
        let Some(lock) = lock_index(index)? else { continue };
        let (name, state) = lab_paths(index);
        let netns = Path::new("/run/netns").join(format!("{name}-master"));
        if state.exists() || netns.exists() {
            let mut down = Command::new(repo_root().join("hack").join("lab-down.sh"));
            down.env("LAB_NAME", &name).env("LAB_STATE", &state);
            run(&mut down, &format!("hack/lab-down.sh of the stale lab {name}"))?;
        }
        if chosen.is_none() {
            chosen = Some((index, lock));
        }
    }
    chosen.ok_or_else(|| anyhow::anyhow!("every lab index in {TEST_INDEXES:?} is taken"))
}

impl Lab {
    /// Brings up a lab with `options` and waits until both workers' Nodes are Ready.
    ///
    /// # Panics
    /// When not running as root, or when the rkube binaries have not been built.
    pub async fn start(options: LabOptions) -> anyhow::Result<Lab> {
        let uid = run(Command::new("id").arg("-u"), "id -u")?;
        assert_eq!(uid.trim(), "0", "the lab tests must run as root (network namespaces, containerd)");
        let bin_dir = binary("rkube-apiserver").parent().map(Path::to_path_buf).unwrap_or_default();
        for name in ["rkube-controller-manager", "rkube-scheduler", "rkubelet", "rkubectl"] {
            binary(name);
        }
        let (index, lock) = take_index()?;
        let (name, state) = lab_paths(index);
        let mut lab = Lab { name, index, state, options, up: false, _lock: lock };
        let mut command = lab.script("lab-up.sh");
        command.env("BIN_DIR", &bin_dir);
        lab.up = true;
        tokio::task::spawn_blocking(move || run(&mut command, "hack/lab-up.sh")).await??;
        let api = lab.api();
        eventually(NODES_READY_TIMEOUT, "both lab Nodes to be Ready", || {
            let api = api.clone();
            async move {
                let mut ready = 0;
                for worker in WORKERS {
                    let (status, node) = api.get(&format!("/api/v1/nodes/{worker}")).await;
                    if status.is_success() && node_ready(&node) == Some("True") {
                        ready += 1;
                    }
                }
                (ready == WORKERS.len()).then_some(())
            }
        })
        .await;
        Ok(lab)
    }

    /// `hack/<script>` with this lab's environment.
    fn script(&self, script: &str) -> Command {
        let o = &self.options;
        let mut command = Command::new(repo_root().join("hack").join(script));
        command
            .env("LAB_NAME", &self.name)
            .env("LAB_INDEX", self.index.to_string())
            .env("LAB_STATE", &self.state)
            .env("LEASE_RENEW", o.lease_renew_seconds.to_string())
            .env("SYNC_FREQUENCY", "2")
            .env("NODE_MONITOR_PERIOD", &o.node_monitor_period)
            .env("NODE_MONITOR_GRACE", &o.node_monitor_grace)
            .env("POD_EVICTION_TIMEOUT", &o.pod_eviction_timeout)
            .env("NODE_EVICTION_RATE", &o.node_eviction_rate)
            .env("PODGC_QUARANTINE", &o.podgc_quarantine)
            .env("LAB_HA", if o.ha { "1" } else { "0" })
            .env("LEADER_ELECT_TIMING", &o.leader_election_timing);
        command
    }

    /// The address of `host` (`master`, `worker1` or `worker2`; with `ha` also `lb`, `master2`
    /// and `master3`).
    pub fn host_ip(&self, host: &str) -> String {
        let last = match host {
            "master" => 10,
            "worker1" => 11,
            "worker2" => 12,
            "lb" if self.options.ha => 9,
            "master2" if self.options.ha => 13,
            "master3" if self.options.ha => 14,
            other => panic!("no host {other} in the lab"),
        };
        format!("10.250.{}.{last}", self.index)
    }

    /// The pod network of `worker` (`worker1` or `worker2`).
    pub fn pod_cidr(&self, worker: &str) -> String {
        match worker {
            "worker1" => format!("10.251.{}.0/24", self.index),
            "worker2" => format!("10.252.{}.0/24", self.index),
            other => panic!("no worker {other} in the lab"),
        }
    }

    /// The masters: `master`, and with `ha` also `master2` and `master3`.
    pub fn masters(&self) -> &'static [&'static str] {
        if self.options.ha { &["master", "master2", "master3"] } else { &["master"] }
    }

    /// The apiserver's URL, `https://10.250.<index>.10:6443` (with `ha` the load balancer's,
    /// `https://10.250.<index>.9:6443`), reached through the host's bridge.
    pub fn url(&self) -> String {
        let host = if self.options.ha { "lb" } else { "master" };
        format!("https://{}:6443", self.host_ip(host))
    }

    /// Runs `etcdctl <args>` against every etcd member of the lab (as the apiserver's etcd
    /// client) and returns its stdout.
    pub async fn etcdctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let endpoints: Vec<String> =
            self.masters().iter().map(|m| format!("https://{}:2379", self.host_ip(m))).collect();
        let pki = self.pki();
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg(format!("--cacert={}", pki.join("etcd-ca.crt").display()))
            .arg(format!("--cert={}", pki.join("apiserver-etcd-client.crt").display()))
            .arg(format!("--key={}", pki.join("apiserver-etcd-client.key").display()))
            .arg("--command-timeout=10s")
            .args(args);
        let what = format!("etcdctl {}", args.join(" "));
        tokio::task::spawn_blocking(move || run(&mut command, &what)).await?
    }

    /// A client for the lab's apiserver, as its admin (the client certificate of the
    /// kubeconfig `lab-up.sh` wrote: `kubernetes-admin` in `system:masters`).
    ///
    /// # Panics
    /// When the kubeconfig cannot be read.
    pub fn api(&self) -> Api {
        Api::with_client(&self.url(), self.admin_client())
    }

    /// An HTTPS client that trusts the lab's CA and presents the admin's certificate.
    ///
    /// # Panics
    /// When the kubeconfig cannot be read.
    pub fn admin_client(&self) -> reqwest::Client {
        crate::certs::kubeconfig_client(&self.kubeconfig()).expect("the lab's admin kubeconfig")
    }

    /// An HTTPS client that trusts the lab's CA and presents no certificate (anonymous).
    ///
    /// # Panics
    /// When the CA cannot be read.
    pub fn anonymous_client(&self) -> reqwest::Client {
        let ca = std::fs::read_to_string(self.pki().join("ca.crt")).expect("the lab's CA");
        crate::certs::client_from_pem(&ca, None)
    }

    /// The kubeconfig `lab-up.sh` wrote for the lab.
    pub fn kubeconfig(&self) -> PathBuf {
        self.state.join("kubeconfig")
    }

    /// The pid of `component` (`kubelet`, `containerd`, `apiserver`, `etcd`,
    /// `controller-manager`, `scheduler`) of `host`, from its pid file.
    pub fn pid(&self, host: &str, component: &str) -> anyhow::Result<u32> {
        let pid_file = self.state.join(host).join(format!("{component}.pid"));
        let pid = std::fs::read_to_string(&pid_file).with_context(|| format!("cannot read {}", pid_file.display()))?;
        pid.trim().parse().with_context(|| format!("bad pid in {}: {pid:?}", pid_file.display()))
    }

    /// Kills `component` of `host` with SIGKILL, as a crash would (it does not wait for it to
    /// be gone; [`Lab::restart`] does).
    pub fn kill(&self, host: &str, component: &str) -> anyhow::Result<()> {
        let pid = self.pid(host, component)?.to_string();
        run(Command::new("kill").args(["-KILL", &pid]), &format!("kill {component} of {host}"))?;
        Ok(())
    }

    /// Stops `component` of `host` the polite way, SIGTERM, and waits (up to `limit`) until
    /// its process is gone.
    pub async fn stop(&self, host: &str, component: &str, limit: Duration) -> anyhow::Result<()> {
        let pid = self.pid(host, component)?;
        run(Command::new("kill").args(["-TERM", &pid.to_string()]), &format!("kill -TERM {component} of {host}"))?;
        let deadline = tokio::time::Instant::now() + limit;
        while process_alive(pid) {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{component} of {host} (pid {pid}) still runs {limit:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts `component` of `host` again with the flags it was first started with
    /// (`hack/lab-provision.sh restart <component>` in the host's namespace; killed first if it
    /// still runs) and waits until it is healthy (`/healthz`, `/readyz` for the apiserver,
    /// `/health` for etcd).
    pub async fn restart(&self, host: &str, component: &str) -> anyhow::Result<()> {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}-{host}", self.name))
            .arg(repo_root().join("hack").join("lab-provision.sh"))
            .args(["restart", component])
            .env("LAB_STATE", self.state.join(host));
        let what = format!("restart {component} on {host}");
        tokio::task::spawn_blocking(move || run(&mut command, &what)).await??;
        Ok(())
    }

    /// Powers `worker` off, as far as the cluster can tell: its kubelet, rkube-proxy and
    /// containerd are killed and every container of its pods with them
    /// (`hack/lab-provision.sh stop` in its namespace). Its state directory stays for
    /// [`Lab::power_on`].
    pub fn power_off(&self, worker: &str) -> anyhow::Result<()> {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}-{worker}", self.name))
            .arg(repo_root().join("hack").join("lab-provision.sh"))
            .arg("stop")
            .env("LAB_STATE", self.state.join(worker));
        run(&mut command, &format!("power off {worker}"))?;
        Ok(())
    }

    /// Boots `worker` again after [`Lab::power_off`]: containerd, the kubelet and rkube-proxy
    /// start as `hack/lab-up.sh` first started them (`hack/lab-provision.sh worker`), and the
    /// kubelet finds its pods gone.
    pub async fn power_on(&self, worker: &str) -> anyhow::Result<()> {
        let other = WORKERS.iter().find(|w| **w != worker).copied().unwrap_or("worker1");
        let mut command = self.script("lab-provision.sh");
        command
            .arg("worker")
            .env("BIN_DIR", binary("rkubelet").parent().map(Path::to_path_buf).unwrap_or_default())
            .env("LAB_STATE", self.state.join(worker))
            .env("PKI_DIR", self.pki())
            .env("NODE_IP", self.host_ip(worker))
            .env("NODE_NAME", worker)
            .env("POD_CIDR", self.pod_cidr(worker))
            .env("API_URL", self.url())
            .env("LAB_ROUTES", format!("{}={}", self.pod_cidr(other), self.host_ip(other)))
            .env("TEST_IMAGE_TAR", self.state.join("busybox-oci.tar"));
        let mut inside = Command::new("nsenter");
        inside
            .arg(format!("--net=/run/netns/{}-{worker}", self.name))
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            if let Some(value) = value {
                inside.env(key, value);
            }
        }
        let what = format!("power on {worker}");
        tokio::task::spawn_blocking(move || run(&mut inside, &what)).await??;
        Ok(())
    }

    /// The uids of the pods with a running container in `worker`'s containerd (container ids
    /// begin with their pod's uid).
    pub async fn running_pod_uids(&self, worker: &str) -> anyhow::Result<std::collections::BTreeSet<String>> {
        let address = std::fs::read_to_string(self.state.join(worker).join("containerd.address"))
            .with_context(|| format!("{worker} has no containerd.address"))?;
        let mut command = Command::new("ctr");
        command.args(["--address", address.trim(), "-n", "rkube", "tasks", "list"]);
        let what = format!("ctr tasks list on {worker}");
        let tasks = tokio::task::spawn_blocking(move || run(&mut command, &what)).await??;
        Ok(tasks
            .lines()
            .skip(1)
            .filter(|line| line.split_whitespace().nth(2) == Some("RUNNING"))
            .filter_map(|line| line.get(..36))
            .map(String::from)
            .collect())
    }

    /// Starts `worker`'s kubelet again with its flags; see [`Lab::restart`].
    pub async fn restart_kubelet(&self, worker: &str) -> anyhow::Result<()> {
        self.restart(worker, "kubelet").await
    }

    /// Runs `rkubectl --kubeconfig <the lab's kubeconfig> <args>` and returns its stdout; fails
    /// with its output when it does not succeed.
    pub async fn rkubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(binary("rkubectl"));
        command.arg("--kubeconfig").arg(self.kubeconfig()).args(args).env_remove("KUBECONFIG");
        let what = format!("rkubectl {}", args.join(" "));
        tokio::task::spawn_blocking(move || run(&mut command, &what)).await?
    }

    /// The last `lines` lines of the log of `component` on `host`, for failure messages.
    pub fn log_tail(&self, host: &str, component: &str, lines: usize) -> String {
        let text = crate::process::read_log(&self.state.join(host).join(format!("{component}.log")));
        crate::process::tail(&text, lines)
    }

    /// The logs of every component, for a failure message.
    pub fn all_logs(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut parts = Vec::new();
        for master in self.masters() {
            parts.extend(["etcd", "apiserver", "controller-manager", "scheduler"].map(|c| (*master, c)));
        }
        if self.options.ha {
            parts.push(("lb", "haproxy"));
        }
        if let Some(first) = self.masters().first() {
            parts.push((*first, "dns"));
        }
        parts.extend([("worker1", "kubelet"), ("worker1", "proxy"), ("worker2", "kubelet"), ("worker2", "proxy")]);
        for (host, component) in parts {
            out.push_str(&format!("--- {host} {component}:\n{}\n", self.log_tail(host, component, lines)));
        }
        out
    }

    /// Fetches `url` with curl from inside the network namespace of pod `uid`
    /// (`/run/netns/rkube-<uid>`), as a program in that pod would.
    pub async fn fetch_from_pod(&self, uid: &str, url: &str) -> anyhow::Result<String> {
        self.curl_from_pod(uid, &["-fsS", "-m", "5", url].map(String::from)).await
    }

    /// Runs `curl <args>` inside the network namespace of pod `uid` and returns its output.
    pub async fn curl_from_pod(&self, uid: &str, args: &[String]) -> anyhow::Result<String> {
        let netns = format!("--net=/run/netns/rkube-{uid}");
        let args = args.to_vec();
        tokio::task::spawn_blocking(move || {
            let what = format!("curl {}", args.join(" "));
            run(Command::new("nsenter").arg(netns).arg("curl").args(&args), &what)
        })
        .await?
    }

    /// The lab's certificates and kubeconfigs (made by rkube-pki in `lab-up.sh`).
    pub fn pki(&self) -> PathBuf {
        self.state.join("pki")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.up {
            return;
        }
        match self.script("lab-down.sh").output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "hack/lab-down.sh for lab {} failed ({}): {}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => eprintln!("cannot run hack/lab-down.sh for lab {}: {error}", self.name),
        }
    }
}

/// Whether process `pid` runs (a zombie, killed but not yet reaped, does not).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// The status of a Node's Ready condition (`True`, `False`, `Unknown`), if it has one.
pub fn node_ready(node: &Value) -> Option<&str> {
    node["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?["status"].as_str()
}
