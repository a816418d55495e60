//! Container logs over HTTP: the kubelet's `/containerLogs/{namespace}/{pod}/{container}`.
//!
//! Each container's output is in `<root-dir>/pods/<namespace>_<pod>_<uid>/<container>/<restart
//! count>.log` (plus rotated `<n>.log.<time>` files), in the CRI log format written by the log
//! driver ([`crate::crilog`]). This serves them on the kubelet's `--port`, the endpoint the
//! Kubernetes apiserver's `pods/log` proxies to, with the same query: `tailLines=<n>` (the last
//! n records), `sinceSeconds=<s>` / `sinceTime=<RFC 3339>` (records written since then),
//! `timestamps=true` (each record prefixed with its time), `limitBytes=<n>`, `previous=true`
//! (the run before the current one) and `follow=true` (keep streaming what is appended, across
//! rotations, until the container stops running, is restarted, or the client goes away).
//!
//! What it keeps true (`test/tests/kubelet_containerd.rs`:
//! `logs_are_served_with_tail_lines_previous_and_follow`, `logs_have_timestamps_since_and_rotate`):
//! what the container wrote comes back byte for byte, in order, rotated files included; a
//! missing pod, container or previous run is a 404; a bad query is a 400.
//!
//! When a pod was recreated under the same name, the most recently written log directory wins.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::crilog::{self, Record};
use crate::runtime::{ContainerState, Runtime};

/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The query of `/containerLogs`, as the apiserver forwards it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    /// Only the last this many records.
    pub tail_lines: Option<usize>,
    /// Keep streaming new output.
    #[serde(default)]
    pub follow: bool,
    /// The previous run of the container instead of the current one.
    #[serde(default)]
    pub previous: bool,
    /// Prefix every record with the time it was written (RFC 3339).
    #[serde(default)]
    pub timestamps: bool,
    /// Only records of the last this many seconds.
    pub since_seconds: Option<i64>,
    /// Only records written at or after this time (RFC 3339).
    pub since_time: Option<String>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
}

/// The runtime the log server asks whether a container still runs (so that `follow` ends when
/// it stops, as in Kubernetes). Filled in once the kubelet has connected its runtime; until
/// then a follow ends only when the container is restarted or the client leaves.
#[derive(Clone, Default)]
pub struct RuntimeSlot(Arc<OnceLock<Arc<dyn Runtime>>>);

impl RuntimeSlot {
    /// Hands the runtime to the log server (only the first call counts).
    pub fn set(&self, runtime: Arc<dyn Runtime>) {
        let _ = self.0.set(runtime);
    }

    /// The runtime, once the kubelet has connected it.
    pub(crate) fn get(&self) -> Option<Arc<dyn Runtime>> {
        self.0.get().cloned()
    }

