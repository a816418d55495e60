//! A runtime that runs nothing: hollow pods for scale tests and for testing the kubelet itself.
//!
//! What it keeps true (tests below):
//! - every container of a synced pod is `Running` at once, and stays so until the pod is killed;
//!   its init containers have exited 0 (`Completed`) by then;
//! - each pod gets its own IP from the node's pod CIDR (`.0` and the gateway `.1` are never
//!   handed out), and a killed pod's IP is free again;
//! - with [`FakeConfig::fail_start`], every container start fails with `RunContainerError`;
//! - a pod annotated `fake.rkube.dev/exit-code: "<n>"` has containers that exit at once with
//!   code `n` (reason `Completed` for 0, else `Error`), to test Succeeded and Failed pods.
//!
//! - with [`FakeConfig::log_dir`], each container that "ran" has an empty log file where the
//!   kubelet's log server looks for it, so `kubectl logs` of a hollow pod answers 200 with
//!   nothing, as for a container that printed nothing; a killed pod's logs are removed.
//!
//! Not promised: restarts or probes (the kubelet runs none against fake pods); nothing is
//! persisted, so after a kubelet restart the fake "starts" the pods again (with new start times).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use rkube_informer::ObjectKey;

use super::{ContainerState, ContainerStatus, PodStatus, Runtime, RuntimeError, Terminated};

/// The annotation that makes the fake's containers exit with the given code.
pub const EXIT_CODE_ANNOTATION: &str = "fake.rkube.dev/exit-code";

/// How the fake runtime behaves.
#[derive(Clone, Debug, Default)]
pub struct FakeConfig {
    /// Pod IPs come from this IPv4 CIDR (e.g. `10.244.1.0/24`); `None`: pods get no IP.
    pub pod_cidr: Option<PodCidr>,
    /// Fail every container start (reason `RunContainerError`).
    pub fail_start: bool,
    /// Where container logs live (`<root-dir>/pods`); `None`: no log files are made.
    pub log_dir: Option<PathBuf>,
}

/// An IPv4 pod CIDR, e.g. `10.244.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodCidr {
    network: u32,
    prefix: u8,
}

