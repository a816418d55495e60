//! The status manager: turns what the runtime reports into a pod's `status`, and writes it
//! through the `pods/status` subresource only when something changed.
//!
//! What it keeps true (tests below and in `test/tests/kubelet_fake.rs`):
//! - the phase follows Kubernetes' rules: Pending while a container waits, Running while one
//!   runs, Succeeded when all exited 0, Failed when one failed and none will restart;
//! - `PodScheduled`, `Initialized`, `ContainersReady` and `Ready` are always present, and a
//!   condition's `lastTransitionTime` moves only when its `status` changes;
//! - `startTime` is set once and kept;
//! - a status equal to the one the informer's cache shows is not written (no write per resync);
//! - writes carry a resourceVersion as precondition: first the cached pod's (one round trip
//!   when the cache is current, the usual case), then, after a 409, the one just read.
//!
//! Fields the kubelet does not own (e.g. `nominatedNodeName`, `qosClass`) are kept as they are.
//! A running container is ready when it has no readiness probe or its probe passes
//! ([`crate::probes`]).

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus as ApiPodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rkube_client::{Api, Client, PostParams, retry_on_conflict};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::runtime::{
    ContainerState, ContainerStatus as RuntimeContainerStatus, PodStatus as RuntimePodStatus, Terminated,
};

/// Computes the status the pod should have, starting from its current status (so fields the
/// kubelet does not own survive) and what the runtime reports (`None`: nothing runs yet).
/// A running container with a readiness probe is ready only if `readiness(name, container ID)`
/// says its probe passed.
///
/// The steps: init container statuses → container statuses → phase → conditions → IPs and
/// start time.
pub fn generate_pod_status(
    pod: &Pod,
    runtime: Option<&RuntimePodStatus>,
    host_ip: &str,
    now: Timestamp,
    readiness: &dyn Fn(&str, &str) -> bool,
) -> ApiPodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let restart_policy = spec.and_then(|spec| spec.restart_policy.as_deref()).unwrap_or("Always");
    let spec_init = spec.and_then(|spec| spec.init_containers.as_deref()).unwrap_or_default();
    let spec_containers = spec.map(|spec| spec.containers.as_slice()).unwrap_or_default();
    let reported = Reported { runtime, readiness, spec_init };

    let init_statuses: Vec<ApiContainerStatus> =
        spec_init.iter().map(|container| reported.status_of(container, "PodInitializing")).collect();
    let initialized = init_statuses.iter().all(exited_zero);
    let not_started = if initialized { "ContainerCreating" } else { "PodInitializing" };
    let container_statuses: Vec<ApiContainerStatus> =
        spec_containers.iter().map(|container| reported.status_of(container, not_started)).collect();
    // Ephemeral containers (`kubectl debug`) are reported apart and never ready; they count
    // for neither the phase nor the conditions.
    let ephemeral_statuses: Vec<ApiContainerStatus> = crate::runtime::ephemeral_containers(pod)
        .iter()
        .map(|container| ApiContainerStatus { ready: false, ..reported.status_of(container, "ContainerCreating") })
        .collect();
    let phase =
        init_phase(&init_statuses, restart_policy).unwrap_or_else(|| pod_phase(&container_statuses, restart_policy));
    let transitions = Transitions { old: old.conditions.as_deref().unwrap_or_default(), now };
    let conditions = transitions.conditions(&init_statuses, &container_statuses, phase);

    // A pod on the node's network has the node's IP, as on Kubernetes.
    let pod_ip = if spec.and_then(|spec| spec.host_network).unwrap_or(false) {
        runtime.is_some().then(|| host_ip.to_string())
    } else {
        runtime.and_then(|status| status.pod_ip.clone())
    };
    ApiPodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(container_statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        ephemeral_container_statuses: (!ephemeral_statuses.is_empty()).then_some(ephemeral_statuses),
        host_ip: Some(host_ip.into()),
        host_ips: Some(vec![HostIP { ip: host_ip.into() }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: old.start_time.clone().or(Some(Time(now))),
        ..old
    }
}

/// Whether the container exited 0 (a done init container).
fn exited_zero(status: &ApiContainerStatus) -> bool {
    status.state.as_ref().and_then(|state| state.terminated.as_ref()).is_some_and(|ended| ended.exit_code == 0)
}

/// What the runtime and the probes report, for turning a pod's containers into statuses.
struct Reported<'a> {
    runtime: Option<&'a RuntimePodStatus>,
    readiness: &'a dyn Fn(&str, &str) -> bool,
    /// The pod's init containers (a finished one counts as ready).
    spec_init: &'a [Container],
}

