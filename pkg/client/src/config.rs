//! Where the apiserver is and how to talk to it: [`Config`], built by hand or from a kubeconfig.
//!
//! A [`Config`] is plain data: the server URL, the default namespace, the TLS and credential
//! material (already read from the files a kubeconfig names), the client-side rate limit and the
//! timeouts. Building one never contacts the server.
//!
//! Where a kubeconfig comes from ([`Config::infer`], as kubectl does):
//! 1. `KUBECONFIG`, a `:`-separated list of files, merged: for each cluster, user and context
//!    name the first file that defines it wins, and so does the first non-empty
//!    `current-context`; files in the list that do not exist are skipped;
//! 2. otherwise `~/.kube/config`;
//! 3. otherwise an [`Error::Config`] that says which places were tried.
//!
//! File paths inside a kubeconfig (`certificate-authority`, `client-certificate`, `client-key`,
//! `tokenFile`) are resolved against the directory of the kubeconfig that names them.
//!
//! The TLS fields (CA, client certificate and key, `insecure-skip-tls-verify`) are used by
//! [`Client`](crate::Client) for `https://` servers. `exec` and `auth-provider` users are
//! ignored.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

pub mod kubeconfig;
pub use kubeconfig::Kubeconfig;

/// Default client-side rate limit, in requests per second (client-go's `rest.Config` uses 5;
/// kube-apiserver's own loopback client and most controllers raise it, as we do).
pub const DEFAULT_QPS: f32 = 50.0;
/// Default burst of the client-side rate limit.
pub const DEFAULT_BURST: u32 = 100;
/// Default timeout of one non-watch request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout for establishing a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a [`Client`](crate::Client) needs to reach one apiserver.
///
/// `Debug` hides the token and the client key.
#[derive(Clone)]
pub struct Config {
    /// Base URL of the apiserver, e.g. `http://127.0.0.1:6443`. A path prefix is kept.
    pub cluster_url: http::Uri,
    /// Namespace used by [`Api::default_namespaced`](crate::Api::default_namespaced).
    pub default_namespace: String,
    /// PEM bundle of CA certificates to trust (from `certificate-authority` or `-data`).
    pub root_cert: Option<Vec<u8>>,
    /// Skip verifying the server's certificate (`insecure-skip-tls-verify`).
    pub insecure_skip_tls_verify: bool,
    /// Bearer token sent as `Authorization: Bearer <token>` (from `token` or `tokenFile`).
    pub token: Option<String>,
    /// PEM client certificate (from `client-certificate` or `-data`).
    pub client_cert: Option<Vec<u8>>,
    /// PEM client key (from `client-key` or `-data`).
    pub client_key: Option<Vec<u8>>,
    /// Client-side rate limit in requests per second; zero or less means unlimited.
    pub qps: f32,
    /// How many requests may go at once before the rate limit applies.
    pub burst: u32,
    /// Timeout of one non-watch request (watches run until the server ends them).
    pub timeout: Option<Duration>,
    /// Timeout for establishing a connection (watches included).
    pub connect_timeout: Option<Duration>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("cluster_url", &self.cluster_url)
            .field("default_namespace", &self.default_namespace)
            .field("root_cert", &self.root_cert.as_ref().map(|c| format!("{} bytes", c.len())))
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("client_cert", &self.client_cert.as_ref().map(|c| format!("{} bytes", c.len())))
            .field("client_key", &self.client_key.as_ref().map(|_| "<redacted>"))
            .field("qps", &self.qps)
            .field("burst", &self.burst)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Which kubeconfig to read and which of its contexts to use.
#[derive(Clone, Debug, Default)]
pub struct KubeconfigOptions {
    /// This file only (kubectl's `--kubeconfig`); `None` means `KUBECONFIG`, then
    /// `~/.kube/config`.
    pub path: Option<PathBuf>,
    /// This context (kubectl's `--context`); `None` means the kubeconfig's `current-context`.
    pub context: Option<String>,
}

impl Config {
    /// A config for `cluster_url` with the defaults: namespace `default`, no credentials,
    /// [`DEFAULT_QPS`], [`DEFAULT_BURST`], [`DEFAULT_TIMEOUT`], [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn new(cluster_url: http::Uri) -> Self {
        Config {
            cluster_url,
            default_namespace: "default".into(),
            root_cert: None,
            insecure_skip_tls_verify: false,
            token: None,
            client_cert: None,
            client_key: None,
            qps: DEFAULT_QPS,
            burst: DEFAULT_BURST,
            timeout: Some(DEFAULT_TIMEOUT),
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
        }
    }

    /// Reads the kubeconfig `options` point at (see the module docs for where it is looked
    /// for) and builds a config from the chosen context.
    pub fn from_kubeconfig(options: &KubeconfigOptions) -> Result<Self> {
        let kubeconfig = match &options.path {
            Some(path) => Kubeconfig::read(path)?,
            None => Kubeconfig::discover()?,
        };
        Self::from_custom_kubeconfig(&kubeconfig, options.context.as_deref())
    }

