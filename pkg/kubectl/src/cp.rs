//! `cp`: files and directories between this machine and a container, as kubectl copies them:
//! `tar` in the container, run through `exec`, with a tar stream on its stdin or stdout.
//!
//! - `cp LOCAL [NS/]POD:PATH`: LOCAL (a file or a directory, recursively) is packed with the
//!   name of PATH's last component and unpacked by `tar -xmf - -C <PATH's directory>` in the
//!   container; when PATH is a directory there (`test -d`), LOCAL goes inside it, keeping its
//!   own name.
//! - `cp [NS/]POD:PATH LOCAL`: `tar cf - PATH` in the container; every entry below PATH is
//!   written below LOCAL (a single file to LOCAL itself, or into LOCAL when that is a
//!   directory). Entries that would leave LOCAL (`..`, absolute names) are refused, symbolic
//!   links are skipped with a warning, as kubectl does.
//!
//! The container needs `tar` (busybox's will do). Not promised: `--retries`, and archives
//! larger than memory (the tar stream is held whole).

use std::path::{Component, Path, PathBuf};

use crate::cli::CpArgs;
use crate::context::{Connection, escape, path};
use crate::error::{Error, Result};
use crate::resource;
use crate::stream::{self, Io, Streams};

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    Local(PathBuf),
    Remote { namespace: Option<String>, pod: String, file: String },
}

/// `[NS/]POD:PATH` is a container's file; anything else a local one (as kubectl reads them).
fn parse_spec(text: &str) -> Result<Spec> {
    let Some((pod, file)) = text.split_once(':') else { return Ok(Spec::Local(PathBuf::from(text))) };
    if pod.is_empty() {
        return Err(Error::msg(format!(
            "filespec must match the canonical format: [[namespace/]pod:]file/path: {text:?}"
        )));
    }
    let (namespace, pod) = match pod.split_once('/') {
        Some((namespace, pod)) => (Some(namespace.to_string()), pod.to_string()),
        None => (None, pod.to_string()),
    };
    Ok(Spec::Remote { namespace, pod, file: file.to_string() })
}

/// Runs `cp`.
pub async fn run(ctx: &Connection, args: &CpArgs) -> Result<()> {
    match (parse_spec(&args.source)?, parse_spec(&args.destination)?) {
        (Spec::Local(local), Spec::Remote { namespace, pod, file }) => {
            let target = Target::new(ctx, namespace, pod, args.container.clone()).await?;
            upload(&target, &local, &file).await
        }
        (Spec::Remote { namespace, pod, file }, Spec::Local(local)) => {
            let target = Target::new(ctx, namespace, pod, args.container.clone()).await?;
            download(&target, &file, &local).await
        }
        (Spec::Local(_), Spec::Local(_)) => Err(Error::msg("one of src or dest must be a remote file specification")),
        (Spec::Remote { .. }, Spec::Remote { .. }) => {
            Err(Error::msg("one of src or dest must be a local file specification"))
        }
    }
}

/// The container a copy runs in.
struct Target<'a> {
    ctx: &'a Connection,
    pod_path: String,
    container: String,
}

impl<'a> Target<'a> {
    async fn new(
        ctx: &'a Connection,
        namespace: Option<String>,
        pod: String,
        container: Option<String>,
    ) -> Result<Target<'a>> {
        let pods = resource::resolve("pods")?;
        let namespace = namespace.unwrap_or_else(|| ctx.namespace.clone());
        let pod_path = path(pods, Some(&namespace), Some(&pod));
        let live = ctx.get(&pod_path).await?;
        let container = match container {
            Some(container) => container,
            None => crate::exec::default_container(&live)?,
        };
        Ok(Target { ctx, pod_path, container })
    }

    /// Runs `command` in the container with `input` on its stdin; its stdout, or its stderr as
    /// the error when it fails.
    async fn exec(&self, command: &[&str], input: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let streams = Streams { stdin: input.is_some(), tty: false };
        let mut query: Vec<String> = command.iter().map(|word| format!("command={}", escape(word))).collect();
        query.push(format!("container={}", escape(&self.container)));
        query.extend(streams.query());
        let url = format!("{}/exec?{}", self.pod_path, query.join("&"));
        let socket = self.ctx.websocket(&url, stream::PROTOCOL, "cp").await?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let io = Io {
            input: Box::new(std::io::Cursor::new(input.unwrap_or_default())),
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        match stream::run_with(socket, streams, "cp", io).await {
            Ok(()) => Ok(stdout),
            Err(Error::Exit(code)) => {
                let said = String::from_utf8_lossy(&stderr).trim().replace('\n', "; ");
                Err(Error::msg(format!("{} exited with code {code}: {said}", command.join(" "))))
            }
            Err(other) => Err(other),
        }
    }
}

