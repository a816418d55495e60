//! Controller references: which controller owns an object, and how ownership changes hands.
//!
//! An object is owned by the controller named in its one `ownerReference` with
//! `controller: true` (apimachinery: `metav1.GetControllerOf`). A controller *adopts* an orphan
//! that matches its selector by adding such a reference, and *releases* an object it owns that
//! no longer matches by removing it (kube-controller-manager: `PodControllerRefManager.ClaimPods`).
//!
//! What it keeps true: adoption and release are JSON merge patches that carry the object's
//! `resourceVersion` as a precondition, so two controllers racing to adopt the same orphan
//! cannot both win (the loser gets 409 and sees the winner's reference on its next sync).
//! References of other owners are kept as they are.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

/// The reference to an object's managing controller, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|owner| owner.controller == Some(true))
}

/// The controller reference a controller puts on what it creates or adopts: `controller: true`,
/// and `blockOwnerDeletion: true` so a foreground delete of the owner waits for it.
pub fn new_controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The merge patch that adds `reference` to `object`'s owner references (adoption).
pub fn adopt_patch(object: &ObjectMeta, reference: &OwnerReference) -> Value {
    let mut owners: Vec<OwnerReference> = object.owner_references.clone().unwrap_or_default();
    owners.retain(|owner| owner.uid != reference.uid);
    owners.push(reference.clone());
    json!({"metadata": {"ownerReferences": owners, "resourceVersion": object.resource_version}})
}

/// The merge patch that removes the reference with `owner_uid` from `object` (release).
pub fn release_patch(object: &ObjectMeta, owner_uid: &str) -> Value {
    let owners: Vec<OwnerReference> =
        object.owner_references.iter().flatten().filter(|owner| owner.uid != owner_uid).cloned().collect();
    let owners = if owners.is_empty() { Value::Null } else { json!(owners) };
    json!({"metadata": {"ownerReferences": owners, "resourceVersion": object.resource_version}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Thing".into(),
            name: uid.into(),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn adoption_keeps_other_owners_and_carries_the_resource_version() {
        let meta = ObjectMeta {
            owner_references: Some(vec![owner("other", false)]),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        };
        let patch = adopt_patch(&meta, &owner("rs", true));
        assert_eq!(patch["metadata"]["ownerReferences"].as_array().map(Vec::len), Some(2));
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn release_removes_only_that_owner() {
        let meta = ObjectMeta {
            owner_references: Some(vec![owner("other", false), owner("rs", true)]),
            ..ObjectMeta::default()
        };
        let patch = release_patch(&meta, "rs");
        assert_eq!(patch["metadata"]["ownerReferences"][0]["uid"], "other");
        assert_eq!(patch["metadata"]["ownerReferences"].as_array().map(Vec::len), Some(1));
        let only = ObjectMeta { owner_references: Some(vec![owner("rs", true)]), ..ObjectMeta::default() };
        assert!(release_patch(&only, "rs")["metadata"]["ownerReferences"].is_null());
        assert!(controller_of(&meta).is_some_and(|owner| owner.uid == "rs"));
    }
}
