//! Container logs over HTTP: the kubelet's `/containerLogs/{namespace}/{pod}/{container}`.
//!
//! The containerd runtime appends each container's output to
//! `<root-dir>/pods/<namespace>_<pod>_<uid>/<container>/<restart count>.log`; this serves those
//! files on the kubelet's `--port`, the endpoint the Kubernetes apiserver's `pods/log` proxies
//! to (path and query as in Kubernetes): `tailLines=<n>`, `previous=true` (the run before the
//! current one), `follow=true` (keep streaming what is appended, until the client goes away or
//! the container is restarted, i.e. a newer log file appears).
//!
//! What it keeps true (`test/tests/kubelet_containerd.rs`:
//! `logs_are_served_with_tail_lines_previous_and_follow`): what the container wrote comes back
//! byte for byte, in order; a missing pod, container or previous run is a 404.
//!
//! Not yet: the CRI log format, so no `timestamps` or `sinceSeconds`; rotation; `limitBytes`.
//! When a pod was recreated under the same name, the most recently written log directory wins.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The query of `/containerLogs`, as the apiserver forwards it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    /// Only the last this many lines.
    pub tail_lines: Option<usize>,
    /// Keep streaming new output.
    #[serde(default)]
    pub follow: bool,
    /// The previous run of the container instead of the current one.
    #[serde(default)]
    pub previous: bool,
}

/// The router serving `/containerLogs/...` from the log files under `root_dir`.
pub fn router(root_dir: PathBuf) -> Router {
    Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .with_state(Arc::new(root_dir))
}

/// The log directory of a container: the newest `<namespace>_<pod>_<uid>/<container>`.
fn container_dir(root_dir: &Path, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
    let prefix = format!("{namespace}_{pod}_");
    std::fs::read_dir(root_dir.join("pods"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.starts_with(&prefix)))
        .map(|entry| entry.path().join(container))
        .filter(|dir| dir.is_dir())
        .max_by_key(|dir| dir.metadata().and_then(|meta| meta.modified()).ok())
}

/// The run numbers that have a log file in `dir`, ascending.
fn runs(dir: &Path) -> Vec<u32> {
    let mut runs: Vec<u32> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    runs.sort_unstable();
    runs
}

/// The last `lines` lines of `text` (all of it when `None`).
fn tail(text: &[u8], lines: Option<usize>) -> &[u8] {
    let Some(lines) = lines else { return text };
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (at, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return &text[at + 1..];
            }
        }
    }
    if lines == 0 { &text[text.len()..] } else { text }
}

fn not_found(message: String) -> Response {
    (StatusCode::NOT_FOUND, message).into_response()
}

async fn container_logs(
    State(root_dir): State<Arc<PathBuf>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(options): Query<LogOptions>,
) -> Response {
    let Some(dir) = container_dir(&root_dir, &namespace, &pod, &container) else {
        return not_found(format!("no logs for container {container} of pod {namespace}/{pod} on this node"));
    };
    let runs = runs(&dir);
    let run = if options.previous { runs.len().checked_sub(2).map(|at| runs[at]) } else { runs.last().copied() };
    let Some(run) = run else {
        return not_found(format!("container {container} of pod {namespace}/{pod} has no previous run"));
    };
    let path = dir.join(format!("{run}.log"));
    let text = match tokio::fs::read(&path).await {
        Ok(text) => text,
        Err(error) => return not_found(format!("{}: {error}", path.display())),
    };
    let first = bytes::Bytes::copy_from_slice(tail(&text, options.tail_lines));
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !options.follow || options.previous {
        return (headers, first).into_response();
    }
    // Follow: what was there, then every append, until a newer run's file appears.
    let newer = dir.join(format!("{}.log", run + 1));
    let state = (Some(first), path, text.len() as u64, newer);
    let stream = futures::stream::unfold(state, |(pending, path, offset, newer)| async move {
        if let Some(chunk) = pending {
            return Some((Ok::<_, std::io::Error>(chunk), (None, path, offset, newer)));
        }
        loop {
            let appended = read_from(&path, offset).await;
            match appended {
                Ok(bytes) if !bytes.is_empty() => {
                    let offset = offset + bytes.len() as u64;
                    return Some((Ok(bytes::Bytes::from(bytes)), (None, path, offset, newer)));
                }
                Ok(_) if newer.exists() => return None,
                Ok(_) => tokio::time::sleep(FOLLOW_POLL).await,
                Err(error) => return Some((Err(error), (None, path, offset, newer))),
            }
        }
    });
    (headers, Body::from_stream(stream)).into_response()
}

/// What `path` holds after `offset` (empty when nothing new; from 0 if the file shrank).
async fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = tokio::fs::File::open(path).await?;
    let length = file.metadata().await?.len();
    let start = if length < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start)).await?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", Some(2)), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", Some(1)), b"c");
        assert_eq!(tail(b"a\nb\n", Some(5)), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", Some(0)), b"");
        assert_eq!(tail(b"a\nb\n", None), b"a\nb\n");
    }
}
