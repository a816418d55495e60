//! Resource names as users type them: `pods`, `pod`, `po`, `Pod`, `deployments.apps`,
//! `deploy/web`, `po,svc`, resolved against rkube's registry (`rkube_api::registry`), the same
//! table the apiserver's discovery documents come from.
//!
//! What this keeps true: a name that is no resource type is the error kubectl prints
//! (`the server doesn't have a resource type "widgets"`), never a guess.

use rkube_api::ResourceDef;
use rkube_api::registry;

use crate::error::{Error, Result};

/// Finds the resource type `name` (plural, singular, short name or kind, any case, optionally
/// `.group`-qualified).
pub fn resolve(name: &str) -> Result<&'static ResourceDef> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((base, group)) => (base.to_string(), Some(group.to_string())),
        None => (lower.clone(), None),
    };
    registry::resources()
        .iter()
        .copied()
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
