//! Harness for the node tests: the real `rkubelet` binary against a [`Cluster`].
//!
//! [`Kubelet::start`] writes a kubeconfig for the cluster, starts `rkubelet` on a free port
//! with a private root dir, and returns once its `/healthz` answers (registration and the pod
//! cache follow shortly after; tests wait for what they need with `eventually`). The process
//! is killed when the value is dropped; [`Kubelet::kill`] and [`Kubelet::restart`] simulate a
//! crash and a restart with the same flags.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cluster::Cluster;
use crate::paths::{binary, temp_dir};
use crate::ports::{free_port, log_shows_port_in_use};
use crate::process::{Process, read_log, spawn_until_healthy, tail};

/// How long the kubelet may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a start is retried on a new port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// The harness's `--sync-frequency`: every pod is synced again this often, changed or not. A
/// test that shows a resync does (or does not do) something watches at least this long.
pub const SYNC_FREQUENCY: Duration = Duration::from_secs(2);

/// A running `rkubelet`.
pub struct Kubelet {
    /// The node name it registers.
    pub node_name: String,
    /// The port of its `/healthz`, `/readyz` and `/metrics`.
    pub port: u16,
    root_dir: PathBuf,
    /// The CNI bridge to delete on drop.
    bridge: Option<String>,
    process: Option<Process>,
    program: PathBuf,
    args: Vec<String>,
    // Dropped after the process: the log and root dir outlive it.
    dir: tempfile::TempDir,
}

impl Kubelet {
    /// Starts `rkubelet --runtime fake --node-name <node_name>` against `cluster`, with
    /// `--node-ip 127.0.0.1`, a 1 s lease renew interval, [`SYNC_FREQUENCY`], a private root dir
    /// and a free port,
    /// followed by `extra_args` (e.g. `["--pod-cidr", "10.244.1.0/24"]`).
    ///
    /// # Panics
    /// When `rkubelet` has not been built (see [`crate::binary`]).
    pub async fn start_fake(cluster: &Cluster, node_name: &str, extra_args: &[&str]) -> anyhow::Result<Kubelet> {
        let mut args = vec!["--runtime", "fake"];
        args.extend_from_slice(extra_args);
        Kubelet::start(cluster, node_name, &args).await
    }

    /// Starts `rkubelet --runtime containerd` against `cluster` and `containerd`.
    pub async fn start_containerd(
        cluster: &Cluster,
        containerd: &Containerd,
        node_name: &str,
    ) -> anyhow::Result<Kubelet> {
        Kubelet::start_containerd_with(cluster, containerd, node_name, &[]).await
    }

    /// Like [`Kubelet::start_containerd`], with `extra_args` (e.g. `["--pod-cidr", ...]`: CNI
    /// networking; the bridge it makes is deleted when the kubelet is dropped).
    pub async fn start_containerd_with(
        cluster: &Cluster,
        containerd: &Containerd,
        node_name: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Kubelet> {
        let address = containerd.address.display().to_string();
        // The root dir (runc's state among it) lives in containerd's directory: the shims
        // write there until containerd's cleanup, which runs after the kubelet is dropped.
        let root_dir = containerd.dir.path().join(format!("kubelet-{node_name}"));
        let mut args = vec!["--runtime", "containerd", "--containerd-address", &address];
        args.extend_from_slice(extra_args);
        let mut kubelet = Kubelet::start_with_root(cluster, node_name, Some(root_dir), &args).await?;
        kubelet.bridge = extra_args
            .iter()
            .position(|arg| *arg == "--pod-cidr")
            .and_then(|at| extra_args.get(at + 1))
            .map(|cidr| bridge_name(cidr));
        Ok(kubelet)
    }

    /// Starts `rkubelet --node-name <node_name>` against `cluster` with `args` added to the
    /// harness's flags (kubeconfig, root dir, port, `--node-ip 127.0.0.1`, lease interval 1 s,
    /// [`SYNC_FREQUENCY`]); a `--kubeconfig` among `args` replaces the harness's anonymous one.
    pub async fn start(cluster: &Cluster, node_name: &str, extra_args: &[&str]) -> anyhow::Result<Kubelet> {
        Kubelet::start_with_root(cluster, node_name, None, extra_args).await
    }

    async fn start_with_root(
        cluster: &Cluster,
        node_name: &str,
        root_dir: Option<PathBuf>,
        extra_args: &[&str],
    ) -> anyhow::Result<Kubelet> {
        let program = binary("rkubelet");
        let dir = temp_dir("rkubelet-").context("cannot create a temporary directory for the kubelet")?;
        let kubeconfig = cluster.write_kubeconfig(dir.path())?;
        let root_dir = root_dir.unwrap_or_else(|| dir.path().join("root"));
        let mut kubelet = Kubelet {
            root_dir: root_dir.clone(),
            bridge: None,
            node_name: node_name.to_string(),
            port: 0,
            process: None,
            program,
            args: Vec::new(),
            dir,
        };
        let sync_frequency = SYNC_FREQUENCY.as_secs().to_string();
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            kubelet.port = free_port()?;
            // A test that brings its own credentials passes its own `--kubeconfig`.
            let own_kubeconfig = extra_args.contains(&"--kubeconfig");
            let mut args: Vec<String> = if own_kubeconfig {
                Vec::new()
            } else {
                vec!["--kubeconfig".to_string(), kubeconfig.display().to_string()]
            };
            args.extend(
                [
                    "--node-name",
                    node_name,
                    "--root-dir",
                    &root_dir.display().to_string(),
                    "--address",
                    "127.0.0.1",
                    "--port",
                    &kubelet.port.to_string(),
                    "--node-ip",
                    "127.0.0.1",
                    "--node-lease-renew-interval",
                    "1",
                    "--sync-frequency",
                    &sync_frequency,
                ]
                .iter()
                .map(ToString::to_string),
            );
            args.extend(extra_args.iter().map(ToString::to_string));
            kubelet.args = args;
            match kubelet.spawn_and_wait().await {
                Ok(()) => return Ok(kubelet),
                Err(error) if log_shows_port_in_use(&kubelet.log()) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("rkubelet did not start")))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("kubelet.log")
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let health = format!("{}/healthz", self.url());
        self.process =
            Some(spawn_until_healthy(&self.program, &self.args, &self.log_path(), &health, START_TIMEOUT).await?);
        Ok(())
    }

