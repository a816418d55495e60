//! `debug POD --image=IMAGE [--target=CONTAINER]`: an ephemeral container added to a running
//! pod, as kubectl's `debug` adds one, and attached to with `-i`/`-it`.
//!
//! The container is kubectl's (its `general` profile): named `-c NAME` or `debugger-xxxxx`
//! (kubectl's `Defaulting debug container name to ...` on stderr), the arguments after `--` its
//! command (`--arguments-only`: its args), `stdin` with `-i`, `tty` with `-t`,
//! `terminationMessagePolicy: File`, the `SYS_PTRACE` capability, and with `--target` the
//! container whose process namespace it joins. It is added through the pod's
//! `ephemeralcontainers` subresource (a strategic merge patch carrying the pod's ephemeral
//! containers and the new one, so the server's "may not be removed" rule always holds).
//! With `-i` rkubectl waits until it runs and attaches as `attach` does (a container that has
//! finished already has its log printed instead); without, it returns once the container is
//! added, and the container's output is its log.
//!
//! Not promised: kubectl's `--copy-to`, `node/NAME`, `--share-processes` and the other
//! profiles.

use std::hash::{BuildHasher as _, Hasher as _};
use std::io::Write as _;

use serde_json::{Value, json};

use crate::cli::DebugArgs;
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::resource;
use crate::wait::{parse_duration, watch_until};

/// Runs `debug`.
pub async fn run(ctx: &Connection, args: &DebugArgs) -> Result<()> {
    let pods = resource::resolve("pods")?;
    let name = match args.pod.split_once('/') {
        Some((ty, name)) if resource::resolve(ty)?.plural == "pods" => name.to_string(),
        Some((ty, _)) => {
            return Err(Error::msg(format!("rkubectl debug adds ephemeral containers to pods only, not to {ty}")));
        }
        None => args.pod.clone(),
    };
    if args.tty && !args.stdin {
        return Err(Error::msg("-i/--stdin is required for containers with -t/--tty=true"));
    }
    let pod_path = path(pods, ctx.ns_for(pods), Some(&name));
    let pod = ctx.get(&pod_path).await?;
    let containers: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["spec"]["ephemeralContainers"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    if let Some(target) = &args.target
        && !pod["spec"]["containers"].as_array().into_iter().flatten().any(|c| c["name"] == target.as_str())
    {
        return Err(Error::msg(format!("container {target:?} not found in pod {name:?}")));
    }
    let container_name = match &args.container {
        Some(container) if containers.contains(&container.as_str()) => {
            return Err(Error::msg(format!("container {container:?} already exists in pod {name:?}")));
        }
        Some(container) => container.clone(),
        None => {
            let generated = generated_name(&containers);
            eprintln!("Defaulting debug container name to {generated}.");
            generated
        }
    };
    let container = ephemeral_container(&container_name, args);
    let mut list = pod["spec"]["ephemeralContainers"].as_array().cloned().unwrap_or_default();
    list.push(container);
    let patch = json!({"spec": {"ephemeralContainers": list}});
    ctx.patch(&format!("{pod_path}/ephemeralcontainers"), "application/strategic-merge-patch+json", &patch).await?;
    if !args.stdin {
        return Ok(());
    }
    let timeout = parse_duration(&args.pod_running_timeout)?;
    let what = format!("container {container_name} of pod/{name}");
    let state = |pod: &Value| -> Value {
        pod["status"]["ephemeralContainerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|status| status["name"] == container_name.as_str())
            .map(|status| status["state"].clone())
            .unwrap_or(Value::Null)
    };
    let started = |pod: Option<&Value>| {
        pod.is_none_or(|pod| {
            let state = state(pod);
            state.get("running").is_some() || state.get("terminated").is_some()
        })
    };
    let pod = watch_until(ctx, pods, ctx.ns_for(pods), &name, timeout, &what, started)
        .await?
        .ok_or_else(|| resource::not_found(pods, &name))?;
    if state(&pod).get("terminated").is_some() {
        let url = with_query(&format!("{pod_path}/log"), &[("container", &container_name)]);
        let mut stream = ctx.stream(&url, "text/plain, */*").await?;
        let mut stdout = std::io::stdout();
        while let Some(chunk) = stream.next_chunk().await? {
            stdout.write_all(&chunk)?;
            stdout.flush()?;
        }
        return Ok(());
    }
    crate::attach::attach(ctx, &pod, Some(&container_name), args.stdin, args.tty).await
}

/// The ephemeral container kubectl's `general` profile makes.
fn ephemeral_container(name: &str, args: &DebugArgs) -> Value {
    let mut container = json!({
        "name": name,
        "image": args.image,
        "terminationMessagePolicy": "File",
        "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}},
        // kubectl's Go types always send it.
        "resources": {},
    });
    if !args.command.is_empty() {
        container[if args.arguments_only { "args" } else { "command" }] = json!(args.command);
    }
    if args.stdin {
        container["stdin"] = json!(true);
    }
    if args.tty {
        container["tty"] = json!(true);
    }
    if let Some(policy) = &args.image_pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
    if !args.env.is_empty() {
        let env: Vec<Value> = args
            .env
            .iter()
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
                json!({"name": key, "value": value})
            })
            .collect();
        container["env"] = Value::Array(env);
    }
    if let Some(target) = &args.target {
        container["targetContainerName"] = json!(target);
    }
    container
}

/// `debugger-` and five of the characters Kubernetes' generated names use, not yet taken.
fn generated_name(taken: &[&str]) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    loop {
        // A process-random hasher fed the time: enough to make a name no one else picked.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        let mut seed = hasher.finish();
        let mut name = String::from("debugger-");
        for _ in 0..5 {
            let index = usize::try_from(seed % ALPHABET.len() as u64).unwrap_or(0);
            name.push(char::from(ALPHABET[index]));
            seed /= ALPHABET.len() as u64;
        }
        if !taken.contains(&name.as_str()) {
            return name;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(line: &[&str]) -> DebugArgs {
        let mut full = vec!["rkubectl", "debug"];
        full.extend_from_slice(line);
        match crate::cli::Cli::try_parse_from(full).map(|cli| cli.command) {
            Ok(crate::cli::Command::Debug(args)) => args,
            other => panic!("not debug: {other:?}"),
        }
    }

    #[test]
    fn the_container_is_kubectls_general_profile() {
        let args = args(&["app", "--image=busybox", "--target=main", "-it", "--", "sh"]);
        let container = ephemeral_container("probe", &args);
        assert_eq!(
            container,
            json!({"name": "probe", "image": "busybox", "terminationMessagePolicy": "File",
                "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}, "resources": {},
                "command": ["sh"], "stdin": true, "tty": true, "targetContainerName": "main"})
        );
    }

    #[test]
    fn generated_names_look_like_kubectls_and_avoid_taken_ones() {
        let name = generated_name(&[]);
        assert!(name.starts_with("debugger-") && name.len() == 14, "{name}");
        assert!(name[9..].bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)), "{name}");
    }
}
