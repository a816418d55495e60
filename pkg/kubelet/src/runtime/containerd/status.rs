//! What the containerd runtime reports of a pod ([`Runtime::pod_status`](crate::runtime::Runtime::pod_status)):
//! for each container, its latest run, and why it could not be started if it could not. The
//! status manager ([`crate::status`]) turns this into the pod's API status.
//!
//! What it keeps true (unit tests below):
//! - a container whose latest run exited and whose restart policy restarts it is
//!   `CrashLoopBackOff`, with that exit as `lastState.terminated` and the back-off in the message;
//! - otherwise the latest run's state, with the run before it as `lastState.terminated`;
//! - the restart count is the latest run's attempt;
//! - a start that failed shows as the container's waiting reason (`ErrImagePull`,
//!   `CreateContainerError`, ...) unless a run of it is running or has exited.

use super::restart::{backoff, restarts};
use super::runs::Run;
use super::{ContainerdRuntime, StartErrors};
use crate::runtime::{ContainerState, ContainerStatus, PodStatus, RuntimeError};

impl ContainerdRuntime {
    /// The status of pod `uid` (see the module docs); `None` when the runtime knows nothing of
    /// it (no run, no start error, no IP).
    pub(super) async fn status_of_pod(&self, uid: &str) -> Result<Option<PodStatus>, RuntimeError> {
        let runs = self.runs(uid).await?;
        let errors = start_errors_of(&self.start_errors(), uid);
        let pod_ip = self.config.network.as_ref().and_then(|network| network.pod_ip(uid));
        if runs.is_empty() && errors.is_empty() && pod_ip.is_none() {
            return Ok(None);
        }
        let mut containers: Vec<ContainerStatus> =
            runs.into_iter().filter_map(|(name, runs)| latest_status(name, &runs)).collect();
        add_start_errors(&mut containers, errors);
        Ok(Some(PodStatus { pod_ip, containers }))
    }
}

/// The start errors of pod `uid`: (container name, (reason, message)).
fn start_errors_of(errors: &StartErrors, uid: &str) -> Vec<(String, (String, String))> {
    errors.iter().filter(|((pod, _), _)| pod == uid).map(|((_, name), error)| (name.clone(), error.clone())).collect()
}

/// The status of container `name` from its `runs` (oldest first); `None` without runs.
fn latest_status(name: String, runs: &[Run]) -> Option<ContainerStatus> {
    let latest = runs.last()?;
    let previous = runs.len().checked_sub(2).and_then(|at| runs.get(at));
    let mut last_terminated = previous.and_then(|run| match &run.state {
        ContainerState::Terminated(ended) => Some(ended.clone()),
        _ => None,
    });
    let mut state = latest.state.clone();
    if let ContainerState::Terminated(ended) = &latest.state
        && restarts(&latest.restart_policy, ended.exit_code)
    {
        let delay = backoff(latest.attempt + 1, ended);
        state = ContainerState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!("back-off {}s restarting failed container={name}", delay.as_secs())),
        };
        last_terminated = Some(ended.clone());
    }
    Some(ContainerStatus {
        name,
        image: latest.image.clone(),
        container_id: Some(format!("containerd://{}", latest.id)),
        state,
        restart_count: i32::try_from(latest.attempt).unwrap_or(i32::MAX),
        last_terminated,
    })
}

/// Shows each start error as its container's waiting reason, unless the container runs or
/// has exited.
fn add_start_errors(statuses: &mut Vec<ContainerStatus>, errors: Vec<(String, (String, String))>) {
    for (name, (reason, message)) in errors {
        let started = statuses
            .iter()
            .any(|status| status.name == name && !matches!(status.state, ContainerState::Waiting { .. }));
        if !started {
            statuses.retain(|status| status.name != name);
            statuses.push(ContainerStatus {
                name,
                image: String::new(),
                container_id: None,
                state: ContainerState::Waiting { reason, message: Some(message) },
                restart_count: 0,
                last_terminated: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Terminated;
    use jiff::Timestamp;

    fn run(attempt: u32, restart_policy: &str, state: ContainerState) -> Run {
        Run {
            id: format!("uid-app-{attempt}"),
            attempt,
            image: "busybox".into(),
            restart_policy: restart_policy.into(),
            has_task: true,
            state,
        }
    }

    fn exited(code: i32) -> ContainerState {
        ContainerState::Terminated(Terminated {
            exit_code: code,
            reason: "Error".into(),
            started_at: Some(Timestamp::UNIX_EPOCH),
            finished_at: Timestamp::UNIX_EPOCH,
        })
    }

    #[test]
    fn an_exited_container_that_restarts_waits_in_crash_loop_back_off_with_its_last_exit() {
        let status =
            latest_status("app".into(), &[run(0, "Always", exited(1)), run(1, "Always", exited(2))]).expect("runs");
        assert!(matches!(&status.state, ContainerState::Waiting { reason, .. } if reason == "CrashLoopBackOff"));
        assert_eq!(status.last_terminated.map(|ended| ended.exit_code), Some(2));
        assert_eq!((status.restart_count, status.container_id.as_deref()), (1, Some("containerd://uid-app-1")));
        let done = latest_status("app".into(), &[run(0, "OnFailure", exited(0))]).expect("runs");
        assert!(matches!(done.state, ContainerState::Terminated(ref ended) if ended.exit_code == 0));
        assert_eq!(latest_status("app".into(), &[]), None);
    }

    #[test]
    fn a_start_error_shows_as_the_waiting_reason_unless_the_container_started() {
        let running = ContainerState::Running { started_at: Timestamp::UNIX_EPOCH };
        let mut statuses = vec![latest_status("up".into(), &[run(0, "Always", running)]).expect("runs")];
        let error = |name: &str| (name.to_string(), ("ErrImagePull".to_string(), "pulling x: gone".to_string()));
        add_start_errors(&mut statuses, vec![error("up"), error("down")]);
        assert!(matches!(statuses[0].state, ContainerState::Running { .. }), "a running container keeps its state");
        assert_eq!(statuses[1].name, "down");
        assert!(matches!(&statuses[1].state, ContainerState::Waiting { reason, .. } if reason == "ErrImagePull"));
    }
}
