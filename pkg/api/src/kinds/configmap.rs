//! ConfigMap (core/v1): configuration data as keys and values, for pods to read.
//!
//! Its strategy: keys are file names, at most 1 MiB of values; once `immutable` is true,
//! neither it nor the data may change.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, at, column, name_cell};
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::is_config_map_key;

/// Largest total size of a ConfigMap's `data` plus `binaryData` values (1 MiB).
pub const MAX_CONFIG_MAP_SIZE_BYTES: usize = 1024 * 1024;

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<ConfigMap>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for ConfigMap {
    fn validate(&self) -> Vec<FieldError> {
        validate_config_map_data(self)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        validate_config_map_update(self, old)
    }
}

/// Checks a ConfigMap's data: valid keys (`data[key]`), no key in both `data` and
/// `binaryData`, at most 1 MiB of values in total.
pub fn validate_config_map_data(config_map: &ConfigMap) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    let binary = config_map.binary_data.as_ref();
    for (key, value) in config_map.data.iter().flatten() {
        let at = format!("data[{key}]");
        errs.extend(is_config_map_key(key).into_iter().map(|m| FieldError::invalid(&at, key, m)));
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(FieldError::invalid(&at, key, "duplicate of key present in binaryData"));
        }
        total += value.len();
    }
    for (key, value) in binary.into_iter().flatten() {
        let at = format!("binaryData[{key}]");
        errs.extend(is_config_map_key(key).into_iter().map(|m| FieldError::invalid(&at, key, m)));
        total += value.0.len();
    }
    if total > MAX_CONFIG_MAP_SIZE_BYTES {
        errs.push(FieldError::too_long("data", MAX_CONFIG_MAP_SIZE_BYTES));
    }
    errs
}

/// Checks a ConfigMap update: once `immutable` is true, neither it nor the data may change.
pub fn validate_config_map_update(new: &ConfigMap, old: &ConfigMap) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden("immutable", "field is immutable when `immutable` is set"));
        }
        if new.data != old.data {
            errs.push(FieldError::forbidden("data", "field is immutable when `immutable` is set"));
        }
        if new.binary_data != old.binary_data {
            errs.push(FieldError::forbidden("binaryData", "field is immutable when `immutable` is set"));
        }
    }
    errs
}

const COLUMNS: &[Column] = &[NAME, column("Data", "string", "Data contains the configuration data.", 0), AGE];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let count = |field: &str| at(obj, &[field]).and_then(Value::as_object).map_or(0, serde_json::Map::len);
    vec![name_cell(obj), Value::from(count("data") + count("binaryData")), age_cell(obj, now)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;
    use serde_json::json;

    #[test]
    fn config_map_keys_must_be_file_names() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "c"}, "data": {"good.key": "1", "bad/key": "2", "..x": "3"}
        }))
        .expect("valid configmap");
        let errs = validate_config_map_data(&cm);
        assert_eq!(fields(&errs), vec!["data[..x]", "data[bad/key]"]);
        assert_eq!(errs[0].to_string(), "data[..x]: Invalid value: \"..x\": must not start with '..'");
    }
}