impl Reported<'_> {
    /// The status of `container`: what the runtime reports of it, or waiting with reason
    /// `not_started` when it reports nothing.
    fn status_of(&self, container: &Container, not_started: &str) -> ApiContainerStatus {
        let reported = self.runtime.and_then(|status| status.containers.iter().find(|c| c.name == container.name));
        match reported {
            Some(reported) => self.reported_status(container, reported),
            None => not_started_status(container, not_started),
        }
    }

    /// The status of `container` as the runtime reports it in `reported`.
    fn reported_status(&self, container: &Container, reported: &RuntimeContainerStatus) -> ApiContainerStatus {
        let running = matches!(reported.state, ContainerState::Running { .. });
        // A startup probe holds readiness back until it passes (see `probes`).
        let probed_ready = (container.readiness_probe.is_none() && container.startup_probe.is_none())
            || reported.container_id.as_deref().is_some_and(|id| (self.readiness)(&container.name, id));
        let last_state = reported.last_terminated.as_ref().map(|terminated| ApiContainerState {
            terminated: Some(terminated_state(terminated, None)),
            ..ApiContainerState::default()
        });
        // A finished init container counts as ready, as in Kubernetes.
        let completed = matches!(&reported.state, ContainerState::Terminated(ended) if ended.exit_code == 0);
        let is_init = self.spec_init.iter().any(|init| init.name == container.name);
        ApiContainerStatus {
            name: container.name.clone(),
            image: reported.image.clone(),
            image_id: String::new(),
            container_id: reported.container_id.clone(),
            ready: (running && probed_ready) || (is_init && completed),
            started: Some(running),
            restart_count: reported.restart_count,
            state: Some(api_state(&reported.state, reported.container_id.clone())),
            last_state,
            ..ApiContainerStatus::default()
        }
    }
}

/// The status of a container the runtime reports nothing of: waiting with `reason`.
fn not_started_status(container: &Container, reason: &str) -> ApiContainerStatus {
    ApiContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        ready: false,
        started: Some(false),
        state: Some(ApiContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: None }),
            ..ApiContainerState::default()
        }),
        ..ApiContainerStatus::default()
    }
}

/// The API's form of a runtime container state (`container_id` goes into `terminated`).
fn api_state(state: &ContainerState, container_id: Option<String>) -> ApiContainerState {
    match state {
        ContainerState::Waiting { reason, message } => ApiContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: message.clone() }),
            ..ApiContainerState::default()
        },
        ContainerState::Running { started_at } => ApiContainerState {
            running: Some(ContainerStateRunning { started_at: Some(Time(*started_at)) }),
            ..ApiContainerState::default()
        },
        ContainerState::Terminated(terminated) => ApiContainerState {
            terminated: Some(terminated_state(terminated, container_id)),
            ..ApiContainerState::default()
        },
    }
}

/// The conditions the kubelet owns.
const KUBELET_CONDITIONS: [&str; 4] = ["PodScheduled", "Initialized", "ContainersReady", "Ready"];

/// Builds conditions whose `lastTransitionTime` moves (to `now`) only when their status
/// changed from the one in `old`.
struct Transitions<'a> {
    old: &'a [PodCondition],
    now: Timestamp,
}

impl Transitions<'_> {
    /// `PodScheduled`, `Initialized`, `ContainersReady` and `Ready`, then the conditions owned
    /// by others (e.g. a scheduler's or a readiness gate's), kept as they are.
    fn conditions(
        &self,
        init_statuses: &[ApiContainerStatus],
        container_statuses: &[ApiContainerStatus],
        phase: &str,
    ) -> Vec<PodCondition> {
        let initialized = init_statuses.iter().all(exited_zero);
        let (ready, reason, message) = pod_readiness(container_statuses, initialized, phase);
        let mut conditions = vec![
            self.condition("PodScheduled", true, None, None),
            self.initialized(init_statuses),
            self.condition("ContainersReady", ready, reason.clone(), message.clone()),
            self.condition("Ready", ready, reason, message),
        ];
        conditions.extend(self.old.iter().filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str())).cloned());
        conditions
    }

    /// `Initialized`: true once every init container exited 0, else false naming the others.
    fn initialized(&self, init_statuses: &[ApiContainerStatus]) -> PodCondition {
        let incomplete: Vec<&str> =
            init_statuses.iter().filter(|status| !exited_zero(status)).map(|status| status.name.as_str()).collect();
        if incomplete.is_empty() {
            return self.condition("Initialized", true, None, None);
        }
        self.condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized".into()),
            Some(format!("containers with incomplete status: [{}]", incomplete.join(" "))),
        )
    }

    /// Condition `type_` with `status`, keeping the old transition time if the status is the same.
    fn condition(&self, type_: &str, status: bool, reason: Option<String>, message: Option<String>) -> PodCondition {
        let status = if status { "True" } else { "False" }.to_string();
        let previous = self.old.iter().find(|c| c.type_ == type_);
        let last_transition_time = match previous {
            Some(previous) if previous.status == status => previous.last_transition_time.clone(),
            _ => Some(Time(self.now)),
        };
        PodCondition { type_: type_.into(), status, reason, message, last_transition_time, ..PodCondition::default() }
    }
}

