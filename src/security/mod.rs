//! Who may talk to whom: TLS on every port, identities from certificates, operator tokens and
//! roles (issue 12).
//!
//! - [`identity`]: the identities certificates carry (`jobmaster://…` URIs) and operator roles.
//! - [`certs`]: `jobmaster certs`, a private CA and every certificate, key and token of a cluster.

pub mod certs;
pub mod identity;

pub use identity::{Identity, Role};
