//! A running `kubectl port-forward` (or `rkubectl port-forward`) for tests: started on a local
//! port kubectl picks, with plain HTTP/1.0 requests through it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::venv_bin;

/// How long a request through the forward may take.
const WAIT: Duration = Duration::from_secs(60);

/// A running `kubectl port-forward` and the local port it listens on.
pub struct Forward {
    /// The kubectl process.
    pub child: Child,
    /// The local port it forwards.
    pub port: u16,
    /// What kubectl printed on stdout after its first line.
    pub stdout: std::sync::mpsc::Receiver<String>,
}

impl Forward {
    /// Starts `kubectl port-forward <target> :<remote>` and waits for its `Forwarding from
    /// 127.0.0.1:<port>` line.
    ///
    /// # Panics
    /// When kubectl does not start forwarding (its stderr is in the message).
    pub fn start(kubeconfig: &std::path::Path, home: &std::path::Path, target: &str, remote: &str) -> Forward {
        Forward::start_program(&venv_bin("kubectl"), kubeconfig, home, target, remote)
    }

    /// The same with `program` (kubectl or rkubectl).
    pub fn start_program(
        program: &std::path::Path,
        kubeconfig: &std::path::Path,
        home: &std::path::Path,
        target: &str,
        remote: &str,
    ) -> Forward {
        let mut child = Command::new(program)
            .args(["port-forward", target, &format!(":{remote}"), "--address", "127.0.0.1"])
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs (make deps installs it)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = first
            .strip_prefix("Forwarding from 127.0.0.1:")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|port| port.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let output = child.wait_with_output().expect("kubectl output");
            let stderr = String::from_utf8_lossy(&output.stderr);
            panic!("{} port-forward {target}: {first:?}; stderr: {stderr}", program.display());
        };
        let (sender, stdout) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Forward { child, port, stdout }
    }

    /// `GET path` through the forwarded port.
    pub fn get(&self, path: &str) -> (String, Vec<u8>) {
        http_get(self.port, path)
    }

    /// Stops kubectl; its stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let output = self.child.wait_with_output().expect("kubectl output");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

/// `GET path` over HTTP/1.0 to the local `port`: the status line and the body.
pub fn http_get(port: u16, path: &str) -> (String, Vec<u8>) {
    let mut connection = TcpStream::connect(("127.0.0.1", port)).expect("connect to kubectl");
    connection.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(connection, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").expect("request");
    let mut response = Vec::new();
    connection.read_to_end(&mut response).expect("response");
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response.get(split + 4..).unwrap_or_default().to_vec();
    (head.lines().next().unwrap_or_default().to_string(), body)
}
