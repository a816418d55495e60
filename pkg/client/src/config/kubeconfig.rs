//! The kubeconfig file format (`apiVersion: v1, kind: Config`), read and merged as kubectl does.
//!
//! These are our own serde types for the fields rkube uses; unknown fields (`extensions`,
//! `exec`, `auth-provider`, ...) are ignored when reading, so any kubeconfig kubectl accepts can
//! be read. What this module keeps true:
//! - after [`Kubeconfig::read`], every file path inside is absolute, resolved against the
//!   directory of the file that named it, so merging files from different directories is safe;
//! - [`Kubeconfig::merge`] lets the first definition of a name win, as kubectl does with a
//!   `KUBECONFIG` list;
//! - `Debug` never prints a token, password or key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// A whole kubeconfig: named clusters, users and contexts, and the current context.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Kubeconfig {
    /// Always `v1` when present.
    #[serde(rename = "apiVersion", default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Always `Config` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Named clusters (where an apiserver is, and how to trust it).
    #[serde(default, deserialize_with = "null_as_default")]
    pub clusters: Vec<NamedCluster>,
    /// Named users (credentials); kubeconfig calls these `users`, client-go `AuthInfos`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub users: Vec<NamedAuthInfo>,
    /// Named contexts: a cluster, a user and a default namespace.
    #[serde(default, deserialize_with = "null_as_default")]
    pub contexts: Vec<NamedContext>,
    /// The context used when none is named.
    #[serde(rename = "current-context", default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
}

/// A cluster with its name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NamedCluster {
    /// The name contexts refer to.
    pub name: String,
    /// The cluster itself.
    #[serde(default)]
    pub cluster: Option<ClusterEntry>,
}

/// Where an apiserver is and how to trust it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterEntry {
    /// The apiserver's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// PEM file of CAs to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
    /// Base64 of a PEM bundle of CAs to trust; wins over `certificate-authority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// Do not verify the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_tls_verify: Option<bool>,
    /// Server name to verify the certificate against, when it differs from the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Proxy to reach the server through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
}

/// A user with its name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NamedAuthInfo {
    /// The name contexts refer to.
    pub name: String,
    /// The credentials.
    #[serde(default)]
    pub user: Option<AuthInfo>,
}

/// Credentials for one user. Fields rkube cannot use yet (`exec`, `auth-provider`) are ignored.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AuthInfo {
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding a bearer token; used when `token` is empty.
    #[serde(rename = "tokenFile", default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<PathBuf>,
    /// Base64 of the PEM client certificate; wins over `client-certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    /// PEM file of the client key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// Base64 of the PEM client key; wins over `client-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// Basic-auth user name (parsed, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic-auth password (parsed, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for AuthInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("AuthInfo")
            .field("token", &hidden(&self.token))
            .field("token_file", &self.token_file)
            .field("client_certificate", &self.client_certificate)
            .field("client_certificate_data", &self.client_certificate_data.as_ref().map(|_| "<data>"))
            .field("client_key", &self.client_key)
            .field("client_key_data", &hidden(&self.client_key_data))
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .finish()
    }
}

/// A context with its name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NamedContext {
    /// The name `current-context` and `--context` refer to.
    pub name: String,
    /// The context itself.
    #[serde(default)]
    pub context: Option<Context>,
}

/// A cluster, a user and a default namespace, by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Context {
    /// Name of the cluster.
    #[serde(default)]
    pub cluster: String,
    /// Name of the user; empty means no credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Default namespace; empty means `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A context with its cluster and user looked up.
#[derive(Clone, Debug)]
pub struct ResolvedContext {
    /// The context's name.
    pub context_name: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// The cluster.
    pub cluster: ClusterEntry,
    /// The user (empty when the context names none).
    pub user: AuthInfo,
    /// The context's namespace, if it sets one.
    pub namespace: Option<String>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl Kubeconfig {
    /// Parses kubeconfig YAML (an empty text is an empty kubeconfig). Paths stay as written.
    pub fn from_yaml(text: &str) -> Result<Kubeconfig> {
        if text.trim().is_empty() {
            return Ok(Kubeconfig::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| Error::Config(format!("not a valid kubeconfig: {e}")))
    }

    /// Reads one kubeconfig file and makes every relative path in it absolute, against the
    /// file's directory.
    pub fn read(path: &Path) -> Result<Kubeconfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read kubeconfig {}: {e}", path.display())))?;
        let mut kubeconfig =
            Kubeconfig::from_yaml(&text).map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        kubeconfig.make_paths_absolute(base);
        Ok(kubeconfig)
    }

    /// Reads the `KUBECONFIG` list, else `~/.kube/config` (see the [module docs](super)).
    pub fn discover() -> Result<Kubeconfig> {
        Self::discover_from(std::env::var_os("KUBECONFIG"), std::env::var_os("HOME").map(PathBuf::from))
    }

