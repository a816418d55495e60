//! Resource names as users type them: `pods`, `pod`, `po`, `Pod`, `deployments.apps`,
//! `deploy/web`, `po,svc`, resolved against rkube's registry (`rkube_api::registry`), the same
//! table the apiserver's discovery documents come from.
//!
//! What this keeps true: a name that is no resource type is the error kubectl prints
//! (`the server doesn't have a resource type "widgets"`), never a guess.

use std::sync::OnceLock;

use rkube_api::ResourceDef;
use rkube_api::registry;
use serde_json::Value;

use crate::error::{Error, Result};

/// The server's resources beyond the built-in kinds (its CustomResourceDefinitions), from
/// its discovery document; empty until [`discover`] ran.
static DISCOVERED: OnceLock<Vec<&'static ResourceDef>> = OnceLock::new();

/// Every resource type this process knows: the built-in kinds, then the discovered ones.
fn known() -> impl Iterator<Item = &'static ResourceDef> {
    registry::resources().iter().copied().chain(DISCOVERED.get().into_iter().flatten().copied())
}

/// Learns the server's custom resources from its aggregated discovery document (one request),
/// as kubectl does, so that their names resolve. Best effort: without an answer only the
/// built-in kinds resolve.
pub async fn discover(client: &rkube_client::Client) {
    if DISCOVERED.get().is_some() {
        return;
    }
    let request = http::Request::builder()
        .uri("/apis")
        .header(http::header::ACCEPT, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        .body(Vec::new());
    let Ok(request) = request else { return };
    let found = match client.request_json(request).await {
        Ok(document) => from_discovery(&document),
        // No discovery document (an old server, a refusal): only built-in kinds resolve.
        Err(_) => Vec::new(),
    };
    let _ = DISCOVERED.set(found);
}

/// The resources of an aggregated discovery document that are not built-in kinds, in each
/// group's preferred (first) version.
fn from_discovery(document: &Value) -> Vec<&'static ResourceDef> {
    let mut found = Vec::new();
    for group in document["items"].as_array().into_iter().flatten() {
        let name = group["metadata"]["name"].as_str().unwrap_or_default();
        let Some(version) = group["versions"].as_array().and_then(|v| v.first()) else { continue };
        let version_name = version["version"].as_str().unwrap_or_default();
        for resource in version["resources"].as_array().into_iter().flatten() {
            let plural = resource["resource"].as_str().unwrap_or_default();
            let kind = resource["responseKind"]["kind"].as_str().unwrap_or_default();
            if plural.is_empty()
                || kind.is_empty()
                || registry::resources().iter().any(|r| r.group == name && r.plural == plural)
            {
                continue;
            }
            let strings = |v: &Value| -> Vec<String> {
                v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
            };
            let subresources: Vec<String> = resource["subresources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["subresource"].as_str().map(str::to_string))
                .collect();
            found.push(rkube_api::customresource::discovered(
                name,
                version_name,
                kind,
                plural,
                resource["singularResource"].as_str().unwrap_or_default(),
                resource["scope"] == "Namespaced",
                &strings(&resource["shortNames"]),
                &subresources,
            ));
        }
    }
    found
}

/// The discovered resource serving `kind` in `group` and `version`.
pub fn discovered_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceDef> {
    DISCOVERED.get()?.iter().copied().find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Whether `name` resolves without discovery.
pub fn is_built_in(name: &str) -> bool {
    name.split(',').filter(|t| !t.is_empty()).all(|t| {
        let ty = t.split_once('/').map_or(t, |(ty, _)| ty);
        resolve(ty).is_ok()
    })
}

/// Finds the resource type `name` (plural, singular, short name or kind, any case, optionally
/// `.group`-qualified).
pub fn resolve(name: &str) -> Result<&'static ResourceDef> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((base, group)) => (base.to_string(), Some(group.to_string())),
        None => (lower.clone(), None),
    };
    known()
        .find(|def| {
            group.as_deref().is_none_or(|g| g == def.group)
                && (def.plural == base
                    || def.singular == base
                    || def.kind.eq_ignore_ascii_case(&base)
                    || def.short_names.contains(&base.as_str()))
        })
        .ok_or_else(|| Error::msg(format!("the server doesn't have a resource type \"{name}\"")))
}

/// How kubectl names an object's type in messages: `pod`, `deployment.apps`.
pub fn type_name(def: &ResourceDef) -> String {
    if def.group.is_empty() { def.singular.to_string() } else { format!("{}.{}", def.singular, def.group) }
}

