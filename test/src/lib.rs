//! Cross-process test harness: real etcd and the real rkube binaries, started as processes.
//!
//! Every integration test in `test/tests/` starts its own [`Cluster`] (one etcd, one
//! `rkube-apiserver`) on free loopback ports, so tests run in parallel without sharing state.
//! Each process writes its stdout and stderr to a log file in its own temporary directory; when a
//! start fails, the error carries the tail of that log.
//!
//! What this harness keeps true:
//! - a process it started is killed when its handle is dropped (also when a test panics);
//! - [`Etcd::restart`] reuses the same ports and data, so nothing written before is lost;
//! - a missing prerequisite (the `etcd` binary, a binary not built yet, a tool not in `.venv`)
//!   is a loud failure naming the command that fixes it, never a silent skip.
//!
//! Not promised: a free port stays free between choosing it and the process binding it. Starts
//! that fail with "address already in use" are retried on new ports a few times.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cluster = rkube_tests::Cluster::start().await?;
//! let api = rkube_tests::Api::new(cluster.url());
//! let (status, pods) = api.get("/api/v1/namespaces/default/pods").await;
//! assert!(status.is_success(), "{pods}");
//! # Ok(()) }
//! ```

mod api;
mod apiserver;
pub mod certs;
mod cluster;
mod etcd;
mod paths;
mod ports;
mod process;
pub mod resources;
mod status;
mod wait;

// Harness parts of the control-plane and node tests, one module per area.
pub mod component;
pub mod controllers;
pub mod custom_resources;
pub mod e2e;
pub mod forward;
pub mod kubectl;
pub mod lab;
pub mod node;
pub mod python_client;
pub mod registry;
pub mod scheduler;
pub mod server_side_apply;
pub mod terminal;
pub mod vm;

pub use api::{Api, Reply, WatchStream, escape_query};
pub use apiserver::ApiServer;
pub use cluster::Cluster;
pub use etcd::Etcd;
pub use paths::{binary, repo_root, venv_bin};
pub use reqwest::{Method, StatusCode};
pub use status::{assert_client_error, assert_status};
pub use wait::{eventually, stays_true};