    /// [`Kubeconfig::discover`] with the environment passed in: `kubeconfig_env` is the value
    /// of `KUBECONFIG`, `home` the home directory.
    pub fn discover_from(kubeconfig_env: Option<OsString>, home: Option<PathBuf>) -> Result<Kubeconfig> {
        if let Some(list) = kubeconfig_env.filter(|v| !v.is_empty()) {
            let paths: Vec<PathBuf> = std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect();
            let mut merged: Option<Kubeconfig> = None;
            for path in &paths {
                if !path.exists() {
                    continue;
                }
                let next = Kubeconfig::read(path)?;
                merged = Some(match merged {
                    Some(m) => m.merge(next),
                    None => next,
                });
            }
            return merged.ok_or_else(|| {
                Error::Config(format!("none of the files in KUBECONFIG exist: {}", list.to_string_lossy()))
            });
        }
        let Some(home) = home else {
            return Err(Error::Config(
                "no kubeconfig: KUBECONFIG is not set and there is no home directory (HOME) to find \
                 ~/.kube/config in"
                    .into(),
            ));
        };
        let path = home.join(".kube").join("config");
        if !path.exists() {
            return Err(Error::Config(format!(
                "no kubeconfig: KUBECONFIG is not set and {} does not exist",
                path.display()
            )));
        }
        Kubeconfig::read(&path)
    }

    /// Merges `other` into `self`, kubectl style: for each cluster, user and context name the
    /// entry already in `self` wins, and so does `self`'s `current-context` unless it is empty.
    pub fn merge(mut self, other: Kubeconfig) -> Kubeconfig {
        fn add<T>(into: &mut Vec<T>, from: Vec<T>, name: impl Fn(&T) -> &str) {
            for item in from {
                if !into.iter().any(|have| name(have) == name(&item)) {
                    into.push(item);
                }
            }
        }
        add(&mut self.clusters, other.clusters, |c| &c.name);
        add(&mut self.users, other.users, |u| &u.name);
        add(&mut self.contexts, other.contexts, |c| &c.name);
        if self.current_context.as_deref().unwrap_or("").is_empty() {
            self.current_context = other.current_context;
        }
        self.api_version = self.api_version.or(other.api_version);
        self.kind = self.kind.or(other.kind);
        self
    }

    /// Looks up `context` (or the current context) and the cluster and user it names.
    pub fn resolve(&self, context: Option<&str>) -> Result<ResolvedContext> {
        let context_name = match context {
            Some(name) => name.to_string(),
            None => match self.current_context.as_deref() {
                Some(name) if !name.is_empty() => name.to_string(),
                _ => return Err(Error::Config("the kubeconfig has no current-context and none was named".into())),
            },
        };
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .map(|c| c.context.clone().unwrap_or_default())
            .ok_or_else(|| Error::Config(format!("context {context_name:?} is not in the kubeconfig")))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .map(|c| c.cluster.clone().unwrap_or_default())
            .ok_or_else(|| {
                Error::Config(format!(
                    "cluster {:?} (of context {context_name:?}) is not in the kubeconfig",
                    ctx.cluster
                ))
            })?;
        let user = match ctx.user.as_deref() {
            None | Some("") => AuthInfo::default(),
            Some(user_name) => self
                .users
                .iter()
                .find(|u| u.name == user_name)
                .map(|u| u.user.clone().unwrap_or_default())
                .ok_or_else(|| {
                    Error::Config(format!("user {user_name:?} (of context {context_name:?}) is not in the kubeconfig"))
                })?,
        };
        Ok(ResolvedContext { context_name, cluster_name: ctx.cluster, cluster, user, namespace: ctx.namespace })
    }

