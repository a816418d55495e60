//! Authentication: who sent a request, as kube-apiserver decides it.
//!
//! The authenticators this apiserver has, in kube-apiserver's order:
//! - **x509 client certificates** (`--client-ca-file`, over TLS): the certificate's common
//!   name is the user, its organizations the groups ([`rkube_server::tls`]);
//! - **static bearer tokens** (`--token-auth-file`): a CSV file of
//!   `token,user,uid,"group1,group2"` lines, read once at start;
//! - **ServiceAccount tokens** the apiserver signed ([`crate::serviceaccount_token`]): the
//!   user `system:serviceaccount:<namespace>:<name>` in `system:serviceaccounts` and
//!   `system:serviceaccounts:<namespace>`, while the ServiceAccount (and its bound pod)
//!   exist ([`service_account_user`]);
//! - **anonymous** (`--anonymous-auth`, on by default): a request with no credentials is
//!   `system:anonymous` in the group `system:unauthenticated`, and the authorizer decides
//!   what it may do.
//!
//! Invariants: a request that presents a bearer token no authenticator knows is a 401,
//! never anonymous (Kubernetes refuses rather than downgrades); every authenticated user is
//! also in `system:authenticated`; the token itself is never logged.
//!

use std::collections::HashMap;
use std::path::Path;

use http::HeaderMap;
use rkube_server::ClientIdentity;

use crate::error::ApiError;

/// The group of every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group of anonymous requests.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The user of anonymous requests.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group whose members may do anything, whatever the authorizer's objects say.
pub const MASTERS: &str = "system:masters";

/// Who a request comes from (`user.Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name, e.g. `alice` or `system:node:worker-1`.
    pub name: String,
    /// A unique id, when the authenticator knows one.
    pub uid: String,
    /// The groups the user belongs to.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The anonymous user.
    pub fn anonymous() -> UserInfo {
        UserInfo { name: ANONYMOUS.into(), uid: String::new(), groups: vec![UNAUTHENTICATED.into()] }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Why a token file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `token,user,uid[,"groups"]`.
    #[error("{path}:{line}: {why}")]
    Line {
        /// The file.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// The authenticators of one apiserver.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: HashMap<String, UserInfo>,
    anonymous: bool,
}

impl Default for Authenticator {
    /// No tokens; anonymous requests allowed (what an apiserver without flags does).
    fn default() -> Self {
        Authenticator { tokens: HashMap::new(), anonymous: true }
    }
}

impl Authenticator {
    /// Authenticators from the flags: the tokens of `token_file` (if any), and whether
    /// requests without credentials are anonymous (else they are refused).
    ///
    /// # Errors
    /// When the token file cannot be read or has a malformed line.
    pub fn new(token_file: Option<&Path>, anonymous: bool) -> Result<Authenticator, TokenFileError> {
        let tokens = match token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| TokenFileError::Read { path: path.display().to_string(), source })?;
                parse_token_file(&text).map_err(|(line, why)| TokenFileError::Line {
                    path: path.display().to_string(),
                    line,
                    why,
                })?
            }
            None => HashMap::new(),
        };
        Ok(Authenticator { tokens, anonymous })
    }

    /// Who sent a request with these headers, on a connection whose verified client
    /// certificate names `certificate` (which comes first, as in kube-apiserver).
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for a bearer token nobody issued, or for no credentials
    /// when anonymous requests are off.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        certificate: Option<&ClientIdentity>,
    ) -> Result<UserInfo, ApiError> {
        if let Some(identity) = certificate {
            let mut groups = identity.organizations.clone();
            groups.push(AUTHENTICATED.into());
            return Ok(UserInfo { name: identity.common_name.clone(), uid: String::new(), groups });
        }
        if !headers.contains_key(http::header::AUTHORIZATION) {
            return if self.anonymous { Ok(UserInfo::anonymous()) } else { Err(ApiError::Unauthorized) };
        }
        let token = bearer_token(headers).ok_or(ApiError::Unauthorized)?;
        self.token_user(token).ok_or(ApiError::Unauthorized)
    }

    /// The user of a static token (`--token-auth-file`), if the file has it.
    pub fn token_user(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }
}