/// `pod/web`, `deployment.apps/web`.
pub fn ref_name(def: &ResourceDef, name: &str) -> String {
    format!("{}/{name}", type_name(def))
}

/// The server's 404 for an object, as kubectl prints it (`pods "x" not found`).
pub fn not_found(def: &ResourceDef, name: &str) -> Error {
    let plural = if def.group.is_empty() { def.plural.to_string() } else { format!("{}.{}", def.plural, def.group) };
    Error::Server { reason: "NotFound".into(), message: format!("{plural} \"{name}\" not found"), code: 404 }
}

/// What a verb's positional arguments name: each resource type with the object names given for
/// it (empty = all of them, subject to selectors).
#[derive(Debug)]
pub struct Target {
    /// The resource type.
    pub def: &'static ResourceDef,
    /// Object names; empty when none were given.
    pub names: Vec<String>,
}

/// Parses `TYPE[,TYPE] [NAME...]` or `TYPE/NAME...` into targets, types in the order given.
pub fn parse_targets(args: &[String]) -> Result<Vec<Target>> {
    let Some(first) = args.first() else {
        return Err(Error::msg("you must specify the type of resource (e.g. pods, deployments, nodes)"));
    };
    let mut targets: Vec<Target> = Vec::new();
    if first.contains('/') {
        for arg in args {
            let Some((ty, name)) = arg.split_once('/') else {
                return Err(Error::msg(format!(
                    "there is no need to specify a resource type as a separate argument when passing \
                     arguments in resource/name form (e.g. 'rkubectl get resource/<resource_name>' instead of \
                     'rkubectl get resource resource/<resource_name>'): {arg:?}"
                )));
            };
            if name.is_empty() {
                return Err(Error::msg(format!("{arg:?}: the name after '/' is empty")));
            }
            let def = resolve(ty)?;
            match targets.iter_mut().find(|t| t.def == def) {
                Some(t) => t.names.push(name.to_string()),
                None => targets.push(Target { def, names: vec![name.to_string()] }),
            }
        }
        return Ok(targets);
    }
    let names: Vec<String> = args[1..].to_vec();
    if let Some(bad) = names.iter().find(|n| n.contains('/')) {
        return Err(Error::msg(format!(
            "there is no need to specify a resource type as a separate argument when passing arguments in \
             resource/name form: {bad:?}"
        )));
    }
    for ty in first.split(',').filter(|t| !t.is_empty()) {
        let def = resolve(ty)?;
        if !targets.iter().any(|t| t.def == def) {
            targets.push(Target { def, names: names.clone() });
        }
    }
    Ok(targets)
}

/// Exactly one object: `TYPE NAME` or `TYPE/NAME`.
pub fn parse_one(args: &[String]) -> Result<(&'static ResourceDef, String)> {
    let targets = parse_targets(args)?;
    match targets.as_slice() {
        [Target { def, names }] if names.len() == 1 => Ok((def, names[0].clone())),
        _ => Err(Error::msg("exactly one object is needed: TYPE NAME or TYPE/NAME")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn short_names_kinds_and_groups_resolve() {
        for name in ["po", "pod", "pods", "Pod", "PODS"] {
            assert_eq!(resolve(name).unwrap().plural, "pods", "{name}");
        }
        for name in ["deploy", "deployment", "deployments.apps", "Deployment"] {
            assert_eq!(resolve(name).unwrap().plural, "deployments", "{name}");
        }
        for (short, plural) in [
            ("rs", "replicasets"),
            ("no", "nodes"),
            ("svc", "services"),
            ("ns", "namespaces"),
            ("ev", "events"),
            ("cm", "configmaps"),
        ] {
            assert_eq!(resolve(short).unwrap().plural, plural);
        }
        let err = resolve("widgets").unwrap_err().to_string();
        assert_eq!(err, "error: the server doesn't have a resource type \"widgets\"");
    }

    #[test]
    fn targets_come_in_three_forms() {
        let t = parse_targets(&strings(&["po,deploy", "web"])).unwrap();
        assert_eq!((t[0].def.plural, t[1].def.plural), ("pods", "deployments"));
        assert_eq!(t[1].names, vec!["web"]);
        let t = parse_targets(&strings(&["po/a", "deploy/b", "pod/c"])).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].names, vec!["a", "c"]);
        assert!(parse_targets(&strings(&["po", "deploy/b"])).is_err());
        assert_eq!(ref_name(resolve("deploy").unwrap(), "web"), "deployment.apps/web");
    }
}