impl PodCidr {
    /// Parses `a.b.c.d/n` with `n` between 8 and 30; host bits are cleared.
    pub fn parse(text: &str) -> Result<PodCidr, String> {
        let (address, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR (a.b.c.d/n)"))?;
        let address: Ipv4Addr = address.parse().map_err(|error| format!("{text:?}: {error}"))?;
        let prefix: u8 = prefix.parse().map_err(|error| format!("{text:?}: prefix: {error}"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{text:?}: prefix must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(PodCidr { network: u32::from(address) & mask, prefix })
    }

    /// The `offset`-th address of the range, if it is a usable pod address (not the network,
    /// the gateway `.1` or the broadcast address).
    fn host(&self, offset: u32) -> Option<Ipv4Addr> {
        let size = 1u32 << (32 - u32::from(self.prefix));
        (offset >= 2 && offset < size - 1).then(|| Ipv4Addr::from(self.network + offset))
    }
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

struct FakePod {
    ip: Option<(u32, Ipv4Addr)>,
    status: PodStatus,
    /// The pod's log directory, when the fake made one.
    logs: Option<PathBuf>,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, FakePod>,
    used_offsets: BTreeSet<u32>,
    next_id: u64,
}

/// The fake runtime (see the module docs).
pub struct FakeRuntime {
    config: FakeConfig,
    state: Mutex<State>,
    // Nothing changes on its own in the fake; kept so that `events` has a sender.
    events: tokio::sync::broadcast::Sender<String>,
}

impl FakeRuntime {
    /// A fake runtime with `config`.
    pub fn new(config: FakeConfig) -> FakeRuntime {
        FakeRuntime { config, state: Mutex::new(State::default()), events: tokio::sync::broadcast::channel(16).0 }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An empty `0.log` for each container that ran, in the layout the log server reads
    /// (`<namespace>_<pod>_<uid>/<container>/0.log`); best effort, as a hollow node's logs are.
    fn write_empty_logs(&self, pod: &Pod, uid: &str, containers: &[ContainerStatus]) -> Option<PathBuf> {
        let root = self.config.log_dir.as_ref()?;
        let key = ObjectKey::of(pod);
        let dir = root.join(format!("{}_{}_{uid}", key.namespace().unwrap_or_default(), key.name()));
        for container in containers.iter().filter(|c| !matches!(c.state, ContainerState::Waiting { .. })) {
            let container_dir = dir.join(&container.name);
            if let Err(error) = std::fs::create_dir_all(&container_dir)
                .and_then(|()| std::fs::File::create(container_dir.join("0.log")).map(drop))
            {
                tracing::warn!(%error, dir = %container_dir.display(), "fake runtime: cannot create a log file");
            }
        }
        Some(dir)
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn healthy(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn sync_pod(&self, pod: &Pod) -> Result<(), RuntimeError> {
        let uid = pod.metadata.uid.clone().ok_or_else(|| RuntimeError::NoUid(ObjectKey::of(pod)))?;
        let mut state = self.state();
        if state.pods.contains_key(&uid) {
            return Ok(()); // idempotent: already "running" (or already failed)
        }
        let ip = match &self.config.pod_cidr {
            None => None,
            Some(cidr) => {
                let mut offset = 2;
                while state.used_offsets.contains(&offset) {
                    offset += 1;
                }
                let ip = cidr.host(offset).ok_or_else(|| RuntimeError::Ipam {
                    pod: ObjectKey::of(pod),
                    message: format!("no free address left in {cidr}"),
                })?;
                state.used_offsets.insert(offset);
                Some((offset, ip))
            }
        };
        let exit_code = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(EXIT_CODE_ANNOTATION))
            .and_then(|code| code.parse::<i32>().ok());
        let now = Timestamp::now();
        let mut containers = Vec::new();
        let mut failure = None;
        // Init containers "ran" and exited 0 at once (unless starts fail: then none ran).
        let init_containers = pod.spec.as_ref().and_then(|spec| spec.init_containers.as_deref()).unwrap_or_default();
        for container in init_containers.iter().filter(|_| !self.config.fail_start) {
            state.next_id += 1;
            containers.push(ContainerStatus {
                name: container.name.clone(),
                image: container.image.clone().unwrap_or_default(),
                container_id: Some(format!("fake://{:016x}", state.next_id)),
                state: ContainerState::Terminated(Terminated {
                    exit_code: 0,
                    reason: "Completed".into(),
                    started_at: Some(now),
                    finished_at: now,
                }),
                restart_count: 0,
                last_terminated: None,
            });
        }
        for container in pod.spec.as_ref().map(|spec| spec.containers.as_slice()).unwrap_or_default() {
            state.next_id += 1;
            let state_now = if self.config.fail_start {
                let message = "fake runtime configured to fail container starts".to_string();
                failure.get_or_insert_with(|| RuntimeError::StartContainer {
                    pod: ObjectKey::of(pod),
                    container: container.name.clone(),
                    message: message.clone(),
                });
                ContainerState::Waiting { reason: "RunContainerError".into(), message: Some(message) }
            } else if let Some(exit_code) = exit_code {
                ContainerState::Terminated(Terminated {
                    exit_code,
                    reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
                    started_at: Some(now),
                    finished_at: now,
                })
            } else {
                ContainerState::Running { started_at: now }
            };
            containers.push(ContainerStatus {
                name: container.name.clone(),
                image: container.image.clone().unwrap_or_default(),
                container_id: Some(format!("fake://{:016x}", state.next_id)),
                state: state_now,
                restart_count: 0,
                last_terminated: None,
            });
        }
        let logs = self.write_empty_logs(pod, &uid, &containers);
        let status = PodStatus { pod_ip: ip.map(|(_, ip)| ip.to_string()), containers };
        state.pods.insert(uid, FakePod { ip, status, logs });
        failure.map_or(Ok(()), Err)
    }

    async fn pod_status(&self, uid: &str) -> Result<Option<PodStatus>, RuntimeError> {
        Ok(self.state().pods.get(uid).map(|pod| pod.status.clone()))
    }

    async fn kill_pod(&self, uid: &str, _grace: Duration) -> Result<(), RuntimeError> {
        let mut state = self.state();
        let Some(pod) = state.pods.remove(uid) else { return Ok(()) };
        if let Some((offset, _)) = pod.ip {
            state.used_offsets.remove(&offset);
        }
        if let Some(dir) = pod.logs {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    async fn pod_uids(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self.state().pods.keys().cloned().collect())
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.events.subscribe()
    }

    async fn exec(
        &self,
        _uid: &str,
        _container: &str,
        _command: &[String],
        _timeout: Duration,
    ) -> Result<i32, RuntimeError> {
        Ok(0) // hollow containers pass every exec probe
    }

    async fn kill_container(&self, _uid: &str, _container: &str, _grace: Duration) -> Result<(), RuntimeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(uid: &str, annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("p-{uid}")),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    image: Some("busybox".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn runtime(cidr: &str) -> FakeRuntime {
        FakeRuntime::new(FakeConfig {
            pod_cidr: Some(PodCidr::parse(cidr).expect("valid cidr")),
            ..FakeConfig::default()
        })
    }

    #[tokio::test]
    async fn synced_pods_run_with_distinct_ips_and_a_killed_pods_ip_is_reused() {
        let fake = runtime("10.1.2.0/24");
        fake.sync_pod(&pod("a", &[])).await.expect("sync a");
        fake.sync_pod(&pod("b", &[])).await.expect("sync b");
        let a = fake.pod_status("a").await.expect("status").expect("a runs");
        let b = fake.pod_status("b").await.expect("status").expect("b runs");
        assert_eq!(a.pod_ip.as_deref(), Some("10.1.2.2"));
        assert_eq!(b.pod_ip.as_deref(), Some("10.1.2.3"));
        assert!(matches!(a.containers[0].state, ContainerState::Running { .. }));
        fake.kill_pod("a", Duration::ZERO).await.expect("kill");
        assert!(fake.pod_status("a").await.expect("status").is_none());
        fake.sync_pod(&pod("c", &[])).await.expect("sync c");
        let c = fake.pod_status("c").await.expect("status").expect("c runs");
        assert_eq!(c.pod_ip.as_deref(), Some("10.1.2.2"));
    }

    #[tokio::test]
    async fn sync_is_idempotent() {
        let fake = runtime("10.1.2.0/24");
        fake.sync_pod(&pod("a", &[])).await.expect("sync");
        let first = fake.pod_status("a").await.expect("status");
        fake.sync_pod(&pod("a", &[])).await.expect("sync again");
        assert_eq!(first, fake.pod_status("a").await.expect("status"));
    }

    #[tokio::test]
    async fn a_full_cidr_is_an_ipam_error() {
        let fake = runtime("10.1.2.0/30"); // only .2 is usable
        fake.sync_pod(&pod("a", &[])).await.expect("sync a");
        assert!(matches!(fake.sync_pod(&pod("b", &[])).await, Err(RuntimeError::Ipam { .. })));
    }

    #[tokio::test]
    async fn exit_code_annotation_terminates_containers() {
        let fake = runtime("10.1.2.0/24");
        fake.sync_pod(&pod("a", &[(EXIT_CODE_ANNOTATION, "3")])).await.expect("sync");
        let status = fake.pod_status("a").await.expect("status").expect("known");
        match &status.containers[0].state {
            ContainerState::Terminated(terminated) => {
                assert_eq!(terminated.exit_code, 3);
                assert_eq!(terminated.reason, "Error");
            }
            other => panic!("expected terminated, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn fail_start_reports_run_container_error() {
        let fake = FakeRuntime::new(FakeConfig { fail_start: true, ..FakeConfig::default() });
        assert!(matches!(fake.sync_pod(&pod("a", &[])).await, Err(RuntimeError::StartContainer { .. })));
        let status = fake.pod_status("a").await.expect("status").expect("known");
        assert!(
            matches!(&status.containers[0].state, ContainerState::Waiting { reason, .. } if reason == "RunContainerError")
        );
    }

    #[test]
    fn cidr_parsing_clears_host_bits_and_rejects_nonsense() {
        assert_eq!(PodCidr::parse("10.1.2.77/24").expect("valid").to_string(), "10.1.2.0/24");
        assert!(PodCidr::parse("10.1.2.0").is_err());
        assert!(PodCidr::parse("10.1.2.0/31").is_err());
        assert!(PodCidr::parse("nonsense/24").is_err());
    }
}
