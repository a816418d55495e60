//! Container exits from containerd's event stream: one subscription to `/tasks/exit` in the
//! kubelet's namespace tells the PLEG ([`crate::pleg`]) which pod to sync, instead of one
//! `tasks.Wait` per container. The Kubernetes kubelet's evented PLEG does the same with CRI's
//! `GetContainerEvents`.
//!
//! What it keeps true (unit tests below): only the exit of a container's own process (not of an
//! exec or a probe in it) is reported; the subscription is made again when it breaks (with a
//! back-off up to 5 s), and then every pod with a container is reported once, so an exit missed
//! while it was down costs a sync, never a lost exit.
//!
//! Not promised: an exit of a container removed before its pod uid could be read (the kubelet
//! removed it itself, and syncs that pod anyway). The subscription is sent when the runtime
//! connects, long before the pod workers start a container, but nothing waits for containerd to
//! confirm it: containerd answers a subscription only with its first event (its `Subscribe`
//! sends no headers before), so waiting would hold the kubelet's start until some task exits.

use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::{GetContainerRequest, ListContainersRequest, SubscribeRequest};
use containerd_client::types::Envelope;
use prost::Message;
use tokio::sync::broadcast;
use tonic::transport::Channel;

use super::{NAMESPACE, POD_UID_LABEL, req};

/// The topic of a task's exit.
const EXIT_TOPIC: &str = "/tasks/exit";
/// The longest pause between two subscription attempts.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The container whose own process exited, if `envelope` says so (a `/tasks/exit` of the
/// container's init process, not of an exec in it).
pub(super) fn exited_container(envelope: &Envelope) -> Option<String> {
    if envelope.topic != EXIT_TOPIC {
        return None;
    }
    let event = envelope.event.as_ref().filter(|any| any.type_url.ends_with("containerd.events.TaskExit"))?;
    let exit = containerd_client::events::TaskExit::decode(event.value.as_slice()).ok()?;
    (exit.id == exit.container_id || exit.id.is_empty()).then_some(exit.container_id)
}

/// Follows containerd's exits until the process ends, sending the pod uid of each exited
/// container on `pods` (see the module docs).
pub(super) async fn follow_exits(channel: Channel, pods: broadcast::Sender<String>) {
    let mut events = EventsClient::new(channel.clone());
    let mut containers = ContainersClient::new(channel);
    let filter = format!("namespace=={NAMESPACE},topic==\"{EXIT_TOPIC}\"");
    let mut retry = Duration::from_millis(100);
    let mut first = true;
    loop {
        match events.subscribe(SubscribeRequest { filters: vec![filter.clone()] }).await {
            Ok(response) => {
                if !first {
                    resync_every_pod(&mut containers, &pods).await;
                }
                first = false;
                retry = Duration::from_millis(100);
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(envelope)) => {
                            if let Some(id) = exited_container(&envelope) {
                                report_exit(&mut containers, &pods, &id).await;
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::warn!(%status, "containerd's event stream broke; subscribing again");
                            break;
                        }
                    }
                }
            }
            Err(status) => tracing::warn!(%status, ?retry, "cannot subscribe to containerd's events"),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// Sends the pod uid of container `id` (read from its labels).
async fn report_exit(containers: &mut ContainersClient<Channel>, pods: &broadcast::Sender<String>, id: &str) {
    match containers.get(req(GetContainerRequest { id: id.into() })).await {
        Ok(response) => {
            if let Some(uid) = response.into_inner().container.and_then(|c| c.labels.get(POD_UID_LABEL).cloned()) {
                let _ = pods.send(uid); // no receiver: nobody to tell
            }
        }
        Err(status) => tracing::debug!(%id, %status, "exited container is gone"),
    }
}

/// Sends the uid of every pod that has a container (after a break in the stream).
async fn resync_every_pod(containers: &mut ContainersClient<Channel>, pods: &broadcast::Sender<String>) {
    match containers.list(req(ListContainersRequest { filters: Vec::new() })).await {
        Ok(response) => {
            let uids: std::collections::HashSet<String> = response
                .into_inner()
                .containers
                .into_iter()
                .filter_map(|container| container.labels.get(POD_UID_LABEL).cloned())
                .collect();
            for uid in uids {
                let _ = pods.send(uid);
            }
        }
        Err(status) => tracing::warn!(%status, "cannot list containers after the event stream broke"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_client::events::TaskExit;

    fn envelope(topic: &str, exit: &TaskExit) -> Envelope {
        Envelope {
            timestamp: None,
            namespace: NAMESPACE.into(),
            topic: topic.into(),
            event: Some(prost_types::Any {
                type_url: "containerd.events.TaskExit".into(),
                value: exit.encode_to_vec(),
            }),
        }
    }

    #[test]
    fn only_a_containers_own_exit_is_reported() {
        let own = TaskExit {
            container_id: "uid-main-0".into(),
            id: "uid-main-0".into(),
            exit_status: 3,
            ..TaskExit::default()
        };
        assert_eq!(exited_container(&envelope(EXIT_TOPIC, &own)), Some("uid-main-0".into()));
        let exec = TaskExit { container_id: "uid-main-0".into(), id: "probe-7".into(), ..TaskExit::default() };
        assert_eq!(exited_container(&envelope(EXIT_TOPIC, &exec)), None, "an exec or probe ended");
        assert_eq!(exited_container(&envelope("/tasks/start", &own)), None);
        let garbage = Envelope {
            event: Some(prost_types::Any { type_url: "x".into(), value: vec![1] }),
            ..envelope(EXIT_TOPIC, &own)
        };
        assert_eq!(exited_container(&garbage), None);
    }
}