/// The last component of a container path (`/tmp/x/` → `x`) and its directory (`/tmp`).
fn split_remote(file: &str) -> (String, String) {
    let trimmed = file.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", base)) => ("/".into(), base.into()),
        Some((dir, base)) => (dir.into(), base.into()),
        None => (String::new(), trimmed.into()),
    }
}

async fn upload(target: &Target<'_>, local: &Path, file: &str) -> Result<()> {
    if file.is_empty() || local.as_os_str().is_empty() {
        return Err(Error::msg("filepath can not be empty"));
    }
    let metadata = std::fs::metadata(local)
        .map_err(|_| Error::msg(format!("{} doesn't exist in local filesystem", local.display())))?;
    let mut destination = file.to_string();
    // Into a directory that exists there, under the source's own name.
    if target.exec(&["test", "-d", file], None).await.is_ok() {
        let name = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        destination = format!("{}/{name}", file.trim_end_matches('/'));
    }
    let (dir, base) = split_remote(&destination);
    if base.is_empty() {
        return Err(Error::msg(format!("invalid destination {file:?}")));
    }
    let mut archive = tar::Builder::new(Vec::new());
    let packed = if metadata.is_dir() {
        archive.append_dir_all(&base, local)
    } else {
        archive.append_path_with_name(local, &base)
    };
    packed.map_err(|e| Error::msg(format!("cannot pack {}: {e}", local.display())))?;
    let bytes = archive.into_inner().map_err(|e| Error::msg(format!("cannot pack {}: {e}", local.display())))?;
    let mut command = vec!["tar", "-xmf", "-"];
    if !dir.is_empty() {
        command.extend(["-C", dir.as_str()]);
    }
    target.exec(&command, Some(bytes)).await?;
    Ok(())
}

async fn download(target: &Target<'_>, file: &str, local: &Path) -> Result<()> {
    if file.is_empty() {
        return Err(Error::msg("filepath can not be empty"));
    }
    let bytes = target.exec(&["tar", "cf", "-", file], None).await?;
    // tar names entries without the leading `/`; everything below `prefix` lands below `local`.
    let prefix = file.trim_start_matches('/').trim_end_matches('/').to_string();
    let mut archive = tar::Archive::new(std::io::Cursor::new(bytes));
    let entries = archive.entries().map_err(|e| Error::msg(format!("cannot read the archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::msg(format!("cannot read the archive: {e}")))?;
        let name = entry.path().map_err(|e| Error::msg(format!("bad name in the archive: {e}")))?.into_owned();
        let name = name.to_string_lossy().trim_end_matches('/').to_string();
        let Some(rest) = name.strip_prefix(&prefix).filter(|rest| rest.is_empty() || rest.starts_with('/')) else {
            return Err(Error::msg("tar contents corrupted"));
        };
        let relative = Path::new(rest.trim_start_matches('/'));
        if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::msg(format!("refusing to write {name:?}: it would land outside {}", local.display())));
        }
        let kind = entry.header().entry_type();
        let destination = if !relative.as_os_str().is_empty() {
            local.join(relative)
        } else if kind.is_file() && local.is_dir() {
            // One file into an existing directory keeps its name.
            local.join(Path::new(&name).file_name().unwrap_or_default())
        } else {
            local.to_path_buf()
        };
        if kind.is_symlink() || kind.is_hard_link() {
            eprintln!("warning: skipping symlink: {:?} -> {:?}", destination.display().to_string(), name);
            continue;
        }
        if kind.is_dir() {
            std::fs::create_dir_all(&destination)
                .map_err(|e| Error::msg(format!("cannot create {}: {e}", destination.display())))?;
        } else if kind.is_file() {
            if let Some(parent) = destination.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::msg(format!("cannot create {}: {e}", parent.display())))?;
            }
            entry
                .unpack(&destination)
                .map_err(|e| Error::msg(format!("cannot write {}: {e}", destination.display())))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_a_pod_and_a_path_or_a_local_file() {
        assert_eq!(parse_spec("note.txt").ok(), Some(Spec::Local("note.txt".into())));
        assert_eq!(
            parse_spec("team/web:/tmp/x").ok(),
            Some(Spec::Remote { namespace: Some("team".into()), pod: "web".into(), file: "/tmp/x".into() })
        );
        assert_eq!(
            parse_spec("web:x").ok(),
            Some(Spec::Remote { namespace: None, pod: "web".into(), file: "x".into() })
        );
        assert!(parse_spec(":/tmp").is_err());
    }

    #[test]
    fn remote_paths_split_into_directory_and_name() {
        assert_eq!(split_remote("/tmp/upload/"), ("/tmp".into(), "upload".into()));
        assert_eq!(split_remote("/note"), ("/".into(), "note".into()));
        assert_eq!(split_remote("note"), (String::new(), "note".into()));
    }
}