/// Whether the pod is ready (every container ready, init done), with the reason and message of
/// `ContainersReady` and `Ready` when it is not.
fn pod_readiness(
    container_statuses: &[ApiContainerStatus],
    initialized: bool,
    phase: &str,
) -> (bool, Option<String>, Option<String>) {
    let unready: Vec<&str> =
        container_statuses.iter().filter(|status| !status.ready).map(|status| status.name.as_str()).collect();
    if unready.is_empty() && !container_statuses.is_empty() && initialized {
        (true, None, None)
    } else if phase == "Succeeded" || phase == "Failed" {
        (false, Some("PodCompleted".to_string()), None)
    } else {
        (
            false,
            Some("ContainersNotReady".to_string()),
            Some(format!("containers with unready status: [{}]", unready.join(" "))),
        )
    }
}

fn terminated_state(terminated: &Terminated, container_id: Option<String>) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: terminated.exit_code,
        reason: Some(terminated.reason.clone()),
        started_at: terminated.started_at.map(Time),
        finished_at: Some(Time(terminated.finished_at)),
        container_id,
        ..ContainerStateTerminated::default()
    }
}

/// The phase while init containers are not all done (Kubernetes' `getPhase`): Failed when one
/// failed and the pod's policy is Never, else Pending; `None` once all exited 0.
fn init_phase(statuses: &[ApiContainerStatus], restart_policy: &str) -> Option<&'static str> {
    let failed = statuses.iter().any(|status| {
        let state = status.state.clone().unwrap_or_default();
        let ended = state
            .terminated
            .or_else(|| state.waiting.and(status.last_state.as_ref().and_then(|last| last.terminated.clone())));
        ended.is_some_and(|ended| ended.exit_code != 0)
    });
    let done = statuses.iter().all(|status| {
        status.state.as_ref().and_then(|state| state.terminated.as_ref()).is_some_and(|ended| ended.exit_code == 0)
    });
    match (done, failed) {
        (true, _) => None,
        (false, true) if restart_policy == "Never" => Some("Failed"),
        (false, _) => Some("Pending"),
    }
}

/// The phase of a pod whose init containers are done and whose containers are in `statuses`
/// (Kubernetes' `getPhase`).
fn pod_phase(statuses: &[ApiContainerStatus], restart_policy: &str) -> &'static str {
    // A container waiting to be restarted counts as stopped, with its last exit (Kubernetes'
    // getPhase does the same).
    let state = |status: &ApiContainerStatus| status.state.clone().unwrap_or_default();
    let ended = |status: &ApiContainerStatus| {
        state(status)
            .terminated
            .or_else(|| state(status).waiting.and(status.last_state.as_ref().and_then(|last| last.terminated.clone())))
    };
    let waiting = statuses.iter().filter(|status| state(status).waiting.is_some() && ended(status).is_none()).count();
    let running = statuses.iter().filter(|status| state(status).running.is_some()).count();
    let failed =
        statuses.iter().filter(|status| ended(status).is_some_and(|terminated| terminated.exit_code != 0)).count();
    let terminated = statuses.iter().filter(|status| ended(status).is_some()).count();
    if statuses.is_empty() || waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if terminated == statuses.len() {
        match restart_policy {
            "Always" => "Running", // about to be restarted
            "OnFailure" if failed > 0 => "Running",
            _ if failed > 0 => "Failed",
            _ => "Succeeded",
        }
    } else {
        "Pending"
    }
}