/// The user of a ServiceAccount token `token` signed by this apiserver, when it verifies
/// and the ServiceAccount (and the pod it is bound to) still exist with the uids it names;
/// `None` otherwise.
///
/// # Errors
/// When the ServiceAccount or pod cannot be read (etcd unavailable).
pub async fn service_account_user(state: &crate::ApiState, token: &str) -> Result<Option<UserInfo>, ApiError> {
    let Some(issuer) = state.config.service_account_tokens.as_ref() else { return Ok(None) };
    let Some(claims) = issuer.verify(token, jiff::Timestamp::now().as_second()) else { return Ok(None) };
    let k8s = &claims.kubernetes;
    let uid_of = |res: &'static rkube_api::registry::ResourceDef, name: &str| {
        let key = state.keys.object(res.plural, Some(&k8s.namespace), name);
        async move {
            match state.store.get(&key).await {
                Ok(kv) => Ok(crate::metadata::from_storage(&kv)
                    .ok()
                    .map(|object| crate::metadata::meta_str(&object, "uid").to_string())),
                Err(rkube_storage::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(ApiError::from(e)),
            }
        }
    };
    let account = &k8s.serviceaccount;
    if uid_of(&rkube_api::kinds::serviceaccount::RESOURCE, &account.name).await?.as_deref() != Some(&account.uid) {
        return Ok(None);
    }
    if let Some(pod) = &k8s.pod
        && uid_of(&rkube_api::kinds::pod::RESOURCE, &pod.name).await?.as_deref() != Some(&pod.uid)
    {
        return Ok(None);
    }
    let groups = vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{}", k8s.namespace),
        AUTHENTICATED.to_string(),
    ];
    Ok(Some(UserInfo { name: claims.sub, uid: account.uid.clone(), groups }))
}

/// The bearer token of a request, if it carries one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim).filter(|t| !t.is_empty())
}

/// Parses a token file: `token,user,uid[,"group1,group2"]` per line, blank lines and lines
/// starting with `#` skipped. Errors carry the line number.
fn parse_token_file(text: &str) -> Result<HashMap<String, UserInfo>, (usize, String)> {
    let mut tokens = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_csv(line).map_err(|why| (number, why))?;
        let [token, user, uid, rest @ ..] = fields.as_slice() else {
            return Err((number, "want at least 3 columns: token,user,uid".into()));
        };
        if token.is_empty() || user.is_empty() {
            return Err((number, "the token and the user name may not be empty".into()));
        }
        let mut groups: Vec<String> = match rest {
            [] => Vec::new(),
            [groups] => groups.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect(),
            _ => return Err((number, "groups must be one column; quote it: \"group1,group2\"".into())),
        };
        groups.push(AUTHENTICATED.into());
        let info = UserInfo { name: user.clone(), uid: uid.clone(), groups };
        if tokens.insert(token.clone(), info).is_some() {
            return Err((number, "a token that an earlier line already has".into()));
        }
    }
    Ok(tokens)
}

/// Splits one CSV line; fields may be quoted with `"` (and hold commas), `""` is a quote.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    fields.push(field);
    Ok(fields.into_iter().map(|f| f.trim().to_string()).collect())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
        headers
    }

    #[test]
    fn a_token_file_names_users_and_their_groups() {
        let tokens = parse_token_file("# token,user,uid,groups\nt0k3n,alice,1001,\"devs,ops\"\n\nsecond,bob,1002\n")
            .expect("valid");
        let alice = &tokens["t0k3n"];
        assert_eq!((alice.name.as_str(), alice.uid.as_str()), ("alice", "1001"));
        assert_eq!(alice.groups, vec!["devs", "ops", AUTHENTICATED]);
        assert_eq!(tokens["second"].groups, vec![AUTHENTICATED]);
    }

    #[test]
    fn a_malformed_token_file_names_its_line() {
        assert_eq!(
            parse_token_file("a,b,c\nonly-two,x\n").map(|_| ()),
            Err((2, "want at least 3 columns: token,user,uid".into()))
        );
        assert!(parse_token_file("a,b,c,\"open\n").is_err());
        assert_eq!(parse_token_file("a,b,1\na,c,2\n").map(|_| ()).map_err(|(line, _)| line), Err(2));
    }

    #[test]
    fn known_tokens_authenticate_unknown_ones_are_refused_and_none_is_anonymous() {
        let auth = Authenticator { tokens: parse_token_file("t0k3n,alice,1001").expect("valid"), anonymous: true };
        assert_eq!(auth.authenticate(&bearer("t0k3n"), None).map(|u| u.name), Ok("alice".into()));
        assert!(matches!(auth.authenticate(&bearer("guess"), None), Err(ApiError::Unauthorized)));
        assert_eq!(auth.authenticate(&HeaderMap::new(), None).map(|u| u.name), Ok(ANONYMOUS.into()));
        let strict = Authenticator { anonymous: false, ..auth };
        assert!(matches!(strict.authenticate(&HeaderMap::new(), None), Err(ApiError::Unauthorized)));
    }
}