    fn make_paths_absolute(&mut self, base: &Path) {
        fn fix(path: &mut Option<PathBuf>, base: &Path) {
            if let Some(p) = path
                && !p.as_os_str().is_empty()
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        }
        for cluster in self.clusters.iter_mut().filter_map(|c| c.cluster.as_mut()) {
            fix(&mut cluster.certificate_authority, base);
        }
        for user in self.users.iter_mut().filter_map(|u| u.user.as_mut()) {
            fix(&mut user.client_certificate, base);
            fix(&mut user.client_key, base);
            fix(&mut user.token_file, base);
        }
    }
}

/// The bytes of a `<what>-data` field (base64) or, when it is empty, of the `<what>` file.
pub(crate) fn data_or_file(data: Option<&str>, file: Option<&Path>, what: &str) -> Result<Option<Vec<u8>>> {
    if let Some(data) = data.map(str::trim).filter(|d| !d.is_empty()) {
        let compact: String = data.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map(Some)
            .map_err(|e| Error::Config(format!("{what}-data is not valid base64: {e}")));
    }
    match file.filter(|f| !f.as_os_str().is_empty()) {
        Some(file) => std::fs::read(file)
            .map(Some)
            .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", file.display()))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const FIRST: &str = "
clusters:
- name: shared
  cluster: {server: 'http://first:1', certificate-authority: ca.pem}
- name: only-first
  cluster: {server: 'http://only-first:1'}
users:
- name: me
  user: {token: first-token}
contexts:
- name: shared
  context: {cluster: shared, user: me}
current-context: ''
";

    const SECOND: &str = "
clusters:
- name: shared
  cluster: {server: 'http://second:2'}
- name: only-second
  cluster: {server: 'http://only-second:2'}
users:
- name: me
  user: {token: second-token}
contexts:
- name: shared
  context: {cluster: only-second}
- name: other
  context: {cluster: only-second, namespace: team}
current-context: other
";

    #[test]
    fn a_kubeconfig_list_is_merged_first_file_wins_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let first = write(&a, "first", FIRST);
        let second = write(dir.path(), "second", SECOND);
        let missing = dir.path().join("does-not-exist");
        let list = std::env::join_paths([first, missing, second]).unwrap();

        let merged = Kubeconfig::discover_from(Some(list), None).unwrap();
        // current-context of the first file is empty, so the second's is used.
        assert_eq!(merged.current_context.as_deref(), Some("other"));
        let names: Vec<&str> = merged.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["shared", "only-first", "only-second"]);

        let shared = merged.resolve(Some("shared")).unwrap();
        assert_eq!(shared.cluster.server.as_deref(), Some("http://first:1"));
        assert_eq!(shared.user.token.as_deref(), Some("first-token"));
        // Resolved against the directory of the file that named it.
        assert_eq!(shared.cluster.certificate_authority.as_deref(), Some(a.join("ca.pem").as_path()));

        let other = merged.resolve(None).unwrap();
        assert_eq!(other.cluster.server.as_deref(), Some("http://only-second:2"));
        assert_eq!(other.namespace.as_deref(), Some("team"));
        assert!(other.user.token.is_none());
    }

    #[test]
    fn without_kubeconfig_the_home_config_is_used() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".kube")).unwrap();
        write(&home.path().join(".kube"), "config", SECOND);
        let config = Kubeconfig::discover_from(None, Some(home.path().to_path_buf())).unwrap();
        assert_eq!(config.current_context.as_deref(), Some("other"));
        // An empty KUBECONFIG counts as unset.
        let config = Kubeconfig::discover_from(Some(OsString::new()), Some(home.path().to_path_buf())).unwrap();
        assert_eq!(config.contexts.len(), 2);
    }

    #[test]
    fn no_kubeconfig_anywhere_is_an_error_saying_where_it_looked() {
        let home = tempfile::tempdir().unwrap();
        let err = Kubeconfig::discover_from(None, Some(home.path().to_path_buf())).unwrap_err();
        assert!(err.to_string().contains(".kube/config"), "{err}");
        let err = Kubeconfig::discover_from(Some("/nonexistent/a:/nonexistent/b".into()), None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/a"), "{err}");
        let err = Kubeconfig::discover_from(None, None).unwrap_err();
        assert!(err.to_string().contains("KUBECONFIG"), "{err}");
    }

    #[test]
    fn null_lists_empty_files_and_unknown_fields_are_accepted() {
        let config = Kubeconfig::from_yaml("clusters: null\nusers: null\ncontexts: null\nextensions: []\n").unwrap();
        assert!(config.clusters.is_empty());
        assert!(Kubeconfig::from_yaml("").unwrap().contexts.is_empty());
        let config = Kubeconfig::from_yaml(
            "users: [{name: x, user: {exec: {command: foo}, token: t}}]\npreferences: {colors: true}\n",
        )
        .unwrap();
        assert_eq!(config.users[0].user.as_ref().unwrap().token.as_deref(), Some("t"));
    }

    #[test]
    fn garbage_is_a_config_error_not_a_panic() {
        assert!(matches!(Kubeconfig::from_yaml("clusters: 7"), Err(Error::Config(_))));
        assert!(matches!(Kubeconfig::from_yaml(":::\n- ["), Err(Error::Config(_))));
        assert!(data_or_file(Some("%%%"), None, "client-key").is_err());
    }

    #[test]
    fn a_missing_user_or_current_context_is_an_error() {
        let config = Kubeconfig::from_yaml(
            "clusters: [{name: c, cluster: {server: 'http://h'}}]\ncontexts: [{name: x, context: {cluster: c, user: ghost}}]\n",
        )
        .unwrap();
        assert!(config.resolve(None).unwrap_err().to_string().contains("current-context"));
        assert!(config.resolve(Some("x")).unwrap_err().to_string().contains("ghost"));
    }

    #[test]
    fn debug_output_hides_credentials() {
        let info = AuthInfo { token: Some("t0ken".into()), password: Some("pw".into()), ..AuthInfo::default() };
        let text = format!("{info:?}");
        assert!(!text.contains("t0ken") && !text.contains("pw\""), "{text}");
    }
}
