//! Free loopback ports.
//!
//! A port is found by binding `127.0.0.1:0` and releasing it, so another process may take it
//! before ours binds it; callers retry their start on "address already in use". Within one test
//! executable, a port is never handed out twice.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

/// Ports already handed out in this process.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback TCP port that was free a moment ago and has not been handed out before.
pub(crate) fn free_port() -> std::io::Result<u16> {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut ports = handed_out().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if ports.insert(port) {
            return Ok(port);
        }
    }
}

/// Whether a process log says it could not bind its port.
pub(crate) fn log_shows_port_in_use(log: &str) -> bool {
    log.contains("address already in use") || log.contains("Address already in use") || log.contains("AddrInUse")
}
