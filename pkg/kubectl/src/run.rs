//! `run`: a pod running an image (or, with `--replicas`, a deployment), optionally attached to.
//!
//! The pod is kubectl's: labelled `run=NAME`, one container named NAME, `restartPolicy` from
//! `--restart` (default `Always`), the arguments after `--` its args (`--command`: its
//! command); `-i` keeps its stdin open (`stdin: true`, and `stdinOnce: true` so that the end of
//! the session ends its stdin), `-t` gives it a terminal; `--overrides` is merged into the object
//! before it is sent (a JSON merge patch, or `--override-type=strategic`).
//!
//! Without `-i` (or `--attach`) it prints `pod/NAME created`. Attached, it waits until the pod
//! runs (`--pod-running-timeout`), attaches as `attach` does (a pod that finished already has
//! its log printed instead, as kubectl does), and then, for `--restart=Never|OnFailure`, waits
//! for the pod to finish: a failed container's exit code becomes rkubectl's (`pod default/x
//! terminated (Error)`). `--rm` then deletes the pod (`pod "x" deleted from default namespace`).

use std::io::Write as _;

use serde_json::{Value, json};

use crate::cli::RunArgs;
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::resource;
use crate::wait::{parse_duration, watch_until};

/// Runs `run`.
pub async fn run(ctx: &Connection, args: &RunArgs) -> Result<()> {
    let attach = args.attach.unwrap_or(args.stdin);
    if args.tty && !args.stdin {
        return Err(Error::msg("-i/--stdin is required for containers with -t/--tty=true"));
    }
    if args.rm && !attach {
        return Err(Error::msg("--rm should only be used for attached containers"));
    }
    if !matches!(args.restart.as_str(), "Always" | "OnFailure" | "Never") {
        return Err(Error::msg(format!("invalid restart policy: {}", args.restart)));
    }
    if args.replicas.is_some() && (attach || args.restart != "Always") {
        return Err(Error::msg("--replicas makes a deployment: it cannot be attached to, and restarts Always"));
    }
    let (def, object) = build(args)?;
    let object = match &args.overrides {
        Some(text) => overridden(&object, text, &args.override_type)?,
        None => object,
    };
    ctx.send(http::Method::POST, &path(def, ctx.ns_for(def), None), None, None, Some(&object)).await?;
    if !attach {
        println!("{} created", resource::ref_name(def, &args.name));
        return Ok(());
    }
    let outcome = attached(ctx, args).await;
    if args.rm {
        let options = json!({"propagationPolicy": "Background"});
        ctx.send(http::Method::DELETE, &path(def, ctx.ns_for(def), Some(&args.name)), None, None, Some(&options))
            .await?;
        println!("pod \"{}\" deleted from {} namespace", args.name, ctx.namespace);
    }
    outcome
}

/// The pod (or deployment) `run` creates, before `--overrides`.
fn build(args: &RunArgs) -> Result<(&'static rkube_api::ResourceDef, Value)> {
    let default_key = if args.replicas.is_some() { "app" } else { "run" };
    let mut labels = serde_json::Map::new();
    match &args.labels {
        Some(text) => {
            for pair in text.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| Error::msg(format!("invalid label {pair:?}")))?;
                labels.insert(k.to_string(), Value::String(v.to_string()));
            }
        }
        None => {
            labels.insert(default_key.to_string(), Value::String(args.name.clone()));
        }
    }
    let mut container = json!({"name": args.name, "image": args.image});
    if let Some(port) = args.port {
        container["ports"] = json!([{"containerPort": port}]);
    }
    if !args.env.is_empty() {
        let mut env = Vec::new();
        for pair in &args.env {
            let (k, v) = pair.split_once('=').ok_or_else(|| Error::msg(format!("invalid --env {pair:?}")))?;
            env.push(json!({"name": k, "value": v}));
        }
        container["env"] = Value::Array(env);
    }
    if !args.args.is_empty() {
        container[if args.command { "command" } else { "args" }] = json!(args.args);
    }
    if args.stdin {
        container["stdin"] = json!(true);
        container["stdinOnce"] = json!(true);
    }
    if args.tty {
        container["tty"] = json!(true);
    }
    let pod_spec = json!({"containers": [container], "restartPolicy": args.restart});
    Ok(match args.replicas {
        None => (
            resource::resolve("pods")?,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": args.name, "labels": labels}, "spec": pod_spec}),
        ),
        Some(replicas) => (
            resource::resolve("deployments")?,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": args.name, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec}
                }
            }),
        ),
    })
}

