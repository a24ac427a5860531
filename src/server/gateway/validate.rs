//! What the TaskExecutorGateway checks in an executor's message before believing it: the
//! executor id (the name rule of vertex ids, [`check_name`]), the session id, the address it
//! is to be reached at, its slots and labels. Every refusal is INVALID_ARGUMENT naming the
//! field; the offending text is quoted with `{:?}`, which escapes control and formatting
//! characters.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::api::v1::RegisterExecutorRequest;
use crate::core::Labels;
use crate::core::domain::check_label;
use crate::core::names::{MAX_NAME_LEN, check_name};
use crate::server::ApiError;

/// Longest DNS name accepted in an address, in bytes (RFC 1035).
const MAX_HOST_LEN: usize = 253;
/// Longest label of a DNS name, in bytes (RFC 1035).
const MAX_DNS_LABEL_LEN: usize = 63;

/// A registration's checked contents.
pub(super) struct Registration {
    pub labels: Labels,
}

/// Checks every field of a registration; `max_slots` is `server.max-executor-slots`.
pub(super) fn registration(
    r: &RegisterExecutorRequest,
    max_slots: u32,
) -> Result<Registration, ApiError> {
    executor_id(&r.executor_id)?;
    session_id(&r.session_id)?;
    address(&r.address)?;
    slots(r.slots, max_slots)?;
    let labels = labels(&r.labels)?;
    Ok(Registration { labels })
}

/// An executor id: [`check_name`]'s rule.
pub(super) fn executor_id(id: &str) -> Result<(), ApiError> {
    check_name("executor_id", id).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

/// A session id: non-empty, at most 128 bytes, printable ASCII without spaces.
pub(super) fn session_id(session: &str) -> Result<(), ApiError> {
    let bad = |what: String| Err(ApiError::InvalidArgument(format!("session_id {what}")));
    if session.is_empty() {
        return bad("must not be empty".into());
    }
    if session.len() > MAX_NAME_LEN {
        return bad(format!(
            "is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            session.len()
        ));
    }
    if let Some((i, c)) = session
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic())
    {
        return bad(format!(
            "{session:?} contains {} at position {}; use printable ASCII characters without \
             spaces",
            c.escape_unicode(),
            i + 1
        ));
    }
    Ok(())
}

fn slots(slots: u32, max: u32) -> Result<(), ApiError> {
    if slots == 0 {
        return Err(ApiError::InvalidArgument("slots must be at least 1".into()));
    }
    if slots > max {
        return Err(ApiError::InvalidArgument(format!(
            "slots {slots} is more than server.max-executor-slots ({max}) allows"
        )));
    }
    Ok(())
}

fn labels(wire: &std::collections::HashMap<String, String>) -> Result<Labels, ApiError> {
    let mut labels = Labels::new();
    for (key, value) in wire {
        let key_problem = if key.is_empty() {
            Err("a label key must not be empty".to_owned())
        } else {
            crate::core::spec::validate_label_key(key)
        };
        if let Err(message) = key_problem {
            return Err(ApiError::InvalidArgument(format!(
                "labels[{key:?}]: {message}"
            )));
        }
        // Keys and values: plain ASCII words (letters, digits, - _ . /), never empty.
        check_label(key, value).map_err(|e| ApiError::InvalidArgument(format!("labels: {e}")))?;
        labels.insert(key.clone(), value.clone());
    }
    Ok(labels)
}

/// An executor's address: `host:port` where host is a DNS name, an IPv4 address or a
/// bracketed IPv6 address and port is 1–65535; no scheme, path or user info.
pub(super) fn address(address: &str) -> Result<(), ApiError> {
    address_problem(address).map_or(Ok(()), |why| {
        Err(ApiError::InvalidArgument(format!(
            "address {address:?} {why}; give host:port of the executor's TaskExecutorService \
             (e.g. worker-1.example:6124, 10.0.0.1:6124 or [::1]:6124)"
        )))
    })
}