    /// Builds a config from an already loaded kubeconfig, using `context` or, when `None`,
    /// its `current-context`.
    pub fn from_custom_kubeconfig(kubeconfig: &Kubeconfig, context: Option<&str>) -> Result<Self> {
        let resolved = kubeconfig.resolve(context)?;
        let cluster = resolved.cluster;
        let user = resolved.user;
        let server = cluster.server.as_deref().unwrap_or("").trim();
        if server.is_empty() {
            return Err(Error::Config(format!(
                "cluster {:?} (context {:?}) has no server",
                resolved.cluster_name, resolved.context_name
            )));
        }
        let cluster_url: http::Uri =
            server.parse().map_err(|e| Error::Config(format!("server {server:?} is not a valid URL: {e}")))?;
        let mut config = Config::new(cluster_url);
        if let Some(ns) = resolved.namespace.filter(|ns| !ns.is_empty()) {
            config.default_namespace = ns;
        }
        config.insecure_skip_tls_verify = cluster.insecure_skip_tls_verify.unwrap_or(false);
        config.root_cert = kubeconfig::data_or_file(
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_deref(),
            "certificate-authority",
        )?;
        config.client_cert = kubeconfig::data_or_file(
            user.client_certificate_data.as_deref(),
            user.client_certificate.as_deref(),
            "client-certificate",
        )?;
        config.client_key =
            kubeconfig::data_or_file(user.client_key_data.as_deref(), user.client_key.as_deref(), "client-key")?;
        config.token = match (&user.token, &user.token_file) {
            (Some(token), _) if !token.is_empty() => Some(token.clone()),
            (_, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| Error::Config(format!("cannot read tokenFile {}: {e}", file.display())))?;
                Some(text.trim().to_string())
            }
            _ => None,
        };
        Ok(config)
    }

    /// The config a process should use when told nothing: the merged `KUBECONFIG` list, else
    /// `~/.kube/config`, at its current context. Fails, saying where it looked, when neither
    /// exists.
    pub fn infer() -> Result<Self> {
        Self::from_kubeconfig(&KubeconfigOptions::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        path
    }

    const TWO_CONTEXTS: &str = "
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: http://127.0.0.1:6443
- name: prod
  cluster:
    server: https://prod.example:6443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    insecure-skip-tls-verify: true
users:
- name: anonymous
  user: {}
- name: admin
  user:
    token: s3cret
    client-certificate: certs/admin.crt
    client-key-data: LS0tLS1CRUdJTiBLRVktLS0tLQo=
contexts:
- name: local
  context:
    cluster: local
    user: anonymous
- name: prod
  context:
    cluster: prod
    user: admin
    namespace: kube-system
current-context: local
preferences: {}
";

    #[test]
    fn the_current_context_is_used_unless_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        write(&dir.path().join("certs"), "admin.crt", "CERT");
        let path = write(dir.path(), "config", TWO_CONTEXTS);

        let local = Config::from_kubeconfig(&KubeconfigOptions { path: Some(path.clone()), context: None }).unwrap();
        assert_eq!(local.cluster_url, "http://127.0.0.1:6443");
        assert_eq!(local.default_namespace, "default");
        assert_eq!(local.token, None);
        assert_eq!(local.qps, DEFAULT_QPS);

        let prod =
            Config::from_kubeconfig(&KubeconfigOptions { path: Some(path), context: Some("prod".into()) }).unwrap();
        assert_eq!(prod.cluster_url, "https://prod.example:6443");
        assert_eq!(prod.default_namespace, "kube-system");
        assert_eq!(prod.token.as_deref(), Some("s3cret"));
        assert!(prod.insecure_skip_tls_verify);
        assert_eq!(prod.root_cert.as_deref(), Some(&b"-----BEGIN CERTIFICATE-----\n"[..]));
        assert_eq!(prod.client_key.as_deref(), Some(&b"-----BEGIN KEY-----\n"[..]));
        // Relative to the kubeconfig's directory, not the working directory.
        assert_eq!(prod.client_cert.as_deref(), Some(&b"CERT"[..]));
        // Debug never shows secrets.
        let debug = format!("{prod:?}");
        assert!(!debug.contains("s3cret") && debug.contains("redacted"), "{debug}");
    }

    #[test]
    fn an_unknown_context_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "config", TWO_CONTEXTS);
        let err =
            Config::from_kubeconfig(&KubeconfigOptions { path: Some(path), context: Some("nope".into()) }).unwrap_err();
        assert!(matches!(&err, Error::Config(m) if m.contains("nope")), "{err}");
    }

    #[test]
    fn a_missing_certificate_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "config", TWO_CONTEXTS);
        let err =
            Config::from_kubeconfig(&KubeconfigOptions { path: Some(path), context: Some("prod".into()) }).unwrap_err();
        assert!(matches!(&err, Error::Config(m) if m.contains("admin.crt")), "{err}");
    }

    #[test]
    fn a_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "token", "abc\n");
        let path = write(
            dir.path(),
            "config",
            "clusters: [{name: c, cluster: {server: 'http://h:1'}}]
users: [{name: u, user: {tokenFile: token}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: team}}]
current-context: x
",
        );
        let config = Config::from_kubeconfig(&KubeconfigOptions { path: Some(path), context: None }).unwrap();
        assert_eq!(config.token.as_deref(), Some("abc"));
        assert_eq!(config.default_namespace, "team");
    }

    #[test]
    fn a_context_without_a_server_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "config",
            "clusters: [{name: c, cluster: {}}]
contexts: [{name: x, context: {cluster: c}}]
current-context: x
",
        );
        let err = Config::from_kubeconfig(&KubeconfigOptions { path: Some(path), context: None }).unwrap_err();
        assert!(err.to_string().contains("no server"), "{err}");
    }
}
