//! A child process whose stdout and stderr go to a log file, killed (and reaped) on drop.

use std::fs::OpenOptions;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// Starts `program` with `args` (output appended to `log_path`) and waits until `health_url`
/// answers 2xx. Fails, with the tail of the log, if the process exits first or `timeout`
/// passes; the process is killed then.
pub(crate) async fn spawn_until_healthy(
    program: &Path,
    args: &[String],
    log_path: &Path,
    health_url: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<Process> {
    let name = program.file_name().map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into_owned());
    let mut process = Process::spawn(program, args, log_path)?;
    // Health only: an HTTPS server's certificate is not what this poll checks.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .danger_accept_invalid_certs(health_url.starts_with("https://"))
        .build()?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = process.exited() {
            anyhow::bail!(
                "{name} exited during start ({status}); args {args:?}; log tail:\n{}",
                tail(&process.log(), 40)
            );
        }
        if let Ok(reply) = client.get(health_url).send().await
            && reply.status().is_success()
        {
            return Ok(process);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{name} not healthy at {health_url} after {timeout:?}; log tail:\n{}", process.log_tail(40));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A running child process. Dropping it kills it with SIGKILL and waits for it.
pub(crate) struct Process {
    child: Child,
    log_path: PathBuf,
}

impl Process {
    /// Starts `program` with `args`, appending its output to `log_path` (so a restarted process
    /// keeps the earlier log above the new one).
    pub(crate) fn spawn(program: &Path, args: &[String], log_path: &Path) -> anyhow::Result<Process> {
        let log = OpenOptions::new().create(true).append(true).open(log_path)?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|error| anyhow::anyhow!("cannot start {}: {error}", program.display()))?;
        Ok(Process { child, log_path: log_path.to_path_buf() })
    }

    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has already exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The whole log so far.
    pub(crate) fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// The last `lines` lines of the log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Killing an already-exited child fails harmlessly; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a log file, lossily, as text; an unreadable log reads as a note saying so.
pub(crate) fn read_log(path: &Path) -> String {
    let mut bytes = Vec::new();
    match std::fs::File::open(path).and_then(|mut file| file.read_to_end(&mut bytes)) {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a command to its end, failing with its output when it does not succeed; returns its
/// stdout.
pub(crate) fn run(command: &mut std::process::Command, what: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    let output = command.output().with_context(|| format!("cannot run {what}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
