//! A container's task (its running process, in containerd's words): its state, signals, and
//! the removal of a run (task, container record and snapshot).
//!
//! What it keeps true: stopping sends SIGTERM, waits the grace period, then SIGKILLs every
//! process of the container and waits up to [`KILL_TIMEOUT`] more; removing a run that is
//! already (partly) gone is not an error, so a removal interrupted half-way is finished by the
//! next one.
//!
//! Not promised: that a task which outlives [`KILL_TIMEOUT`] after SIGKILL is removed; the
//! removal then fails with containerd's answer.

use std::time::{Duration, Instant};

use containerd_client::services::v1::snapshots::RemoveSnapshotRequest;
use containerd_client::services::v1::{DeleteContainerRequest, DeleteTaskRequest, GetRequest, KillRequest};
use containerd_client::types::v1::{Process, Status as TaskStatus};
use tonic::Code;

use super::{ContainerdRuntime, SNAPSHOTTER, grpc, operation, req};
use crate::runtime::RuntimeError;

/// How long a SIGKILLed task may take to be reported stopped.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const SIGTERM: u32 = 15;
const SIGKILL: u32 = 9;

impl ContainerdRuntime {
    /// The task of container `id`, `None` when it has none.
    pub(super) async fn task(&self, id: &str) -> Result<Option<Process>, RuntimeError> {
        let mut client = self.client.tasks();
        let get = client.get(req(GetRequest { container_id: id.into(), exec_id: String::new() }));
        match operation(self, "container_status", get).await {
            Ok(response) => Ok(response.into_inner().process),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(grpc("tasks.get")(status)),
        }
    }

    /// Whether container `id` has a running task.
    async fn is_running(&self, id: &str) -> Result<bool, RuntimeError> {
        Ok(self.task(id).await?.is_some_and(|task| task.status == TaskStatus::Running as i32))
    }

    /// Stops the running run of `container` in pod `uid`: SIGTERM, `grace`, then SIGKILL.
    pub(super) async fn stop_container(&self, uid: &str, container: &str, grace: Duration) -> Result<(), RuntimeError> {
        let id = self.running_id(uid, container).await?;
        self.kill(&id, SIGTERM, false).await?;
        if !self.wait_stopped(&id, grace).await? {
            self.kill(&id, SIGKILL, true).await?;
            self.wait_stopped(&id, KILL_TIMEOUT).await?;
        }
        Ok(())
    }

    /// Stops one run (SIGTERM, `grace`, SIGKILL) and deletes its task, container and snapshot.
    pub(super) async fn remove_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        if self.is_running(id).await? {
            self.kill(id, SIGTERM, false).await?;
            if !self.wait_stopped(id, grace).await? {
                tracing::info!(%id, ?grace, "container ignored SIGTERM for its grace period; sending SIGKILL");
                self.kill(id, SIGKILL, true).await?;
                self.wait_stopped(id, KILL_TIMEOUT).await?;
            }
        }
        let deleted = self.client.tasks().delete(req(DeleteTaskRequest { container_id: id.into() })).await.map(|_| ());
        ignore_missing("tasks.delete", deleted)?;
        let deleted = self.client.containers().delete(req(DeleteContainerRequest { id: id.into() })).await.map(|_| ());
        ignore_missing("containers.delete", deleted)?;
        self.remove_streams(id);
        let removed = self
            .client
            .snapshots()
            .remove(req(RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: id.into() }))
            .await
            .map(|_| ());
        ignore_missing("snapshots.remove", removed)
    }

    /// Waits until container `id`'s task is not running, up to `limit`. Returns whether it stopped.
    async fn wait_stopped(&self, id: &str, limit: Duration) -> Result<bool, RuntimeError> {
        let deadline = Instant::now() + limit;
        loop {
            if !self.is_running(id).await? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `signal` to container `id`'s task (every process of it when `all`); a task that
    /// is missing or exited already is not an error.
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        match self
            .client
            .tasks()
            .kill(req(KillRequest { container_id: id.into(), exec_id: String::new(), signal, all }))
            .await
        {
            Ok(_) => Ok(()),
            // No task, or it already exited.
            Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => Ok(()),
            Err(status) => Err(grpc("tasks.kill")(status)),
        }
    }
}

/// `result` of containerd call `step`, with "not found" (removed already) as success.
fn ignore_missing(step: &'static str, result: Result<(), tonic::Status>) -> Result<(), RuntimeError> {
    match result {
        Err(status) if status.code() != Code::NotFound => Err(grpc(step)(status)),
        _ => Ok(()),
    }
}