    /// The kubelet's process id while it runs (for its CPU time in `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|process| process.id())
    }

    /// Kills the kubelet (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Whether the kubelet process is still running (it has not exited on its own).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|process| process.exited().is_none())
    }

    /// Starts the kubelet again with the same flags (same node name, port and root dir),
    /// killing it first if it runs, and waits until `/healthz` answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn_and_wait().await
    }

    /// The kubelet's whole log (all runs).
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// The last `lines` lines of the kubelet's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// The kubelet's `--root-dir` (container logs are under `pods/`).
    pub fn root_dir(&self) -> PathBuf {
        self.root_dir.clone()
    }

    /// `http://127.0.0.1:<port>` (`https://` when started with `--tls-cert-file`), where
    /// `/healthz`, `/readyz` and `/metrics` are served.
    pub fn url(&self) -> String {
        let scheme = if self.args.iter().any(|a| a == "--tls-cert-file") { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The value of one sample on the kubelet's `/metrics`, named with its labels as the text
    /// format writes them (e.g. `kubelet_image_pulls_total{result="success"}`); 0 when absent.
    ///
    /// # Panics
    /// When `/metrics` does not answer.
    pub async fn metric(&self, sample: &str) -> f64 {
        let response = reqwest::get(format!("{}/metrics", self.url())).await.expect("GET /metrics");
        crate::component::sample_value(&response.text().await.expect("metrics body"), sample)
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.process = None;
        if let Some(bridge) = &self.bridge {
            let _ = std::process::Command::new("ip").args(["link", "delete", bridge]).output();
        }
    }
}

/// The bridge the kubelet's CNI set-up makes for `pod_cidr` (as `rkube_kubelet::cni` names it):
/// `rk` + the network address in hex.
pub fn bridge_name(pod_cidr: &str) -> String {
    let address = pod_cidr.split('/').next().unwrap_or_default();
    let octets: Vec<u8> = address.split('.').filter_map(|octet| octet.parse().ok()).collect();
    format!("rk{}", octets.iter().map(|octet| format!("{octet:02x}")).collect::<String>())
}

/// Whether the network namespace of pod `uid` (`/run/netns/rkube-<uid>`) exists.
pub fn pod_netns_exists(uid: &str) -> bool {
    std::path::Path::new("/run/netns").join(format!("rkube-{uid}")).exists()
}

/// The image name pods use for the test image (built by `hack/build-test-image.sh`).
pub const TEST_IMAGE: &str = "busybox-local:v1";

/// A private containerd (its own `--config`, root, state and socket, CRI disabled) with the
/// test image imported into the kubelet's namespace `rkube`.
///
/// Dropping it kills what still runs in `rkube` (tasks, containers) with `ctr`, then
/// containerd itself, so no shim or container outlives a test.
pub struct Containerd {
    /// containerd's gRPC socket, for `rkubelet --containerd-address`.
    pub address: PathBuf,
    process: Option<Process>,
    ctr: PathBuf,
    dir: tempfile::TempDir,
}

/// Finds a required program of the node tests, failing loudly with the fix.
fn node_tool(name: &str, candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .or_else(|| crate::paths::find_on_path(name))
        .unwrap_or_else(|| panic!("{name} not found (looked in {candidates:?} and PATH): run `make deps`"))
}

impl Containerd {
    /// Starts containerd as root with private directories and imports the test image.
    ///
    /// # Panics
    /// When containerd, ctr, runc or busybox-static is missing ("run `make deps`"), or when not
    /// running as root (containerd needs it).
    pub async fn start() -> anyhow::Result<Containerd> {
        let containerd = node_tool("containerd", &["/usr/bin/containerd"]);
        let ctr = node_tool("ctr", &["/usr/bin/ctr"]);
        node_tool("runc", &["/usr/sbin/runc", "/usr/bin/runc"]);
        node_tool("containerd-shim-runc-v2", &["/usr/bin/containerd-shim-runc-v2"]);
        let uid = std::process::Command::new("id").arg("-u").output()?;
        assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "the containerd tests must run as root");

        let dir = temp_dir("rkube-containerd-").context("cannot create a temporary directory for containerd")?;
        let base = dir.path().to_path_buf();
        let base = base.as_path();
        let address = base.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{address}\"\n[ttrpc]\n  address = \"{address}.ttrpc\"\n[debug]\n  address = \"\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
            root = base.join("root").display(),
            state = base.join("state").display(),
            address = address.display(),
            opt = base.join("opt").display(),
        );
        let config_path = base.join("config.toml");
        std::fs::write(&config_path, config)?;
        let log_path = base.join("containerd.log");
        let args = vec!["--config".to_string(), config_path.display().to_string()];
        let mut process = Process::spawn(&containerd, &args, &log_path)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.exited() {
                anyhow::bail!("containerd exited during start ({status}); log tail:\n{}", process.log_tail(40));
            }
            let ready = std::process::Command::new(&ctr)
                .arg("--address")
                .arg(&address)
                .arg("version")
                .output()
                .is_ok_and(|output| output.status.success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("containerd not answering after {START_TIMEOUT:?}; log tail:\n{}", process.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let containerd = Containerd { address, process: Some(process), ctr, dir };
        let image = base.join("busybox-oci.tar");
        let script = crate::paths::repo_root().join("hack").join("build-test-image.sh");
        let built = std::process::Command::new("bash").arg(&script).arg(&image).output()?;
        anyhow::ensure!(
            built.status.success(),
            "{} failed (run `make deps`): {}",
            script.display(),
            String::from_utf8_lossy(&built.stderr)
        );
        let imported = containerd.ctr(&["image", "import", &image.display().to_string()])?;
        anyhow::ensure!(
            imported.status.success(),
            "ctr image import failed: {}",
            String::from_utf8_lossy(&imported.stderr)
        );
        Ok(containerd)
    }

    /// Runs `ctr --address <socket> -n rkube <args>`.
    pub fn ctr(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        std::process::Command::new(&self.ctr)
            .arg("--address")
            .arg(&self.address)
            .args(["-n", "rkube"])
            .args(args)
            .output()
    }

    /// The IDs of the containers in namespace `rkube`.
    pub fn container_ids(&self) -> Vec<String> {
        self.ctr(&["containers", "list", "--quiet"])
            .map(|output| String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&read_log(&self.dir.path().join("containerd.log")), lines)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.process.is_none() {
            return;
        }
        for id in self.container_ids() {
            let _ = self.ctr(&["tasks", "kill", "--all", "--signal", "SIGKILL", &id]);
            let _ = self.ctr(&["tasks", "delete", "--force", &id]);
            let _ = self.ctr(&["containers", "delete", &id]);
            // Container IDs are `<pod uid>-<name>`: remove the pod's cgroups (leaf first).
            if let Some(uid) = id.get(..36) {
                remove_pod_cgroups(uid);
                let _ = std::process::Command::new("ip").args(["netns", "delete", &format!("rkube-{uid}")]).output();
            }
        }
        self.process = None;
    }
}

/// Removes `/sys/fs/cgroup/<hierarchy>/rkube/pod<uid>` and its (empty) children everywhere.
fn remove_pod_cgroups(uid: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for hierarchy in hierarchies.filter_map(Result::ok) {
        let pod = hierarchy.path().join("rkube").join(format!("pod{uid}"));
        if let Ok(children) = std::fs::read_dir(&pod) {
            for child in children.filter_map(Result::ok).filter(|child| child.path().is_dir()) {
                let _ = std::fs::remove_dir(child.path());
            }
        }
        let _ = std::fs::remove_dir(&pod);
    }
}
