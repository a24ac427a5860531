//! Who a certificate names: the JobMaster, one executor, or an operator with a role.
//!
//! An identity is a URI subject-alternative name in certificates our CA issues
//! (`jobmaster certs`): `jobmaster://jobmaster`, `jobmaster://executor/<id>` and
//! `jobmaster://operator/<role>/<name>`, with `<id>` and `<name>` percent-encoded (every byte
//! but ASCII letters, digits and `-._~`). Peers are checked by identity, not by host name: an
//! executor's address is whatever it registered, but only the holder of the executor's
//! certificate can answer on it. A certificate with no such URI names nobody.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The URI scheme of identities.
pub const SCHEME: &str = "jobmaster://";

/// What an operator may do (DESIGN: "Operators authenticate, and have roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads: list, status, explain, exceptions, executors, watch, dashboard, metrics.
    Viewer,
    /// Reads and writes: also submit, cancel, inject, release.
    Operator,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Viewer, Role::Operator];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = crate::core::names::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::core::names::parse_name("role", &Role::ALL, s)
    }
}

/// A party proven by a certificate (or, for operators, by a bearer token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    JobMaster,
    Executor(String),
    Operator { role: Role, name: String },
}

impl Identity {
    /// The URI subject-alternative name that carries this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::JobMaster => format!("{SCHEME}jobmaster"),
            Identity::Executor(id) => format!("{SCHEME}executor/{}", encode(id)),
            Identity::Operator { role, name } => {
                format!("{SCHEME}operator/{role}/{}", encode(name))
            }
        }
    }

    /// Reads an identity URI; `None` for anything else.
    pub fn from_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix(SCHEME)?;
        let mut parts = rest.split('/');
        let identity = match (parts.next()?, parts.next(), parts.next()) {
            ("jobmaster", None, None) => Identity::JobMaster,
            ("executor", Some(id), None) => Identity::Executor(decode(id)?),
            ("operator", Some(role), Some(name)) => Identity::Operator {
                role: role.parse().ok()?,
                name: decode(name)?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(identity)
    }

    /// The identity a DER certificate names (its first identity URI).
    pub fn from_certificate(der: &[u8]) -> Option<Identity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::URI(uri) => Identity::from_uri(uri),
            _ => None,
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::JobMaster => f.write_str("the jobmaster"),
            Identity::Executor(id) => write!(f, "executor {id:?}"),
            Identity::Operator { role, name } => write!(f, "{role} {name:?}"),
        }
    }
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    (!decoded.is_empty()).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_survive_their_uri_even_with_reserved_characters() {
        for identity in [
            Identity::JobMaster,
            Identity::Executor("worker-1.zone/a b%".into()),
            Identity::Operator {
                role: Role::Viewer,
                name: "alice@example".into(),
            },
        ] {
            assert_eq!(Identity::from_uri(&identity.uri()), Some(identity));
        }
    }

    #[test]
    fn uris_that_name_nobody_are_refused() {
        for uri in [
            "https://jobmaster",
            "jobmaster://executor/",
            "jobmaster://executor/a/b",
            "jobmaster://operator/root/alice",
            "jobmaster://jobmaster/x",
            "jobmaster://executor/%zz",
        ] {
            assert_eq!(Identity::from_uri(uri), None, "{uri}");
        }
    }
}