    /// Whether container `container` of pod `uid` may still write to its log: running, or
    /// being created. Unknown (no runtime yet, or the runtime failed to answer) counts as yes.
    async fn may_write(&self, uid: &str, container: &str) -> bool {
        let Some(runtime) = self.0.get() else { return true };
        match runtime.pod_status(uid).await {
            Ok(Some(status)) => status.containers.iter().any(|status| {
                status.name == container
                    && match &status.state {
                        ContainerState::Running { .. } => true,
                        ContainerState::Waiting { reason, .. } => reason == "ContainerCreating",
                        ContainerState::Terminated(_) => false,
                    }
            }),
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

impl std::fmt::Debug for RuntimeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeSlot").field("set", &self.0.get().is_some()).finish()
    }
}

struct LogState {
    root_dir: PathBuf,
    runtime: RuntimeSlot,
}

/// The router serving `/containerLogs/...` from the log files under `root_dir`.
pub fn router(root_dir: PathBuf, runtime: RuntimeSlot) -> Router {
    Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .with_state(Arc::new(LogState { root_dir, runtime }))
}

/// Refuses names that are not what Kubernetes allows for a namespace (DNS-1123 label), a pod
/// (DNS-1123 subdomain) and a container (DNS-1123 label): the log and exec handlers build file
/// paths from them, so `..`, `/` or anything else that could leave the kubelet's root directory
/// never gets that far.
pub(crate) fn check_names(namespace: &str, pod: &str, container: &str) -> Result<(), String> {
    use rkube_api::validation::{is_dns1123_label, is_dns1123_subdomain};
    for (what, value, problems) in [
        ("namespace", namespace, is_dns1123_label(namespace)),
        ("pod name", pod, is_dns1123_subdomain(pod)),
        ("container name", container, is_dns1123_label(container)),
    ] {
        if let Some(problem) = problems.first() {
            return Err(format!("invalid {what} {value:?}: {problem}"));
        }
    }
    Ok(())
}

/// The log directory of a container: the newest `<namespace>_<pod>_<uid>/<container>`; `None`
/// for names [`check_names`] refuses.
pub(crate) fn container_dir(root_dir: &Path, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
    check_names(namespace, pod, container).ok()?;
    let prefix = format!("{namespace}_{pod}_");
    std::fs::read_dir(root_dir.join("pods"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.starts_with(&prefix)))
        .map(|entry| entry.path().join(container))
        .filter(|dir| dir.is_dir())
        .max_by_key(|dir| dir.metadata().and_then(|meta| meta.modified()).ok())
}

/// The uid of pod `namespace/pod` on this node: that of its newest `<namespace>_<pod>_<uid>`
/// directory under `root_dir/pods`.
pub(crate) fn pod_uid(root_dir: &Path, namespace: &str, pod: &str) -> Option<String> {
    let prefix = format!("{namespace}_{pod}_");
    std::fs::read_dir(root_dir.join("pods"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let uid = entry.file_name().to_str()?.strip_prefix(&prefix)?.to_string();
            Some((entry.metadata().and_then(|meta| meta.modified()).ok(), uid))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, uid)| uid)
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

fn not_found(message: String) -> Response {
    (StatusCode::NOT_FOUND, message).into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// Turns records into what the client reads: the content (plus the newline a full record
/// stands for), optionally after the time; records before `since` are skipped; output stops
/// after `limit` bytes.
#[derive(Debug)]
struct Formatter {
    timestamps: bool,
    since: Option<Timestamp>,
    /// Bytes still allowed (`limitBytes`), `None`: no limit.
    limit: Option<usize>,
}

impl Formatter {
    fn new(options: &LogOptions) -> Result<Formatter, String> {
        let since = match (options.since_seconds, options.since_time.as_deref()) {
            (Some(_), Some(_)) => return Err("at most one of sinceSeconds or sinceTime may be specified".into()),
            (Some(seconds), None) if seconds <= 0 => return Err("sinceSeconds must be greater than 0".into()),
            (Some(seconds), None) => {
                Some(Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MIN))
            }
            (None, Some(time)) => {
                Some(time.parse::<Timestamp>().map_err(|error| format!("sinceTime {time:?}: {error}"))?)
            }
            (None, None) => None,
        };
        Ok(Formatter { timestamps: options.timestamps, since, limit: options.limit_bytes })
    }

    /// Whether the byte limit is used up.
    fn done(&self) -> bool {
        self.limit == Some(0)
    }

    fn push(&mut self, record: &Record<'_>, out: &mut Vec<u8>) {
        if let (Some(since), Some(time)) = (self.since, record.time)
            && time < since
        {
            return;
        }
        let start = out.len();
        if self.timestamps && !record.time_text.is_empty() {
            out.extend_from_slice(record.time_text.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(record.content);
        if !record.partial {
            out.push(b'\n');
        }
        if let Some(limit) = &mut self.limit {
            let written = out.len() - start;
            if written > *limit {
                out.truncate(start + *limit);
            }
            *limit = limit.saturating_sub(written);
        }
    }

    /// Formats the complete lines of `text` (records), at most the last `tail` of them.
    fn format(&mut self, text: &[u8], tail: Option<usize>) -> Vec<u8> {
        let lines: Vec<&[u8]> = complete_lines(text).collect();
        let skip = tail.map_or(0, |tail| lines.len().saturating_sub(tail));
        let mut out = Vec::new();
        for line in &lines[skip..] {
            if self.done() {
                break;
            }
            self.push(&crilog::parse(line), &mut out);
        }
        out
    }
}

/// The newline-terminated lines of `text`, without their newline (a last line still being
/// written is left out).
fn complete_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let complete = text.iter().rposition(|byte| *byte == b'\n').map_or(&text[..0], |end| &text[..end]);
    complete.split(|byte| *byte == b'\n').filter(move |_| !complete.is_empty())
}

/// The length of the complete lines at the start of `text`.
fn complete_len(text: &[u8]) -> usize {
    text.iter().rposition(|byte| *byte == b'\n').map_or(0, |end| end + 1)
}

async fn container_logs(
    State(state): State<Arc<LogState>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(options): Query<LogOptions>,
) -> Response {
    if let Err(message) = check_names(&namespace, &pod, &container) {
        return bad_request(message);
    }
    let mut formatter = match Formatter::new(&options) {
        Ok(formatter) => formatter,
        Err(message) => return bad_request(message),
    };
    let Some(dir) = container_dir(&state.root_dir, &namespace, &pod, &container) else {
        return not_found(format!("no logs for container {container} of pod {namespace}/{pod} on this node"));
    };
    let runs = runs(&dir);
    let run = if options.previous { runs.len().checked_sub(2).map(|at| runs[at]) } else { runs.last().copied() };
    let Some(run) = run else {
        return not_found(format!("container {container} of pod {namespace}/{pod} has no previous run"));
    };
    let path = dir.join(format!("{run}.log"));
    // The current file is opened first, so nothing written meanwhile is missed by a follow.
    let (mut file, ino) = match open(&path).await {
        Ok(opened) => opened,
        Err(error) => return not_found(format!("{}: {error}", path.display())),
    };
    let mut text = Vec::new();
    for rotated in crilog::rotated_files(&path) {
        text.extend(tokio::fs::read(&rotated).await.unwrap_or_default());
    }
    let mut current = Vec::new();
    if let Err(error) = file.read_to_end(&mut current).await {
        return not_found(format!("{}: {error}", path.display()));
    }
    // Only complete lines now; a follow goes on from the first incomplete one.
    let read = complete_len(&current);
    text.extend_from_slice(&current[..read]);
    let first = bytes::Bytes::from(formatter.format(&text, options.tail_lines));
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !options.follow || options.previous || formatter.done() {
        return (headers, first).into_response();
    }
    if let Err(error) = file.seek(SeekFrom::Start(read as u64)).await {
        return not_found(format!("{}: {error}", path.display()));
    }
    let uid = pod_dir_uid(&dir);
    let tail = LogTail {
        path,
        file,
        ino,
        newer: dir.join(format!("{}.log", run + 1)),
        uid,
        container,
        runtime: state.runtime.clone(),
        finished: false,
    };
    let follow = Follow { tail, pending: Some(first), formatter };
    let stream =
        futures::stream::unfold(follow, |mut follow| async move { follow.next().await.map(|chunk| (chunk, follow)) });
    (headers, Body::from_stream(stream)).into_response()
}

impl LogTail {
    /// The complete lines appended since the last read; a line still being written is left for
    /// the next read.
    async fn read_complete(&mut self) -> std::io::Result<Vec<u8>> {
        let mut appended = Vec::new();
        self.file.read_to_end(&mut appended).await?;
        let complete = complete_len(&appended);
        if complete < appended.len() {
            let back = i64::try_from(appended.len() - complete).unwrap_or(i64::MAX);
            self.file.seek(SeekFrom::Current(-back)).await?;
            appended.truncate(complete);
        }
        Ok(appended)
    }
}

/// Opens a log file and tells its inode (to notice rotations).
async fn open(path: &Path) -> std::io::Result<(tokio::fs::File, u64)> {
    let file = tokio::fs::File::open(path).await?;
    let ino = file.metadata().await?.ino();
    Ok((file, ino))
}

/// The log of a container's run read as it grows, across rotations, until the run is over: the
/// open file, where it was read to, and when to stop.
struct LogTail {
    path: PathBuf,
    file: tokio::fs::File,
    ino: u64,
    /// The file of the container's next run: once it exists, this run is over.
    newer: PathBuf,
    uid: String,
    container: String,
    runtime: RuntimeSlot,
    /// The run is over and its last lines were returned.
    finished: bool,
}

impl LogTail {
    /// The next complete lines written (CRI records); `None` once the run is over (the container
    /// stopped or restarted) and everything it wrote was returned.
    async fn next(&mut self) -> Option<std::io::Result<Vec<u8>>> {
        if self.finished {
            return None;
        }
        loop {
            let appended = match self.read_complete().await {
                Ok(appended) => appended,
                Err(error) => return Some(Err(error)),
            };
            if !appended.is_empty() {
                return Some(Ok(appended));
            }
            // Nothing new. Rotated? Then the old file is finished: go on with the new one.
            let rotated = tokio::fs::metadata(&self.path).await.map(|meta| meta.ino()).is_ok_and(|ino| ino != self.ino);
            if rotated {
                let last = self.read_complete().await.unwrap_or_default();
                match open(&self.path).await {
                    Ok((file, ino)) => (self.file, self.ino) = (file, ino),
                    Err(error) => return Some(Err(error)),
                }
                if !last.is_empty() {
                    return Some(Ok(last));
                }
                continue;
            }
            if self.newer.exists() || !self.runtime.may_write(&self.uid, &self.container).await {
                // One last read: what was written just before the container stopped.
                self.finished = true;
                let last = self.read_complete().await.unwrap_or_default();
                return (!last.is_empty()).then_some(Ok(last));
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}

/// A followed log (`follow=true`): the lines so far, then those written until the run ends.
struct Follow {
    tail: LogTail,
    pending: Option<bytes::Bytes>,
    formatter: Formatter,
}

impl Follow {
    /// The next chunk for the client; `None` ends the stream.
    async fn next(&mut self) -> Option<std::io::Result<bytes::Bytes>> {
        if let Some(first) = self.pending.take() {
            return Some(Ok(first));
        }
        while !self.formatter.done() {
            match self.tail.next().await? {
                Ok(lines) => {
                    let out = self.formatter.format(&lines, None);
                    if !out.is_empty() {
                        return Some(Ok(bytes::Bytes::from(out)));
                    }
                }
                Err(error) => return Some(Err(error)),
            }
        }
        None
    }
}

/// The output of the current run of a container started without stdin or tty, from now on,
/// read from its log (what `kubectl attach` shows for such a container): each record's content
/// (with the newline it stands for) as stdout or stderr; the channel closes when the run ends.
/// `None` when the container has no log here.
pub(crate) async fn attach_to_log(
    root_dir: &Path,
    (namespace, pod, container): (&str, &str, &str),
    runtime: RuntimeSlot,
) -> Option<tokio::sync::broadcast::Receiver<crate::runtime::Output>> {
    let dir = container_dir(root_dir, namespace, pod, container)?;
    let run = runs(&dir).last().copied()?;
    let path = dir.join(format!("{run}.log"));
    let (mut file, ino) = open(&path).await.ok()?;
    file.seek(SeekFrom::End(0)).await.ok()?;
    let uid = pod_dir_uid(&dir);
    let newer = dir.join(format!("{}.log", run + 1));
    let mut tail = LogTail { path, file, ino, newer, uid, container: container.to_string(), runtime, finished: false };
    let (sender, receiver) = tokio::sync::broadcast::channel(256);
    tokio::spawn(async move {
        while let Some(Ok(lines)) = tail.next().await {
            for line in complete_lines(&lines) {
                let record = crilog::parse(line);
                let mut data = record.content.to_vec();
                if !record.partial {
                    data.push(b'\n');
                }
                let stderr = record.stream == Some(crilog::Stream::Stderr);
                if sender.send(crate::runtime::Output { stderr, data: data.into() }).is_err() {
                    return; // nobody is attached any more
                }
            }
        }
    });
    Some(receiver)
}

/// The pod uid in the name of a container's log directory's parent, `<namespace>_<pod>_<uid>`.
fn pod_dir_uid(container_dir: &Path) -> String {
    container_dir
        .parent()
        .and_then(|pod_dir| pod_dir.file_name())
        .and_then(|name| name.to_str())
        .and_then(|name| name.rsplit('_').next())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the `{container}` segment was percent-decoded and joined onto the pod's
    /// directory, so `..%2F..%2F..%2Fsecret` read `<dir>/<n>.log` files outside the root.
    #[tokio::test]
    async fn a_path_segment_that_could_leave_the_root_is_refused_and_nothing_outside_is_read() {
        use tower::ServiceExt;
        let base = tempfile::tempdir().expect("temp dir");
        let root = base.path().join("root");
        let pod_dir = root.join("pods").join("ns_p_uid").join("c");
        std::fs::create_dir_all(&pod_dir).expect("pod dir");
        std::fs::write(pod_dir.join("0.log"), "2026-11-23T10:00:00Z stdout F inside\n").expect("log");
        let outside = base.path().join("secret");
        std::fs::create_dir_all(&outside).expect("outside dir");
        std::fs::write(outside.join("0.log"), "2026-11-23T10:00:00Z stdout F SECRET\n").expect("log");
        let app = router(root, RuntimeSlot::default());
        let get = |path: &str| {
            let app = app.clone();
            let request = axum::http::Request::get(path).body(axum::body::Body::empty()).expect("request");
            async move {
                let response = app.oneshot(request).await.expect("infallible");
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let (status, body) = get("/containerLogs/ns/p/c").await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "inside\n"));
        for path in [
            "/containerLogs/ns/p/..%2F..%2F..%2Fsecret",
            "/containerLogs/ns/p/%2Ftmp%2Fsecret",
            "/containerLogs/ns/..%2F..%2Fsecret/c",
            "/containerLogs/..%2F..%2Fx/p/c",
            "/containerLogs/ns/p/UPPER",
        ] {
            let (status, body) = get(path).await;
            assert_eq!(status.as_u16(), 400, "{path}: {body}");
            assert!(!body.contains("SECRET"), "{path}: {body}");
        }
        assert!(check_names("ns", "p.x", "c").is_ok());
        assert!(container_dir(base.path(), "ns", "p", "../../secret").is_none());
    }

    fn options(query: &str) -> LogOptions {
        serde_urlencoded_like(query)
    }

    /// Parses a query the way axum's `Query` does (serde over `key=value&...`).
    fn serde_urlencoded_like(query: &str) -> LogOptions {
        let uri: axum::http::Uri = format!("/?{query}").parse().expect("uri");
        Query::<LogOptions>::try_from_uri(&uri).expect("query").0
    }

    const FILE: &str = "2026-11-23T10:00:00Z stdout F one\n\
                        2026-11-23T10:00:01Z stderr F two\n\
                        2026-11-23T10:00:02Z stdout P thr\n\
                        2026-11-23T10:00:02.5Z stdout F ee\n\
                        raw line from an old kubelet\n\
                        2026-11-23T10:00:03Z stdout F incompl";

    fn format(query: &str, tail: Option<usize>) -> String {
        let mut formatter = Formatter::new(&options(query)).expect("options");
        String::from_utf8(formatter.format(FILE.as_bytes(), tail)).expect("utf-8")
    }

    #[test]
    fn records_become_the_output_lines() {
        assert_eq!(format("", None), "one\ntwo\nthree\nraw line from an old kubelet\n");
        assert_eq!(format("", Some(2)), "ee\nraw line from an old kubelet\n");
        assert_eq!(format("", Some(0)), "");
    }

    #[test]
    fn timestamps_since_and_limit_apply_per_record() {
        assert_eq!(
            format("timestamps=true", Some(3)),
            "2026-11-23T10:00:02Z thr2026-11-23T10:00:02.5Z ee\nraw line from an old kubelet\n"
        );
        assert_eq!(format("sinceTime=2026-11-23T10:00:01Z", None), "two\nthree\nraw line from an old kubelet\n");
        assert_eq!(format("limitBytes=6", None), "one\ntw");
        assert!(Formatter::new(&options("sinceSeconds=0")).is_err());
        assert!(Formatter::new(&options("sinceSeconds=5&sinceTime=2026-11-23T10:00:01Z")).is_err());
        assert!(Formatter::new(&options("sinceTime=yesterday")).is_err());
        // Recent records pass sinceSeconds; old ones do not.
        let mut formatter = Formatter::new(&options("sinceSeconds=60")).expect("options");
        let now = format!("{} stdout F fresh\n", Timestamp::now());
        assert_eq!(formatter.format(now.as_bytes(), None), b"fresh\n");
        assert_eq!(formatter.format(FILE.as_bytes(), Some(4)), b"raw line from an old kubelet\n");
    }
}