/// `object` with `--overrides` merged in.
fn overridden(object: &Value, text: &str, kind: &str) -> Result<Value> {
    let patch: Value =
        serde_json::from_str(text).map_err(|e| Error::msg(format!("--overrides is not valid JSON: {e}")))?;
    match kind {
        "merge" => Ok(merge_patch(object.clone(), &patch)),
        "strategic" => {
            let kind = object["kind"].as_str().unwrap_or_default();
            rkube_api::strategic_merge::strategic_merge(kind, object, &patch)
                .map_err(|e| Error::msg(format!("cannot apply --overrides: {e}")))
        }
        other => Err(Error::msg(format!("--override-type must be merge or strategic, not {other:?}"))),
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
fn merge_patch(target: Value, patch: &Value) -> Value {
    let Value::Object(changes) = patch else { return patch.clone() };
    let mut merged = match target {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    for (key, change) in changes {
        if change.is_null() {
            merged.remove(key);
        } else {
            let current = merged.remove(key).unwrap_or(Value::Null);
            merged.insert(key.clone(), merge_patch(current, change));
        }
    }
    Value::Object(merged)
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

fn finished(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Waits for the pod, attaches (or prints its log when it finished already), then waits for
/// its exit code when its restart policy lets it finish.
async fn attached(ctx: &Connection, args: &RunArgs) -> Result<()> {
    let pods = resource::resolve("pods")?;
    let ns = ctx.ns_for(pods);
    let timeout = parse_duration(&args.pod_running_timeout)?;
    let what = format!("pod/{}", args.name);
    let ready = |pod: Option<&Value>| {
        pod.is_none_or(|pod| {
            finished(pod) || (phase(pod) == "Running" && crate::wait::condition_status(pod, "Ready") == Some("True"))
        })
    };
    let pod = watch_until(ctx, pods, ns, &args.name, timeout, &what, ready)
        .await?
        .ok_or_else(|| resource::not_found(pods, &args.name))?;
    if finished(&pod) {
        print_log(ctx, &args.name).await?;
    } else {
        crate::attach::attach(ctx, &pod, Some(&args.name), args.stdin, args.tty).await?;
    }
    if args.restart == "Always" {
        return Ok(());
    }
    let done = |pod: Option<&Value>| {
        pod.is_none_or(|pod| if args.restart == "OnFailure" { phase(pod) == "Succeeded" } else { finished(pod) })
    };
    let pod = watch_until(ctx, pods, ns, &args.name, timeout, &what, done)
        .await?
        .ok_or_else(|| resource::not_found(pods, &args.name))?;
    let namespace = ctx.namespace.as_str();
    match phase(&pod) {
        "Succeeded" => Ok(()),
        "Failed" => {
            let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
            match terminated["exitCode"].as_i64().and_then(|code| i32::try_from(code).ok()) {
                Some(code) if code != 0 => Err(Error::Exited {
                    code,
                    message: format!(
                        "pod {namespace}/{} terminated ({})",
                        args.name,
                        terminated["reason"].as_str().unwrap_or("Error")
                    ),
                }),
                _ => Err(Error::msg(format!("pod {namespace}/{} failed with unknown exit code", args.name))),
            }
        }
        other => Err(Error::msg(format!("pod {namespace}/{} left in phase {other}", args.name))),
    }
}

/// Prints the whole log of the pod's container NAME (a pod that finished before we could attach).
async fn print_log(ctx: &Connection, name: &str) -> Result<()> {
    let pods = resource::resolve("pods")?;
    let url = with_query(&format!("{}/log", path(pods, ctx.ns_for(pods), Some(name))), &[("container", name)]);
    let mut stream = ctx.stream(&url, "text/plain, */*").await?;
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.next_chunk().await? {
        stdout.write_all(&chunk)?;
        stdout.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(line: &[&str]) -> RunArgs {
        let mut full = vec!["rkubectl", "run"];
        full.extend_from_slice(line);
        match crate::cli::Cli::try_parse_from(full).map(|cli| cli.command) {
            Ok(crate::cli::Command::Run(args)) => args,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn an_interactive_pod_keeps_its_stdin_open_once() {
        let (_, pod) = build(&args(&["sh", "--image=busybox", "-it", "--restart=Never", "--", "sh"])).expect("built");
        let container = &pod["spec"]["containers"][0];
        assert_eq!((container["stdin"].as_bool(), container["stdinOnce"].as_bool()), (Some(true), Some(true)));
        assert_eq!((container["tty"].as_bool(), container["args"].clone()), (Some(true), json!(["sh"])));
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["metadata"]["labels"], json!({"run": "sh"}));
    }

    #[test]
    fn overrides_merge_into_the_object() {
        let (_, pod) = build(&args(&["x", "--image=busybox"])).expect("built");
        let merged = overridden(&pod, r#"{"apiVersion":"v1","spec":{"nodeName":"n1","restartPolicy":null}}"#, "merge")
            .expect("ok");
        assert_eq!(merged["spec"]["nodeName"], "n1");
        assert!(merged["spec"].get("restartPolicy").is_none());
        assert_eq!(merged["spec"]["containers"][0]["image"], "busybox");
        assert!(overridden(&pod, "{not json", "merge").is_err());
        assert!(overridden(&pod, "{}", "json").is_err());
    }
}
