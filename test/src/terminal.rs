//! Interactive sessions for the `-it` tests: a command (kubectl or rkubectl) run in a terminal
//! of its own under `script` (bsdutils, `make deps`), keys typed once the screen shows a
//! prompt, and what the terminal showed. Also the pod most of those tests exec into.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Api, eventually};

/// How long a session may take, and a pod to start.
const WAIT: Duration = Duration::from_secs(60);

/// Where a session runs: the directory of the client binary (first on `PATH`), and the
/// kubeconfig and `HOME` it uses.
pub struct Session {
    /// The directory holding `kubectl` or `rkubectl`.
    pub bin_dir: PathBuf,
    /// The kubeconfig (`KUBECONFIG`).
    pub kubeconfig: PathBuf,
    /// `HOME`.
    pub home: PathBuf,
}

impl Session {
    /// Runs shell `command` in a terminal of its own; once the terminal shows `ready`, calls
    /// `on_ready` and types `keys`. Returns what the terminal showed (without carriage
    /// returns) and the exit code.
    ///
    /// # Panics
    /// When `script` cannot start or the session does not end within a minute.
    pub fn run(&self, command: &str, ready: &str, keys: &[u8], on_ready: impl FnOnce()) -> (String, Option<i32>) {
        let mut child = Command::new("script")
            .args(["-qec", command, "/dev/null"])
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin_dir.display()))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script runs (bsdutils, make deps)");
        let mut typing = child.stdin.take().expect("stdin");
        let mut output = child.stdout.take().expect("stdout");
        let (chunks, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = std::io::Read::read(&mut output, &mut buffer) {
                if chunks.send(buffer[..read].to_vec()).is_err() {
                    return;
                }
            }
        });
        let mut screen = String::new();
        let read_for = |screen: &mut String, wait: Duration| {
            if let Ok(chunk) = received.recv_timeout(wait) {
                screen.push_str(&String::from_utf8_lossy(&chunk).replace('\r', ""));
            }
        };
        let deadline = Instant::now() + WAIT;
        while !screen.contains(ready) && Instant::now() < deadline {
            read_for(&mut screen, Duration::from_millis(100));
        }
        on_ready();
        typing.write_all(keys).expect("keys typed");
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the terminal session did not end in time:\n{screen}");
            }
            read_for(&mut screen, Duration::from_millis(100));
        };
        drop(typing);
        while let Ok(chunk) = received.recv_timeout(Duration::from_millis(500)) {
            screen.push_str(&String::from_utf8_lossy(&chunk).replace('\r', ""));
        }
        (screen, status.code())
    }

    /// `<client> exec -it shell` in a terminal of 45 rows × 123 columns, resized to 22 × 77
    /// once the command has printed its first size (when `mark` appears); the remote command
    /// prints its tty, size and TERM, then its size after the resize, and exits 5.
    pub fn resize(&self, client: &str, mark: &Path) -> (String, Option<i32>) {
        let remote = "tty; stty size; echo $TERM; read line; i=0; \
            while [ \"$(stty size)\" = \"45 123\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
            echo resized: $(stty size); exit 5";
        let command = format!(
            "stty cols 123 rows 45; (while [ ! -e {mark} ]; do sleep 0.05; done; stty -F /dev/tty cols 77 rows 22) & \
             exec {client} exec -it shell -- sh -c '{remote}'",
            mark = mark.display()
        );
        self.run(&command, "xterm", b"\r", || std::fs::write(mark, "").expect("mark"))
    }
}

/// Creates `pod` in `default` and waits until it is Running.
///
/// # Panics
/// When it is not Running within a minute.
pub async fn create_running(api: &Api, pod: &Value) {
    api.create("/api/v1/namespaces/default/pods", pod).await;
    let path = format!("/api/v1/namespaces/default/pods/{}", pod["metadata"]["name"].as_str().unwrap_or_default());
    eventually(WAIT, &format!("{path} Running"), || async {
        let (_, pod) = api.get(&path).await;
        (pod["status"]["phase"] == "Running").then_some(())
    })
    .await;
}
