//! One etcd plus one apiserver: what almost every integration test starts first.

use std::path::{Path, PathBuf};

use crate::apiserver::ApiServer;
use crate::etcd::Etcd;

/// A private control plane for one test. Dropping it kills the apiserver, then etcd.
pub struct Cluster {
    // Field order is drop order: the apiserver goes before the etcd it talks to.
    /// The apiserver, started against `etcd`.
    pub apiserver: ApiServer,
    /// The etcd holding this cluster's objects.
    pub etcd: Etcd,
}

impl Cluster {
    /// Starts etcd, then the apiserver with default flags, and waits until it is ready.
    pub async fn start() -> anyhow::Result<Cluster> {
        Cluster::start_with_args(&[]).await
    }

    /// Like [`Cluster::start`], passing `extra_args` to the apiserver.
    pub async fn start_with_args(extra_args: &[&str]) -> anyhow::Result<Cluster> {
        let etcd = Etcd::start().await?;
        let apiserver = ApiServer::start(&etcd, extra_args).await?;
        Ok(Cluster { apiserver, etcd })
    }

    /// The apiserver's base URL, e.g. `http://127.0.0.1:40124`.
    pub fn url(&self) -> &str {
        &self.apiserver.url
    }

    /// Writes a kubeconfig pointing at this cluster's apiserver (plain HTTP, no credentials,
    /// namespace `default`) to `<dir>/kubeconfig` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        self.write_kubeconfig_as(dir, "kubeconfig", None)
    }

    /// Like [`Cluster::write_kubeconfig`], to `<dir>/<name>`, with a bearer `token` (a user
    /// of the apiserver's `--token-auth-file`) when given.
    pub fn write_kubeconfig_as(&self, dir: &Path, name: &str, token: Option<&str>) -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        let user = match token {
            Some(token) => format!("{{token: {token:?}}}"),
            None => "{}".to_string(),
        };
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: rkube
  cluster:
    server: {url}
users:
- name: rkube
  user: {user}
contexts:
- name: rkube
  context:
    cluster: rkube
    user: rkube
    namespace: default
current-context: rkube
preferences: {{}}
",
            url = self.url()
        );
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, text)?;
        Ok(path)
    }
}
