//! CustomResourceDefinitions from tests: create one and wait until it is served, and read the
//! conditions and the field causes the apiserver answers with.

use std::time::Duration;

use serde_json::Value;

use crate::{Api, eventually};

/// The collection of CustomResourceDefinitions.
pub const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/// How long a CRD may take to become `Established`.
const ESTABLISH_WAIT: Duration = Duration::from_secs(20);

/// Creates `crd` and waits for it to be `Established`; returns it as the API shows it then.
///
/// # Panics
/// When the create is refused or the CRD is not established within 20 s.
pub async fn establish(api: &Api, crd: &Value) -> Value {
    api.create(CRDS, crd).await;
    let name = crd["metadata"]["name"].as_str().expect("a CRD has a name").to_string();
    eventually(ESTABLISH_WAIT, "the CRD to be established", || async {
        let got = api.get_ok(&format!("{CRDS}/{name}")).await;
        condition(&got, "Established").filter(|s| s == "True").map(|_| got)
    })
    .await
}

/// The status (`True`, `False`) of the condition of type `kind` in a CRD's status.
pub fn condition(crd: &Value, kind: &str) -> Option<String> {
    crd["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

/// The causes of a `Status` (an `Invalid` reply), each as `<field>: <message>`.
pub fn causes(body: &Value) -> Vec<String> {
    body["details"]["causes"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| format!("{}: {}", c["field"].as_str().unwrap_or(""), c["message"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}
