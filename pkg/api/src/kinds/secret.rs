//! Secret (core/v1): small pieces of sensitive data (passwords, tokens, keys) for pods and
//! the cluster's own components, kept apart from ConfigMaps so access to them can be
//! controlled separately.
//!
//! Its strategy, as Kubernetes':
//! - `stringData` is a write-only convenience: its entries are written into `data`
//!   (overriding a key present in both) and it is never stored;
//! - `type` defaults to `Opaque` and may not change; the well-known types require their
//!   keys (`kubernetes.io/dockerconfigjson` a `.dockerconfigjson` holding JSON,
//!   `kubernetes.io/tls` a `tls.crt` and a `tls.key`, `kubernetes.io/service-account-token`
//!   the `kubernetes.io/service-account.name` annotation, ...);
//! - keys are file names, at most 1 MiB of values in all; once `immutable` is true, neither
//!   it nor the data may change.
//!
//! Not promised here: encryption at rest, and keeping values out of logs (the apiserver
//! never logs bodies).

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, at, column, name_cell, text};
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::is_config_map_key;

/// Largest total size of a Secret's values (1 MiB), Kubernetes' `MaxSecretSize`.
pub const MAX_SECRET_SIZE_BYTES: usize = 1024 * 1024;

/// The type of a Secret that names none.
pub const OPAQUE: &str = "Opaque";
/// A ServiceAccount's token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";
/// The annotation naming the ServiceAccount a token Secret belongs to.
pub const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Registry credentials in the `~/.docker/config.json` format.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// The key of a [`DOCKER_CONFIG_JSON`] Secret.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// Registry credentials in the legacy `~/.dockercfg` format.
pub const DOCKERCFG: &str = "kubernetes.io/dockercfg";
/// The key of a [`DOCKERCFG`] Secret.
pub const DOCKERCFG_KEY: &str = ".dockercfg";
/// A user name and password.
pub const BASIC_AUTH: &str = "kubernetes.io/basic-auth";
/// An SSH private key.
pub const SSH_AUTH: &str = "kubernetes.io/ssh-auth";
/// A TLS certificate and its key.
pub const TLS: &str = "kubernetes.io/tls";

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: &["type"],
    strategy: &StrategyFor::<Secret>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Secret {
    /// `type: Opaque` when missing, and `stringData` folded into `data` (on every write, as
    /// Kubernetes' conversion from v1 does).
    fn set_defaults(&mut self) {
        if self.type_.as_deref().is_none_or(str::is_empty) {
            self.type_ = Some(OPAQUE.to_string());
        }
        if let Some(strings) = self.string_data.take() {
            let data = self.data.get_or_insert_with(Default::default);
            for (key, value) in strings {
                data.insert(key, ByteString(value.into_bytes()));
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_secret(self)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.type_ != old.type_ {
            errs.push(FieldError::invalid("type", self.type_.as_deref().unwrap_or_default(), "field is immutable"));
        }
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(FieldError::forbidden("immutable", "field is immutable when `immutable` is set"));
            }
            if self.data != old.data {
                errs.push(FieldError::forbidden("data", "field is immutable when `immutable` is set"));
            }
        }
        errs
    }
}

