//! Serving HTTP for rkube's servers (the apiserver, and the kubelet's API): accept with a
//! deep backlog, TLS with optional client certificates, a header read timeout, HTTP/1.1 and
//! HTTP/2 with upgrades, graceful shutdown ([`connections`]); TLS configuration from PEM
//! files and the identity a client certificate names ([`tls`]).
//!
//! Who a client certificate names is handed to the application as a [`ClientIdentity`]
//! request extension; what that identity may do is the application's business.

pub mod connections;
pub mod tls;

/// The identity of a verified client certificate: its subject's common name and
/// organizations (Kubernetes reads them as the user and the groups). Set on every request
/// of the connection it came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's common name.
    pub common_name: String,
    /// The subject's organizations.
    pub organizations: Vec<String>,
}
