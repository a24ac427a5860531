//! Who may talk to whom: TLS on every port, identities from certificates, operator tokens and
//! roles (issue 12).
//!
//! - [`identity`]: the identities certificates carry (`jobmaster://…` URIs) and operator roles.
//! - [`tls`]: the CA, certificate and key files as rustls configurations, reloaded on change.
//! - [`incoming`]: our servers' accepted connections (plain or TLS) and the peer behind each.
//! - [`connector`]: our clients' connections, checked against the identity they meant to reach.
//! - [`reload`]: rereading certificate and token files while running.
//! - [`tokens`]: operators' bearer tokens (the hashed token file).
//! - [`exposure`]: the safe default — no plain-text listener on a non-loopback address.
//! - [`flags`]: the `--tls-*` flags of every binary.
//! - [`certs`]: `jobmaster certs`, a private CA and every certificate, key and token of a cluster.
//! - [`auth`]: the rules of who may call what, as a tower layer for the gRPC servers.

pub mod auth;
pub mod certs;
pub mod connector;
pub mod exposure;
pub mod flags;
pub mod identity;
pub mod incoming;
pub mod reload;
pub mod tls;
pub mod tokens;

pub use identity::{Identity, Role};