/// Why `address` is not a `host:port`, if it is not.
fn address_problem(address: &str) -> Option<String> {
    // A socket address as Rust writes one (IPv6 with a scope id included).
    if let Ok(a) = address.parse::<SocketAddr>() {
        return (a.port() == 0).then(|| "has port 0".to_owned());
    }
    if address.contains("://") {
        return Some("has a scheme".to_owned());
    }
    if address.contains('/') {
        return Some("has a path".to_owned());
    }
    if address.contains('@') {
        return Some("has user info".to_owned());
    }
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once("]:") else {
            return Some("is not [IPv6 address]:port".to_owned());
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Some(format!("has {ip:?}, which is not an IPv6 address"));
        }
        (None, port)
    } else {
        let Some((host, port)) = address.rsplit_once(':') else {
            return Some("has no port".to_owned());
        };
        if host.contains(':') {
            return Some("has an IPv6 address without brackets".to_owned());
        }
        (Some(host), port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("has port {port:?}, which is not a number"));
    }
    match port.parse::<u16>() {
        Ok(0) => return Some("has port 0".to_owned()),
        Ok(_) => {}
        Err(_) => return Some(format!("has port {port}; ports go from 1 to 65535")),
    }
    host.and_then(host_problem)
}

/// Why `host` is neither a DNS name nor an IPv4 address, if it is not.
fn host_problem(host: &str) -> Option<String> {
    if host.is_empty() {
        return Some("has no host".to_owned());
    }
    if host.len() > MAX_HOST_LEN {
        return Some(format!(
            "has a host name of {} bytes; at most {MAX_HOST_LEN} are allowed",
            host.len()
        ));
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        // All numbers: an IPv4 address or nothing.
        return host
            .parse::<Ipv4Addr>()
            .is_err()
            .then(|| format!("has {host:?}, which is not an IPv4 address"));
    }
    for label in labels {
        let plain = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty()
            || label.len() > MAX_DNS_LABEL_LEN
            || !plain
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Some(format!(
                "has host {host:?}, which is not a DNS name (dot-separated labels of ASCII \
                 letters, digits and '-', each 1 to {MAX_DNS_LABEL_LEN} bytes, not starting or \
                 ending with '-')"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port_and_nothing_else() {
        for ok in [
            "127.0.0.1:6124",
            "10.0.0.1:6124",
            "[::1]:6124",
            "[fe80::1%2]:6124",
            "host.example:6124",
            "worker-1:1",
            "localhost:65535",
            "xn--bcher-kva.example:6124",
        ] {
            assert_eq!(address_problem(ok), None, "{ok:?}");
        }
        for (bad, why) in [
            ("evil", "has no port"),
            ("host:0", "has port 0"),
            ("10.0.0.1:0", "has port 0"),
            ("[::1]:0", "has port 0"),
            ("host:65536", "ports go from 1 to 65535"),
            ("host:+1", "not a number"),
            ("host:", "not a number"),
            ("http://x:1/path", "has a scheme"),
            ("x:1/path", "has a path"),
            ("user@x:1", "has user info"),
            (":6124", "has no host"),
            ("::1:6124", "IPv6 address without brackets"),
            ("[::1]6124", "is not [IPv6 address]:port"),
            ("[nope]:6124", "not an IPv6 address"),
            ("999.1.1.1:6124", "not an IPv4 address"),
            ("1.2.3:6124", "not an IPv4 address"),
            ("a..b:6124", "not a DNS name"),
            ("-a.b:6124", "not a DNS name"),
            ("host_1:6124", "not a DNS name"),
            ("h\nINFO forged:1", "not a DNS name"),
            ("hôst:1", "not a DNS name"),
        ] {
            let problem = address_problem(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(problem.contains(why), "{bad:?}: {problem}");
        }
        let long = format!("{}:1", vec!["a".repeat(63); 4].join("."));
        assert!(address_problem(&long).is_some_and(|p| p.contains("at most 253")));
        let e = address("h\nx:1").unwrap_err().to_string();
        assert!(e.contains("\"h\\nx:1\"") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn session_ids_are_printable_ascii_words() {
        assert!(session_id("session-0123456789abcdef").is_ok());
        assert!(session_id(&"s".repeat(128)).is_ok());
        for bad in ["", "has space", "new\nline", "zero\u{200B}width", "ünï"] {
            let e = session_id(bad).unwrap_err().to_string();
            assert!(e.starts_with("session_id "), "{e}");
        }
        let e = session_id(&"s".repeat(129)).unwrap_err().to_string();
        assert!(e.contains("at most 128"), "{e}");
        let e = session_id("a b").unwrap_err().to_string();
        assert!(e.contains("\\u{20} at position 2"), "{e}");
    }

    #[test]
    fn slots_are_bounded_by_the_configured_maximum() {
        assert!(slots(1, 1024).is_ok());
        assert!(slots(1024, 1024).is_ok());
        assert_eq!(
            slots(1025, 1024).unwrap_err().to_string(),
            "slots 1025 is more than server.max-executor-slots (1024) allows"
        );
        assert!(slots(0, 1024).is_err());
    }
}
