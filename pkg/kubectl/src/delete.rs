//! `delete`: by name, by file, by label selector or `--all`; waits until the objects are gone
//! unless `--wait=false`.
//!
//! Each object is deleted with `propagationPolicy: Background` (and `gracePeriodSeconds` when
//! `--grace-period` is given), and prints `pod "web" deleted from default namespace` as kubectl
//! 1.37 does. With `--wait` (the default) the command returns only once every object is gone:
//! objects with finalizers, or pods a kubelet still has to stop, may take a while.

use serde_json::{Value, json};

use crate::cli::DeleteArgs;
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::manifest;
use crate::resource;
use crate::wait::{parse_duration, watch_until};

/// Runs `delete`.
pub async fn run(ctx: &Connection, args: &DeleteArgs) -> Result<()> {
    let timeout = parse_duration(&args.timeout)?;
    let mut victims: Vec<(&'static rkube_api::ResourceDef, Option<String>, String)> = Vec::new();
    if !args.filenames.is_empty() {
        if !args.resources.is_empty() {
            return Err(Error::msg("give either -f or resource names, not both"));
        }
        for doc in manifest::read_all(&args.filenames, args.recursive)? {
            let def = doc.resource()?;
            let ns = crate::apply::object_namespace(ctx, def, &doc.object)?;
            victims.push((def, ns, doc.name()?));
        }
    } else {
        let targets = resource::parse_targets(&args.resources)?;
        for target in targets {
            if target.names.is_empty() {
                if args.selector.is_none() && !args.all {
                    return Err(Error::msg(
                        "resource(s) were provided, but no name was specified (give names, -l SELECTOR or --all)",
                    ));
                }
                let p = with_query(
                    &path(target.def, ctx.list_ns(target.def), None),
                    &[("labelSelector", args.selector.as_deref().unwrap_or(""))],
                );
                let list = ctx.get(&p).await?;
                for item in list["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
                    let ns = item["metadata"]["namespace"].as_str().map(str::to_string);
                    victims.push((target.def, ns, name));
                }
            } else {
                if args.selector.is_some() || args.all {
                    return Err(Error::msg("name cannot be provided when a selector or --all is specified"));
                }
                for name in target.names {
                    victims.push((target.def, ctx.ns_for(target.def).map(str::to_string), name));
                }
            }
        }
        if victims.is_empty() {
            println!("No resources found");
            return Ok(());
        }
    }
    let mut options = json!({"propagationPolicy": "Background"});
    if let Some(grace) = args.grace_period {
        // kubectl: a negative value means the object's default; 0 means immediately.
        if grace >= 0 {
            options["gracePeriodSeconds"] = Value::from(grace);
        }
    }
    let mut deleted = Vec::new();
    let mut last_error = None;
    for (def, ns, name) in victims {
        let p = path(def, ns.as_deref(), Some(&name));
        match ctx.send(http::Method::DELETE, &p, None, None, Some(&options)).await {
            Ok(_) => {
                match ns.as_deref().filter(|_| def.namespaced) {
                    Some(ns) => println!("{} \"{name}\" deleted from {ns} namespace", resource::type_name(def)),
                    None => println!("{} \"{name}\" deleted", resource::type_name(def)),
                }
                deleted.push((def, ns, name));
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) => {
                if let Some(prev) = last_error.replace(e) {
                    eprintln!("{prev}");
                }
            }
        }
    }
    if args.wait {
        for (def, ns, name) in &deleted {
            let what = resource::ref_name(def, name);
            watch_until(ctx, def, ns.as_deref(), name, timeout, &what, |s| s.is_none()).await?;
        }
    }
    match last_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