/// Writes pod statuses (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct StatusManager {
    client: Client,
    metrics: Arc<Metrics>,
}

impl StatusManager {
    /// A status manager writing through `client`.
    pub fn new(client: Client, metrics: Arc<Metrics>) -> StatusManager {
        StatusManager { client, metrics }
    }

    /// Writes `status` for `pod` unless `pod` (the cached copy) already shows it. Returns
    /// whether it wrote.
    ///
    /// # Errors
    /// [`Error::PodStatus`] when the apiserver refuses the write (after retrying conflicts). A
    /// pod that no longer exists, or that was replaced by one with another uid, is not an error.
    pub async fn set_status(&self, pod: &Pod, status: ApiPodStatus) -> Result<bool> {
        if pod.status.as_ref() == Some(&status) {
            return Ok(false);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let uid = pod.metadata.uid.clone();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        // The cached copy first: a status write is then one PUT, not a GET and a PUT. A stale
        // cache (or a pod replaced under the same name) is a 409, and the loop below reads it.
        let mut cached = pod.clone();
        cached.status = Some(status.clone());
        let written = match api.replace_status(name, &PostParams::default(), &cached).await {
            Ok(_) => Ok(true),
            Err(error) if error.is_conflict() => self.write_current(&api, name, uid.as_ref(), &status).await,
            Err(error) => Err(error),
        };
        match written {
            Ok(wrote) => {
                if wrote {
                    self.metrics.pod_status_writes.inc();
                }
                Ok(wrote)
            }
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(Error::PodStatus(error)),
        }
    }

    /// Writes `status` onto the pod `name` as the apiserver has it now (read, then PUT with
    /// its resourceVersion, again on a conflict), unless it is another pod than `uid` or shows
    /// `status` already. Returns whether it wrote.
    async fn write_current(
        &self,
        api: &Api<Pod>,
        name: &str,
        uid: Option<&String>,
        status: &ApiPodStatus,
    ) -> std::result::Result<bool, rkube_client::Error> {
        retry_on_conflict(|| async {
            let Some(mut current) = api.get_opt(name).await? else { return Ok(false) };
            if current.metadata.uid.as_ref() != uid || current.status.as_ref() == Some(status) {
                return Ok(false);
            }
            current.status = Some(status.clone());
            api.replace_status(name, &PostParams::default(), &current).await?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ContainerStatus;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(containers: &[&str], restart_policy: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: containers
                    .iter()
                    .map(|name| Container {
                        name: (*name).into(),
                        image: Some("busybox".into()),
                        ..Container::default()
                    })
                    .collect(),
                restart_policy: Some(restart_policy.into()),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn container(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            image: "busybox".into(),
            container_id: None,
            state,
            restart_count: 0,
            last_terminated: None,
        }
    }

    fn exited(code: i32) -> ContainerState {
        ContainerState::Terminated(Terminated {
            exit_code: code,
            reason: "Error".into(),
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
        })
    }

    fn condition(status: &ApiPodStatus, type_: &str) -> String {
        status.conditions.iter().flatten().find(|c| c.type_ == type_).map(|c| c.status.clone()).unwrap_or_default()
    }

    #[test]
    fn init_containers_gate_initialized_ready_and_the_phase() {
        let mut with_init = pod(&["app"], "Always");
        if let Some(spec) = with_init.spec.as_mut() {
            spec.init_containers = Some(vec![
                Container { name: "setup".into(), ..Container::default() },
                Container { name: "migrate".into(), ..Container::default() },
            ]);
        }
        let generate = |containers: Vec<ContainerStatus>, pod: &Pod| {
            let runtime = RuntimePodStatus { pod_ip: None, containers };
            generate_pod_status(pod, Some(&runtime), "10.0.0.1", Timestamp::UNIX_EPOCH, &|_, _| true)
        };
        let condition = |status: &ApiPodStatus, type_: &str| {
            status.conditions.iter().flatten().find(|c| c.type_ == type_).map(|c| c.status.clone())
        };
        let waiting_reason = |status: &ApiContainerStatus| {
            status.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone())
        };
        // The first init container runs: Pending, not Initialized, the rest waits.
        let running = ContainerState::Running { started_at: Timestamp::UNIX_EPOCH };
        let first = generate(vec![container("setup", running.clone())], &with_init);
        assert_eq!(first.phase.as_deref(), Some("Pending"));
        assert_eq!(condition(&first, "Initialized").as_deref(), Some("False"));
        let init = first.init_container_statuses.clone().unwrap_or_default();
        assert_eq!(init.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["setup", "migrate"]);
        assert_eq!(waiting_reason(&init[1]).as_deref(), Some("PodInitializing"));
        let app = first.container_statuses.clone().unwrap_or_default();
        assert_eq!(waiting_reason(&app[0]).as_deref(), Some("PodInitializing"));
        // Both done, the app runs: Running, Initialized, Ready; done init containers are ready.
        let done = generate(
            vec![container("setup", exited(0)), container("migrate", exited(0)), container("app", running.clone())],
            &with_init,
        );
        assert_eq!(done.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&done, "Initialized").as_deref(), Some("True"));
        assert_eq!(condition(&done, "Ready").as_deref(), Some("True"));
        assert!(done.init_container_statuses.unwrap_or_default().iter().all(|s| s.ready));
        // A failed init container: Pending while it will be retried, Failed under Never.
        let failed = vec![container("setup", exited(1))];
        assert_eq!(generate(failed.clone(), &with_init).phase.as_deref(), Some("Pending"));
        if let Some(spec) = with_init.spec.as_mut() {
            spec.restart_policy = Some("Never".into());
        }
        let never = generate(failed, &with_init);
        assert_eq!(never.phase.as_deref(), Some("Failed"));
        assert_eq!(condition(&never, "Ready").as_deref(), Some("False"));
        // No init containers: no initContainerStatuses at all.
        let plain = generate(vec![container("a", running)], &pod(&["a"], "Always"));
        assert_eq!(plain.init_container_statuses, None);
    }

    #[test]
    fn nothing_running_yet_is_pending_with_container_creating() {
        let status = generate_pod_status(&pod(&["a"], "Always"), None, "10.0.0.1", Timestamp::UNIX_EPOCH, &|_, _| true);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let waiting = status.container_statuses.as_ref().and_then(|s| s[0].state.as_ref()?.waiting.clone());
        assert_eq!(waiting.and_then(|w| w.reason).as_deref(), Some("ContainerCreating"));
        assert_eq!(condition(&status, "PodScheduled"), "True");
        assert_eq!(condition(&status, "Ready"), "False");
    }

    #[test]
    fn all_running_is_running_and_ready() {
        let runtime = RuntimePodStatus {
            pod_ip: Some("10.244.0.2".into()),
            containers: vec![
                container("a", ContainerState::Running { started_at: Timestamp::UNIX_EPOCH }),
                container("b", ContainerState::Running { started_at: Timestamp::UNIX_EPOCH }),
            ],
        };
        let status = generate_pod_status(
            &pod(&["a", "b"], "Always"),
            Some(&runtime),
            "10.0.0.1",
            Timestamp::UNIX_EPOCH,
            &|_, _| true,
        );
        assert_eq!(status.phase.as_deref(), Some("Running"));
        for type_ in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert_eq!(condition(&status, type_), "True", "{type_}");
        }
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.2"));
        assert_eq!(status.host_ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn exits_decide_succeeded_or_failed_by_restart_policy() {
        let runtime = |code| RuntimePodStatus { pod_ip: None, containers: vec![container("a", exited(code))] };
        let phase = |code, policy| {
            generate_pod_status(&pod(&["a"], policy), Some(&runtime(code)), "h", Timestamp::UNIX_EPOCH, &|_, _| true)
                .phase
        };
        assert_eq!(phase(0, "Never").as_deref(), Some("Succeeded"));
        assert_eq!(phase(3, "Never").as_deref(), Some("Failed"));
        assert_eq!(phase(0, "OnFailure").as_deref(), Some("Succeeded"));
        assert_eq!(phase(3, "OnFailure").as_deref(), Some("Running"));
        assert_eq!(phase(0, "Always").as_deref(), Some("Running"));
    }

    #[test]
    fn unchanged_status_keeps_transition_times_and_start_time() {
        let runtime = RuntimePodStatus {
            pod_ip: None,
            containers: vec![container("a", ContainerState::Running { started_at: Timestamp::UNIX_EPOCH })],
        };
        let mut pod = pod(&["a"], "Always");
        let first = generate_pod_status(&pod, Some(&runtime), "h", Timestamp::UNIX_EPOCH, &|_, _| true);
        pod.status = Some(first.clone());
        let later = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(60);
        let second = generate_pod_status(&pod, Some(&runtime), "h", later, &|_, _| true);
        assert_eq!(first, second, "a resync must not produce a different status");
    }
}
