//! `attach`: the streams of a container's own process (its main process, not a new one as
//! with `exec`), over the apiserver's `pods/attach`.
//!
//! As kubectl: a completed pod is refused (`cannot attach a container in a completed pod;
//! current phase is Succeeded`); `-t` needs a container started with `tty: true` (else
//! `error: Unable to use a TTY - container x did not allocate one` and no terminal), and a
//! container started with one gets a terminal even without `-t`; with a terminal,
//! `If you don't see a command prompt, try pressing enter.` goes to stderr first (the process
//! printed its prompt before we came). Then the session runs as [`crate::stream`] describes,
//! until the process ends. Without stdin or a terminal, the process's output from now on is
//! shown until it ends.

use serde_json::Value;

use crate::cli::AttachArgs;
use crate::context::{Connection, escape, path};
use crate::error::{Error, Result};
use crate::resource;
use crate::stream::{self, Streams};

/// Runs `attach`.
pub async fn run(ctx: &Connection, args: &AttachArgs) -> Result<()> {
    let def = resource::resolve("pods")?;
    let name = match args.pod.split_once('/') {
        Some((ty, name)) if resource::resolve(ty)?.plural == "pods" => name.to_string(),
        Some((ty, _)) => return Err(Error::msg(format!("attach works on pods, not {ty}"))),
        None => args.pod.clone(),
    };
    let pod = ctx.get(&path(def, ctx.ns_for(def), Some(&name))).await?;
    attach(ctx, &pod, args.container.as_deref(), args.stdin, args.tty).await
}

/// Attaches to `container` (default: kubectl's default container) of `pod`.
pub async fn attach(ctx: &Connection, pod: &Value, container: Option<&str>, stdin: bool, tty: bool) -> Result<()> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(Error::msg(format!("cannot attach a container in a completed pod; current phase is {phase}")));
    }
    let container = match container {
        Some(container) => container.to_string(),
        None => crate::exec::default_container(pod)?,
    };
    let spec = ["containers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| pod["spec"][*field].as_array().into_iter().flatten())
        .find(|c| c["name"] == container.as_str())
        .ok_or_else(|| Error::msg(format!("container {container} not found in pod {name}")))?;
    let container_tty = spec["tty"].as_bool().unwrap_or(false);
    let mut tty = tty;
    if tty && !container_tty {
        eprintln!("error: Unable to use a TTY - container {container} did not allocate one");
        tty = false;
    } else if !tty && container_tty {
        // Its output is a terminal's: there is no separate stderr to ask for.
        tty = true;
    }
    let streams = Streams::decide(stdin, tty);
    if streams.tty {
        eprintln!("If you don't see a command prompt, try pressing enter.");
    }
    let def = resource::resolve("pods")?;
    let mut query = vec![format!("container={}", escape(&container))];
    query.extend(streams.query());
    let url = format!("{}/attach?{}", path(def, ctx.ns_for(def), Some(name)), query.join("&"));
    let socket = ctx.websocket(&url, stream::PROTOCOL, &format!("attach {name}")).await?;
    stream::run(socket, streams, "attach").await
}
