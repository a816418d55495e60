//! Harness for the rkubectl tests: the real `target/debug/rkubectl` binary, pointed at one
//! test's [`Cluster`](crate::Cluster) through a kubeconfig written for it.
//!
//! Each [`Rkubectl`] has its own temporary directory holding the kubeconfig, manifests the
//! test writes ([`Rkubectl::file`]) and scripts (e.g. a scripted `$EDITOR`); `HOME` points
//! there too, so nothing from the user's own `~/.kube` leaks in. Every command is killed if it
//! runs longer than [`COMMAND_TIMEOUT`], failing the test with the apiserver's log tail.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::{Cluster, binary};

/// How long one rkubectl command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The program: `rkubectl` or `kubectl`.
    pub program: &'static str,
    /// The arguments it ran with.
    pub args: Vec<String>,
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Ran {
    /// The command and its output, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {} exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.program,
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// The rkubectl binary for one cluster; see the module docs.
pub struct Rkubectl<'a> {
    cluster: &'a Cluster,
    program: PathBuf,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl<'a> Rkubectl<'a> {
    /// rkubectl for `cluster`, with a fresh directory and kubeconfig (context `rkube`,
    /// namespace `default`).
    ///
    /// # Panics
    /// When the binary is not built (`cargo build -p rkubectl-bin`) or the directory cannot be
    /// made.
    pub fn new(cluster: &'a Cluster) -> Rkubectl<'a> {
        let program = binary("rkubectl");
        let dir = tempfile::Builder::new().prefix("rkubectl-test-").tempdir().expect("temporary directory");
        let kubeconfig = cluster.write_kubeconfig(dir.path()).expect("kubeconfig written");
        Rkubectl { cluster, program, kubeconfig, dir }
    }

    /// The kubeconfig the commands use.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The test's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The binary's path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Writes `text` to `name` in the test's directory and returns the path as a string.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("directory made");
        }
        std::fs::write(&path, text).expect("file written");
        path.to_str().expect("UTF-8 temporary path").to_string()
    }

    /// A command with this test's KUBECONFIG and HOME, killed when dropped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env_remove("KUBE_EDITOR")
            .env_remove("EDITOR")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs a command to completion.
    pub async fn run(&self, args: &[&str]) -> Ran {
        self.run_with(args, &[], None).await
    }

    /// Runs a command with extra environment variables and, optionally, text on stdin.
    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Ran {
        let mut command = self.command(args);
        for (k, v) in env {
            command.env(k, v);
        }
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().expect("rkubectl starts");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(text.as_bytes()).await.expect("stdin written");
            drop(pipe);
        }
        let output = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
            Ok(output) => output.expect("rkubectl output"),
            Err(_) => panic!(
                "rkubectl {} did not finish within {COMMAND_TIMEOUT:?}\n--- apiserver log ---\n{}",
                args.join(" "),
                self.cluster.apiserver.log_tail(40)
            ),
        };
        Ran {
            program: "rkubectl",
            args: args.iter().map(ToString::to_string).collect(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command, asserts exit code 0, and returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let ran = self.run(args).await;
        assert_eq!(
            ran.code,
            Some(0),
            "{}\n--- apiserver log ---\n{}",
            ran.describe(),
            self.cluster.apiserver.log_tail(20)
        );
        ran.stdout
    }

    /// Runs a command and asserts it failed with exit code 1 and exactly one line on stderr,
    /// with no panic or backtrace.
    pub async fn fails(&self, args: &[&str]) -> Ran {
        let ran = self.run(args).await;
        assert_failed(&ran);
        ran
    }
}

/// Asserts `ran` failed as rkubectl promises: exit code 1, one line on stderr, no panic.
pub fn assert_failed(ran: &Ran) {
    assert_eq!(ran.code, Some(1), "expected exit code 1: {}", ran.describe());
    assert_eq!(ran.stderr.trim_end().lines().count(), 1, "expected one line on stderr: {}", ran.describe());
    assert!(!ran.stderr.contains("panicked") && !ran.stderr.contains("backtrace"), "{}", ran.describe());
}

/// Splits column output into rows of whitespace-separated cells.
pub fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|row| !row.is_empty())
        .collect()
}

/// The first row whose first cell is `name`.
pub fn row_named(table: &[Vec<String>], name: &str) -> Option<Vec<String>> {
    table.iter().find(|row| row.first().map(String::as_str) == Some(name)).cloned()
}

/// Runs the real kubectl (from `.venv`, installed by `make deps`) with `args`, the kubeconfig
/// `kubeconfig` and `HOME` set to `home` (so its discovery cache is this test's), and returns
/// its stdout.
///
/// # Panics
/// When kubectl does not finish within [`COMMAND_TIMEOUT`] or exits non-zero (showing its
/// stderr).
pub async fn real_kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> String {
    let mut command = Command::new(crate::venv_bin("kubectl"));
    command.args(args).env("KUBECONFIG", kubeconfig).env("HOME", home).kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {COMMAND_TIMEOUT:?}"))
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs the real kubectl (the venv's, `make deps` installs it) like [`real_kubectl`], with
/// `stdin` written to it when given, and returns what it did whether it succeeded or not (for
/// commands expected to fail, or to be retried).
///
/// # Panics
/// When kubectl cannot be started or does not finish within [`COMMAND_TIMEOUT`].
pub async fn real_kubectl_run(kubeconfig: &Path, home: &Path, args: &[&str], stdin: Option<&str>) -> Ran {
    let mut command = Command::new(crate::venv_bin("kubectl"));
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("kubectl runs (make deps installs it)");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.expect("kubectl's stdin written");
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {COMMAND_TIMEOUT:?}"))
        .expect("kubectl's output");
    Ran {
        program: "kubectl",
        args: args.iter().map(|arg| (*arg).to_string()).collect(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
