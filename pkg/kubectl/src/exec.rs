//! `exec`: a command in a container of a running pod, over the apiserver's `pods/exec`.
//!
//! Opens the WebSocket kubectl opens (`GET …/pods/<name>/exec?command=…&container=…&stdout=true
//! [&stderr=true][&stdin=true][&tty=true]`, subprotocol `v5.channel.k8s.io`) and runs the
//! session as [`crate::stream`] describes: output as it arrives, `-i` this process's stdin,
//! `-it` a terminal (raw mode, its size and every resize), and the command's exit code as
//! rkubectl's (as kubectl does). `-t` without `-i`, or when stdin is not a terminal, runs
//! without a terminal, as with kubectl.

use crate::cli::ExecArgs;
use crate::context::{Connection, escape, path};
use crate::error::{Error, Result};
use crate::resource;
use crate::stream::{self, Streams};

/// Runs `exec`.
pub async fn run(ctx: &Connection, args: &ExecArgs) -> Result<()> {
    let def = resource::resolve("pods")?;
    let name = match args.pod.split_once('/') {
        Some((ty, name)) if resource::resolve(ty)?.plural == "pods" => name.to_string(),
        Some((ty, _)) => return Err(Error::msg(format!("exec runs in pods, not {ty}"))),
        None => args.pod.clone(),
    };
    let p = path(def, ctx.ns_for(def), Some(&name));
    // The pod first: a clear NotFound, and the default container.
    let pod = ctx.get(&p).await?;
    let container = match &args.container {
        Some(container) => container.clone(),
        None => default_container(&pod)?,
    };
    let streams = Streams::decide(args.stdin, args.tty);
    let mut query: Vec<String> = args.command.iter().map(|word| format!("command={}", escape(word))).collect();
    query.push(format!("container={}", escape(&container)));
    query.extend(streams.query());
    let socket =
        ctx.websocket(&format!("{p}/exec?{}", query.join("&")), stream::PROTOCOL, &format!("exec {name}")).await?;
    stream::run(socket, streams, "exec").await
}

/// The container a command goes to without `-c`: the one the annotation
/// `kubectl.kubernetes.io/default-container` names, else the first; with several containers
/// kubectl's `Defaulted container "x" out of: x, y` goes to stderr.
pub fn default_container(pod: &serde_json::Value) -> Result<String> {
    let names: Vec<&str> =
        pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    let annotated = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str();
    let chosen = annotated.filter(|name| names.contains(name)).or_else(|| names.first().copied());
    let Some(chosen) = chosen else {
        return Err(Error::msg(format!(
            "pod {} has no containers",
            pod["metadata"]["name"].as_str().unwrap_or_default()
        )));
    };
    if names.len() > 1 && annotated.is_none() {
        eprintln!("Defaulted container {chosen:?} out of: {}", names.join(", "));
    }
    Ok(chosen.to_string())
}
