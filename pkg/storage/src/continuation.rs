//! Continue tokens for paged lists: which revision the list is read at and where the next
//! page starts. Encoded like Kubernetes' (base64 of a small JSON document), opaque to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Error;

/// Where a paged list continues: the revision of its first page and the next key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continue {
    /// The revision every page of this list is read at.
    pub revision: i64,
    /// The key the next page starts at, relative to the listed prefix.
    pub start: String,
}

impl Continue {
    /// The opaque token sent to clients in `metadata.continue`.
    pub fn encode(&self) -> String {
        let doc = serde_json::json!({"v": "meta.k8s.io/v1", "rv": self.revision, "start": self.start});
        URL_SAFE_NO_PAD.encode(doc.to_string())
    }

    /// Parses a token from a client; rejects anything we did not issue.
    pub fn decode(token: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::InvalidContinue(why.to_string());
        let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| invalid("not base64"))?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid("not JSON"))?;
        if doc.get("v").and_then(|v| v.as_str()) != Some("meta.k8s.io/v1") {
            return Err(invalid("unknown version"));
        }
        let revision =
            doc.get("rv").and_then(|v| v.as_i64()).filter(|rv| *rv > 0).ok_or_else(|| invalid("no revision"))?;
        let start = doc.get("start").and_then(|v| v.as_str()).ok_or_else(|| invalid("no start key"))?;
        if start.is_empty() || start.starts_with('/') || start.split('/').any(|part| part == "..") {
            return Err(invalid("bad start key"));
        }
        Ok(Continue { revision, start: start.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips() {
        let token = Continue { revision: 42, start: "default/web\u{0}".into() };
        assert_eq!(Continue::decode(&token.encode()), Ok(token));
    }

    #[test]
    fn garbage_and_escaping_tokens_are_rejected() {
        assert!(Continue::decode("not a token!").is_err());
        let escape = Continue { revision: 1, start: "../secrets/x".into() }.encode();
        assert!(Continue::decode(&escape).is_err());
    }
}
