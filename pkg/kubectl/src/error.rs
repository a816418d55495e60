//! What can go wrong in a command, and the one line each failure prints.
//!
//! Failures print as kubectl prints them: a server's refusal as `Error from server (Reason):
//! message`, everything else as `error: message`. One line each, never a backtrace; the exit
//! code is 1 ([`Error::exit_code`]).

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the request; `reason` and `message` are its `Status`'s.
    #[error("Error from server ({reason}): {message}")]
    Server {
        /// The Status `reason` (`NotFound`, `Conflict`, `Invalid`, ...).
        reason: String,
        /// The Status `message`.
        message: String,
        /// The HTTP code, when known.
        code: u16,
    },
    /// Anything else: a bad argument, an unreadable file, an unreachable server.
    #[error("error: {0}")]
    Other(String),
    /// A command run by `exec` exited with this non-zero code (which becomes rkubectl's).
    #[error("command terminated with exit code {0}")]
    Exit(i32),
    /// A process rkubectl waited for (`run -i`) failed with this code, which becomes
    /// rkubectl's; `message` says which (`pod default/x terminated (Error)`).
    #[error("{message}")]
    Exited {
        /// The exit code.
        code: i32,
        /// What ended.
        message: String,
    },
}

impl Error {
    /// An [`Error::Other`] from anything printable.
    pub fn msg(text: impl std::fmt::Display) -> Error {
        Error::Other(text.to_string())
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exit(code) | Error::Exited { code, .. } => *code,
            _ => 1,
        }
    }

    /// Whether the server answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Server { code: 404, .. })
    }

    /// Whether the server answered 409 `Conflict`.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Server { code: 409, reason, .. } if reason == "Conflict")
    }

    /// An error from a non-2xx HTTP body (a `Status`, or anything else).
    pub fn from_body(code: u16, body: &[u8]) -> Error {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(status) if status["kind"] == "Status" => Error::Server {
                reason: status["reason"].as_str().filter(|r| !r.is_empty()).unwrap_or("Unknown").to_string(),
                message: status["message"].as_str().unwrap_or("").to_string(),
                code,
            },
            _ => Error::Server {
                reason: "Unknown".into(),
                message: format!("HTTP {code}: {}", String::from_utf8_lossy(body).trim()),
                code,
            },
        }
    }
}

impl From<rkube_client::Error> for Error {
    fn from(e: rkube_client::Error) -> Self {
        if let Some(status) = e.status() {
            return Error::Server {
                reason: status.reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| "Unknown".into()),
                message: status.message.clone().unwrap_or_default(),
                code: status.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(0),
            };
        }
        match e {
            rkube_client::Error::Unavailable(m) => Error::Other(format!("the server could not be reached: {m}")),
            rkube_client::Error::Config(m) => Error::Other(m),
            other => Error::Other(other.to_string()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_body_prints_like_kubectl() {
        let body =
            br#"{"kind":"Status","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","code":404}"#;
        let e = Error::from_body(404, body);
        assert_eq!(e.to_string(), r#"Error from server (NotFound): pods "x" not found"#);
        assert!(e.is_not_found());
    }

    #[test]
    fn a_non_status_body_still_makes_one_line() {
        let e = Error::from_body(502, b"<html>bad gateway</html>");
        assert_eq!(e.to_string(), "Error from server (Unknown): HTTP 502: <html>bad gateway</html>");
    }
}
