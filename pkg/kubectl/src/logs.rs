//! `logs`: a container's output, from the pod's `log` subresource.
//!
//! `GET /api/v1/namespaces/<ns>/pods/<name>/log?container=..&follow=..&tailLines=..&previous=..`
//! (and `timestamps`, `sinceSeconds`, `sinceTime`, `limitBytes`), printed byte for byte as it
//! arrives. `-c` may name an init container or an ephemeral one (`debug`'s). Without `-c`, a pod with one container uses it; a pod
//! with several needs `-c` (the error lists the names). The text comes from the kubelet
//! through the apiserver, so this works once a kubelet serves the node the pod runs on.

use std::io::Write as _;

use crate::cli::LogsArgs;
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::resource;
use crate::wait::parse_duration;

/// Runs `logs`.
pub async fn run(ctx: &Connection, args: &LogsArgs) -> Result<()> {
    let def = resource::resolve("pods")?;
    let name = match args.pod.split_once('/') {
        Some((ty, name)) if resource::resolve(ty)?.plural == "pods" => name.to_string(),
        Some((ty, _)) => return Err(Error::msg(format!("logs are read from pods, not {ty}"))),
        None => args.pod.clone(),
    };
    let p = path(def, ctx.ns_for(def), Some(&name));
    let pod = ctx.get(&p).await?;
    let names = |list: &str| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init_containers = names("initContainers");
    let ephemeral_containers = names("ephemeralContainers");
    let container = match &args.container {
        Some(c) if containers.contains(c) || init_containers.contains(c) || ephemeral_containers.contains(c) => {
            c.clone()
        }
        Some(c) => {
            return Err(Error::msg(format!(
                "container {c} is not valid for pod {name}; choose one of: [{}]",
                containers.join(" ")
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(Error::msg(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let tail = args.tail.filter(|t| *t >= 0).map(|t| t.to_string()).unwrap_or_default();
    let since = match args.since.as_deref().map(parse_duration).transpose()? {
        Some(Some(since)) => since.as_secs().max(1).to_string(),
        Some(None) => return Err(Error::msg("--since must be greater than 0")),
        None => String::new(),
    };
    let since_time = match args.since_time.as_deref() {
        Some(time) => {
            time.parse::<jiff::Timestamp>()
                .map_err(|e| Error::msg(format!("--since-time {time:?} is not an RFC 3339 time: {e}")))?;
            time.to_string()
        }
        None => String::new(),
    };
    let limit = args.limit_bytes.map(|n| n.to_string()).unwrap_or_default();
    let url = with_query(
        &format!("{p}/log"),
        &[
            ("container", &container),
            ("follow", if args.follow { "true" } else { "" }),
            ("tailLines", &tail),
            ("previous", if args.previous { "true" } else { "" }),
            ("timestamps", if args.timestamps { "true" } else { "" }),
            ("sinceSeconds", &since),
            ("sinceTime", &since_time),
            ("limitBytes", &limit),
        ],
    );
    let mut stream = ctx.stream(&url, "text/plain, */*").await?;
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.next_chunk().await? {
        stdout.write_all(&chunk)?;
        stdout.flush()?;
    }
    Ok(())
}
