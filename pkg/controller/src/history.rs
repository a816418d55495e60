//! Controller history: the ControllerRevisions a DaemonSet or StatefulSet keeps of its pod
//! templates (Kubernetes' `pkg/controller/history`), so `kubectl rollout history` can list
//! them and `kubectl rollout undo` can apply one back.
//!
//! A template's revision is named `<owner>-<hash of the template>`, labelled
//! `controller-revision-hash: <hash>`, controlled by the owner, and holds
//! `{"spec": {"template": {..., "$patch": "replace"}}}` (a strategic merge patch that puts the
//! template back whole). Revisions are numbered 1, 2, …; a template rolled back to becomes the
//! newest again (its number is raised), and revisions beyond the history limit that no pod
//! runs are deleted, oldest first.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube_core::ResourceExt;
use rkube_client::{Api, Client, DeleteParams, Patch, PatchParams, PostParams};
use rkube_informer::store::{NAMESPACE_INDEX, Store};
use serde_json::json;

use crate::Error;
use crate::controller_ref::{controller_of, new_controller_ref};

/// The label naming the template revision a pod (and a ControllerRevision) belongs to.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// The owner of a history: its metadata and its kind.
pub struct Owner<'a> {
    /// The DaemonSet's or StatefulSet's metadata.
    pub meta: &'a ObjectMeta,
    /// `apps/v1`.
    pub api_version: &'a str,
    /// `DaemonSet` or `StatefulSet`.
    pub kind: &'a str,
}

/// The name of the revision of the template with hash `hash`.
pub fn revision_name(owner: &ObjectMeta, hash: &str) -> String {
    format!("{}-{hash}", owner.name.as_deref().unwrap_or_default())
}

/// The pod template a revision holds.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.0.pointer("/spec/template")?.clone();
    if let Some(object) = template.as_object_mut() {
        object.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// Makes `template` (hash `hash`) the newest revision of `owner` and deletes revisions
/// beyond `limit` whose names are not in `in_use`. Returns the owner's revisions as they were
/// before (oldest first).
pub async fn record(
    client: &Client,
    revisions: &Store<ControllerRevision>,
    owner: &Owner<'_>,
    template: &PodTemplateSpec,
    hash: &str,
    limit: i32,
    in_use: &[String],
) -> Result<Vec<Arc<ControllerRevision>>, Error> {
    let namespace = owner.meta.namespace.clone().unwrap_or_default();
    let uid = owner.meta.uid.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let mut owned: Vec<Arc<ControllerRevision>> = revisions
        .by_index(NAMESPACE_INDEX, &namespace)?
        .into_iter()
        .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    owned.sort_by_key(|r| r.revision.unwrap_or(0));
    let newest = owned.last().and_then(|r| r.revision).unwrap_or(0);
    let name = revision_name(owner.meta, hash);
    match owned.iter().find(|r| r.name_any() == name) {
        Some(current) if current.revision.unwrap_or(0) == newest => {}
        Some(current) => {
            let patch = json!({"revision": newest + 1});
            if let Err(source) = api.patch(&current.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                return Err(Error::Read { what: format!("renumbering controllerrevision {name}"), source });
            }
        }
        None => {
            let mut data = serde_json::to_value(template).unwrap_or_default();
            if let Some(object) = data.as_object_mut() {
                object.insert("$patch".into(), json!("replace"));
            }
            let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            labels.insert(REVISION_HASH.into(), hash.into());
            let revision = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![new_controller_ref(owner.api_version, owner.kind, owner.meta)]),
                    ..ObjectMeta::default()
                },
                data: RawExtension(json!({"spec": {"template": data}})),
                revision: Some(newest + 1),
            };
            match api.create(&PostParams::default(), &revision).await {
                Ok(_) => {}
                Err(error) if error.is_already_exists() => {}
                Err(source) => return Err(Error::Read { what: format!("creating controllerrevision {name}"), source }),
            }
        }
    }
    let limit = usize::try_from(limit).unwrap_or(0);
    let old: Vec<&Arc<ControllerRevision>> =
        owned.iter().filter(|r| r.name_any() != name && !in_use.contains(&r.name_any())).collect();
    for revision in old.iter().take(old.len().saturating_sub(limit)) {
        match api.delete(&revision.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(error) if error.is_not_found() => {}
            Err(source) => {
                return Err(Error::Read {
                    what: format!("deleting controllerrevision {}", revision.name_any()),
                    source,
                });
            }
        }
    }
    Ok(owned)
}