/// Checks a Secret: valid keys, at most 1 MiB, and the keys its type requires.
pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Default::default();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let mut total = 0usize;
    for (key, value) in data {
        errs.extend(is_config_map_key(key).into_iter().map(|m| FieldError::invalid(format!("data[{key}]"), key, m)));
        total += value.0.len();
    }
    if total > MAX_SECRET_SIZE_BYTES {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE_BYTES));
    }
    let require = |key: &str, errs: &mut Vec<FieldError>| {
        if !data.contains_key(key) {
            errs.push(FieldError::required(format!("data[{key}]"), ""));
        }
    };
    let json_in = |key: &str, errs: &mut Vec<FieldError>| {
        if let Some(value) = data.get(key)
            && let Err(e) = serde_json::from_slice::<Value>(&value.0)
        {
            errs.push(FieldError::invalid(format!("data[{key}]"), "<secret contents redacted>", e.to_string()));
        }
    };
    match secret.type_.as_deref().unwrap_or(OPAQUE) {
        SERVICE_ACCOUNT_TOKEN => {
            let named = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SERVICE_ACCOUNT_NAME_ANNOTATION))
                .is_some_and(|n| !n.is_empty());
            if !named {
                errs.push(FieldError::required(format!("metadata.annotations[{SERVICE_ACCOUNT_NAME_ANNOTATION}]"), ""));
            }
        }
        DOCKERCFG => {
            require(DOCKERCFG_KEY, &mut errs);
            json_in(DOCKERCFG_KEY, &mut errs);
        }
        DOCKER_CONFIG_JSON => {
            require(DOCKER_CONFIG_JSON_KEY, &mut errs);
            json_in(DOCKER_CONFIG_JSON_KEY, &mut errs);
        }
        // Either may be empty, but one of the two must be there.
        BASIC_AUTH if !data.contains_key("username") && !data.contains_key("password") => {
            require("username", &mut errs);
            require("password", &mut errs);
        }
        SSH_AUTH => require("ssh-privatekey", &mut errs),
        TLS => {
            require("tls.key", &mut errs);
            require("tls.crt", &mut errs);
        }
        _ => {}
    }
    errs
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "The type of the secret", 0),
    column("Data", "string", "The number of entries in the secret", 0),
    AGE,
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let count = at(obj, &["data"]).and_then(Value::as_object).map_or(0, serde_json::Map::len);
    vec![name_cell(obj), Value::from(text(obj, &["type"])), Value::from(count), age_cell(obj, now)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;
    use crate::strategy::StrategyError;
    use serde_json::json;

    fn create(body: Value) -> Result<Value, StrategyError> {
        RESOURCE.strategy.create(body).map(|p| p.object)
    }

    fn secret(extra: Value) -> Value {
        let mut body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    }

    fn errors(body: Value) -> Vec<String> {
        match create(body) {
            Err(StrategyError::Invalid(errs)) => fields(&errs).into_iter().map(str::to_string).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn string_data_is_written_into_data_and_never_stored() {
        let stored = create(secret(json!({"data": {"a": "b2xk", "b": "Yg=="}, "stringData": {"a": "new", "c": "c"}})))
            .expect("valid secret");
        assert_eq!(stored["data"], json!({"a": "bmV3", "b": "Yg==", "c": "Yw=="}));
        assert!(stored.get("stringData").is_none(), "{stored}");
        assert_eq!(stored["type"], "Opaque");
    }

    #[test]
    fn well_known_types_require_their_keys() {
        assert_eq!(errors(secret(json!({"type": DOCKER_CONFIG_JSON}))), vec!["data[.dockerconfigjson]".to_string()]);
        assert_eq!(
            errors(secret(json!({"type": DOCKER_CONFIG_JSON, "stringData": {".dockerconfigjson": "{not json"}}))),
            vec!["data[.dockerconfigjson]".to_string()]
        );
        assert!(
            create(secret(json!({"type": DOCKER_CONFIG_JSON, "stringData": {".dockerconfigjson": "{\"auths\":{}}"}})))
                .is_ok()
        );
        assert_eq!(errors(secret(json!({"type": TLS}))), vec!["data[tls.key]", "data[tls.crt]"]);
        assert_eq!(
            errors(secret(json!({"type": SERVICE_ACCOUNT_TOKEN}))),
            vec!["metadata.annotations[kubernetes.io/service-account.name]"]
        );
        assert_eq!(errors(secret(json!({"data": {"bad key": "eA=="}}))), vec!["data[bad key]"]);
    }

    #[test]
    fn type_never_changes_and_immutable_data_stays() {
        let old = create(secret(json!({"immutable": true, "stringData": {"a": "1"}}))).expect("valid");
        let mut retyped = old.clone();
        retyped["type"] = json!(BASIC_AUTH);
        retyped["data"]["username"] = json!("dQ==");
        let errs = match RESOURCE.strategy.update(retyped, &old) {
            Err(StrategyError::Invalid(errs)) => errs,
            other => panic!("expected field errors, got {other:?}"),
        };
        assert_eq!(fields(&errs), vec!["type", "data"]);
    }
}
