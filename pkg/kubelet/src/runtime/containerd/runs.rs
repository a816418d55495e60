//! The runs of a pod's containers, rebuilt from containerd every time: each containerd
//! container is one run (`<pod uid>-<container name>-<attempt>`), found by its labels, with
//! the state of its task.
//!
//! What it keeps true: nothing is cached, so the kubelet's view survives its own restart and
//! exit codes are the process's own (`tasks.Get`); runs are listed oldest first; a stopped task
//! with exit code 137 whose memory cgroup counted an `oom_kill` is reported as `OOMKilled`.
//!
//! Not promised: `startedAt` is when the containerd container was created, not when its
//! process started.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use containerd_client::services::v1::{Container, ListContainersRequest, ListTasksRequest};
use containerd_client::types::v1::Status as TaskStatus;
use jiff::Timestamp;

use super::{
    ATTEMPT_LABEL, CGROUP_PARENT, CONTAINER_NAME_LABEL, ContainerdRuntime, POD_UID_LABEL, RESTART_POLICY_LABEL, grpc,
    operation, req, timestamp,
};
use crate::runtime::{ContainerCgroup, ContainerState, RuntimeError, Terminated};

/// One run of a container (containerd container `<uid>-<name>-<attempt>`).
pub(super) struct Run {
    pub(super) id: String,
    pub(super) attempt: u32,
    pub(super) image: String,
    pub(super) restart_policy: String,
    /// Whether a task was created (a run without one was interrupted during creation).
    pub(super) has_task: bool,
    pub(super) state: ContainerState,
}

impl ContainerdRuntime {
    /// The containers of pod `uid` (every pod when `None`).
    pub(super) async fn containers(&self, uid: Option<&str>) -> Result<Vec<Container>, RuntimeError> {
        let filters = uid.map(|uid| vec![format!("labels.\"{POD_UID_LABEL}\"=={uid}")]).unwrap_or_default();
        let mut client = self.client.containers();
        Ok(operation(self, "list_containers", client.list(req(ListContainersRequest { filters })))
            .await
            .map_err(grpc("containers.list"))?
            .into_inner()
            .containers)
    }

    /// The runs of each container of pod `uid`, by container name, oldest first, with their
    /// current state.
    pub(super) async fn runs(&self, uid: &str) -> Result<HashMap<String, Vec<Run>>, RuntimeError> {
        let mut runs: HashMap<String, Vec<Run>> = HashMap::new();
        for container in self.containers(Some(uid)).await? {
            let name = container.labels.get(CONTAINER_NAME_LABEL).cloned().unwrap_or_default();
            runs.entry(name).or_default().push(self.run_of(uid, &container).await?);
        }
        for list in runs.values_mut() {
            list.sort_by_key(|run| run.attempt);
        }
        Ok(runs)
    }

    /// Containerd container `container` of pod `uid` as a run, with its task's state.
    async fn run_of(&self, uid: &str, container: &Container) -> Result<Run, RuntimeError> {
        let attempt = container.labels.get(ATTEMPT_LABEL).and_then(|a| a.parse().ok()).unwrap_or(0);
        let created = timestamp(container.created_at.as_ref());
        let task = self.task(&container.id).await?;
        let state = match &task {
            Some(task) if task.status == TaskStatus::Running as i32 => {
                ContainerState::Running { started_at: created.unwrap_or_else(Timestamp::now) }
            }
            Some(task) if task.status == TaskStatus::Stopped as i32 => ContainerState::Terminated(Terminated {
                exit_code: i32::try_from(task.exit_status).unwrap_or(i32::MAX),
                reason: match task.exit_status {
                    0 => "Completed",
                    137 if oom_killed(uid, &container.id) => "OOMKilled",
                    _ => "Error",
                }
                .into(),
                started_at: created,
                finished_at: timestamp(task.exited_at.as_ref()).unwrap_or_else(Timestamp::now),
            }),
            _ => ContainerState::Waiting { reason: "ContainerCreating".into(), message: None },
        };
        Ok(Run {
            id: container.id.clone(),
            attempt,
            image: container.image.clone(),
            restart_policy: container.labels.get(RESTART_POLICY_LABEL).cloned().unwrap_or_else(|| "Always".into()),
            has_task: task.is_some(),
            state,
        })
    }

    /// The cgroup of every container whose task runs (one `tasks.list`, one `containers.list`).
    pub(super) async fn container_cgroups(&self) -> Result<Vec<ContainerCgroup>, RuntimeError> {
        let running: HashSet<String> = self
            .client
            .tasks()
            .list(req(ListTasksRequest { filter: String::new() }))
            .await
            .map_err(grpc("tasks.list"))?
            .into_inner()
            .tasks
            .into_iter()
            .filter(|task| task.status == TaskStatus::Running as i32)
            .map(|task| task.id)
            .collect();
        Ok(self
            .containers(None)
            .await?
            .into_iter()
            .filter(|container| running.contains(&container.id))
            .filter_map(|container| {
                let uid = container.labels.get(POD_UID_LABEL)?.clone();
                let name = container.labels.get(CONTAINER_NAME_LABEL)?.clone();
                let cgroup = format!("/{CGROUP_PARENT}/pod{uid}/{}", container.id);
                let started_at = timestamp(container.created_at.as_ref()).unwrap_or_else(Timestamp::now);
                Some(ContainerCgroup { uid, name, cgroup, started_at })
            })
            .collect())
    }

    /// The containerd ID of the running run of `container` in pod `uid`.
    pub(super) async fn running_id(&self, uid: &str, container: &str) -> Result<String, RuntimeError> {
        let mut runs = self.runs(uid).await?;
        runs.remove(container)
            .and_then(|runs| runs.into_iter().last())
            .filter(|run| matches!(run.state, ContainerState::Running { .. }))
            .map(|run| run.id)
            .ok_or_else(|| RuntimeError::NotRunning { uid: uid.into(), container: container.into() })
    }
}

/// Whether the kernel OOM-killed a process of container `id` of pod `uid`: its memory cgroup
/// (still there while the stopped task exists) counts an `oom_kill` (cgroup v1
/// `memory.oom_control`, v2 `memory.events`).
fn oom_killed(uid: &str, id: &str) -> bool {
    let relative = format!("{CGROUP_PARENT}/pod{uid}/{id}");
    let candidates = [
        Path::new("/sys/fs/cgroup/memory").join(&relative).join("memory.oom_control"),
        Path::new("/sys/fs/cgroup").join(&relative).join("memory.events"),
    ];
    candidates.iter().filter_map(|file| std::fs::read_to_string(file).ok()).any(|text| {
        text.lines()
            .filter_map(|line| line.strip_prefix("oom_kill "))
            .any(|count| count.trim().parse::<u64>().is_ok_and(|n| n > 0))
    })
}
