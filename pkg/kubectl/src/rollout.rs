//! `rollout status|history|undo|restart` for deployments.
//!
//! - `status` watches the deployment until its controller reports the rollout done: it has
//!   observed the latest spec (`status.observedGeneration >= metadata.generation`) and all
//!   replicas are updated and available, printing progress lines as kubectl does.
//! - `history` lists the deployment's replicasets by their `deployment.kubernetes.io/revision`.
//! - `undo` copies the pod template of the previous (or `--to-revision`) replicaset back into
//!   the deployment.
//! - `restart` sets the template annotation `kubectl.kubernetes.io/restartedAt`, which makes
//!   the controller roll out new pods.
//!
//! All of these need the Deployment controller to act on the changes; without it `status`
//! waits and `history` is empty.

use serde_json::{Value, json};

use crate::cli::{RolloutArgs, RolloutCommand};
use crate::context::{Connection, path, with_query};
use crate::describe::{revision, selector_text};
use crate::error::{Error, Result};
use crate::printer::Table;
use crate::resource;
use crate::wait::{parse_duration, watch_until};

/// Runs a `rollout` subcommand.
pub async fn run(ctx: &Connection, cmd: &RolloutCommand) -> Result<()> {
    let (RolloutCommand::Status(args)
    | RolloutCommand::History(args)
    | RolloutCommand::Undo(args)
    | RolloutCommand::Restart(args)) = cmd;
    let (def, name) = resource::parse_one(&args.resources)?;
    if def.plural != "deployments" {
        return Err(Error::msg(format!("no rollout support for {} (only deployments)", def.plural)));
    }
    let ns = ctx.ns_for(def);
    let p = path(def, ns, Some(&name));
    let what = resource::ref_name(def, &name);
    match cmd {
        RolloutCommand::Status(_) => status(ctx, def, ns, &name, args).await,
        RolloutCommand::History(_) => {
            let deploy = ctx.get(&p).await?;
            let sets = replicasets(ctx, &deploy).await?;
            println!("{what}");
            let mut t = Table::new(&["REVISION", "CHANGE-CAUSE"]);
            for rs in &sets {
                let cause = rs["metadata"]["annotations"]["kubernetes.io/change-cause"].as_str().unwrap_or("<none>");
                t.rows.push(vec![revision(rs).to_string(), cause.to_string()]);
            }
            print!("{}", t.render(false));
            Ok(())
        }
        RolloutCommand::Undo(_) => {
            let deploy = ctx.get(&p).await?;
            let sets = replicasets(ctx, &deploy).await?;
            let current = sets.last().map(revision).unwrap_or(0);
            let target = if args.to_revision > 0 {
                sets.iter().find(|rs| revision(rs) == args.to_revision)
            } else {
                sets.iter().rev().find(|rs| revision(rs) < current)
            };
            let Some(rs) = target else {
                return Err(Error::msg(format!("no rollout history found for {what} to go back to")));
            };
            let mut template = rs["spec"]["template"].clone();
            if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
                labels.remove("pod-template-hash");
            }
            let patch = json!({"spec": {"template": {"$patch": "replace", "metadata": template["metadata"], "spec": template["spec"]}}});
            ctx.patch(&p, "application/strategic-merge-patch+json", &patch).await?;
            println!("{what} rolled back");
            Ok(())
        }
        RolloutCommand::Restart(_) => {
            let now = jiff::Timestamp::now().to_string();
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
            ctx.patch(&p, "application/strategic-merge-patch+json", &patch).await?;
            println!("{what} restarted");
            Ok(())
        }
    }
}

async fn replicasets(ctx: &Connection, deploy: &Value) -> Result<Vec<Value>> {
    let def = resource::resolve("replicasets")?;
    let ns = deploy["metadata"]["namespace"].as_str();
    let selector = selector_text(&deploy["spec"]["selector"]);
    let list = ctx.get(&with_query(&path(def, ns, None), &[("labelSelector", &selector)])).await?;
    let uid = deploy["metadata"]["uid"].clone();
    let mut sets: Vec<Value> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|rs| rs["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|r| r["uid"] == uid)))
        .collect();
    sets.sort_by_key(revision);
    Ok(sets)
}

/// Where a rollout is: `Ok(None)` when done, else the progress line to print.
pub fn rollout_progress(name: &str, d: &Value) -> Option<String> {
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let generation = n(&d["metadata"]["generation"]);
    let st = &d["status"];
    if n(&st["observedGeneration"]) < generation {
        return Some("Waiting for deployment spec update to be observed...".into());
    }
    let wanted = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = n(&st["updatedReplicas"]);
    if updated < wanted {
        return Some(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ));
    }
    let total = n(&st["replicas"]);
    if total > updated {
        return Some(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
            total - updated
        ));
    }
    let available = n(&st["availableReplicas"]);
    if available < updated {
        return Some(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    None
}

async fn status(
    ctx: &Connection,
    def: &rkube_api::ResourceDef,
    ns: Option<&str>,
    name: &str,
    args: &RolloutArgs,
) -> Result<()> {
    let timeout = parse_duration(&args.timeout)?;
    let what = resource::ref_name(def, name);
    let mut last_line = String::new();
    let mut missing = false;
    watch_until(ctx, def, ns, name, timeout, &what, |state| {
        let Some(d) = state else {
            missing = true;
            return true;
        };
        match rollout_progress(name, d) {
            None => true,
            Some(line) => {
                if line != last_line {
                    println!("{line}");
                    last_line = line;
                }
                false
            }
        }
    })
    .await?;
    if missing {
        return Err(resource::not_found(def, name));
    }
    println!("deployment \"{name}\" successfully rolled out");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_follows_kubectl_messages() {
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {"observedGeneration": 1}});
        assert_eq!(rollout_progress("web", &d).unwrap(), "Waiting for deployment spec update to be observed...");
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 2}});
        assert!(rollout_progress("web", &d).unwrap().contains("1 out of 2 new replicas"));
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}});
        assert_eq!(rollout_progress("web", &d), None);
    }
}
