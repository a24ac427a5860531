//! Which JobMaster leads, as its clients see it: the endpoint lists that `taskexecutor
//! --jobmaster` and `jmctl --endpoint` take (`URL[,URL…]`), and what a standby's answer says
//! about the leader ([`super::LEADER_METADATA`]). How each client follows the leader is its
//! own (`executor::follow`, `ctl::follow`).

use thiserror::Error;

use super::{LEADER_METADATA, STANDBY_MESSAGE};

/// A list of JobMaster endpoints that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointsError {
    #[error("no jobmaster endpoint given: give a URL, or several separated by commas")]
    Empty,
    #[error("{0:?} has an empty entry: separate the URLs by single commas")]
    EmptyEntry(String),
    #[error("{0:?} is not an http:// or https:// URL")]
    NotUrl(String),
}

/// The endpoints of `URL[,URL…]` in order, without blanks around them and without repeats.
/// One URL is a list of one.
pub fn endpoints(text: &str) -> Result<Vec<String>, EndpointsError> {
    if text.trim().is_empty() {
        return Err(EndpointsError::Empty);
    }
    let mut list: Vec<String> = Vec::new();
    for entry in text.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(EndpointsError::EmptyEntry(text.to_owned()));
        }
        if !is_url(entry) {
            return Err(EndpointsError::NotUrl(entry.to_owned()));
        }
        if !list.iter().any(|e| e == entry) {
            list.push(entry.to_owned());
        }
    }
    Ok(list)
}

/// Whether `text` is an `http://` or `https://` URL with a host.
fn is_url(text: &str) -> bool {
    (text.starts_with("http://") || text.starts_with("https://"))
        && text
            .parse::<tonic::transport::Uri>()
            .is_ok_and(|uri| uri.host().is_some_and(|h| !h.is_empty()))
}

/// What a standby's `UNAVAILABLE` answer says about the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// No leader is elected now (the answer has no [`LEADER_METADATA`]).
    NoLeader,
    /// The leader's endpoint.
    Leader(String),
    /// A [`LEADER_METADATA`] value that is no usable URL (said as received, for the logs).
    Unusable(String),
}

/// What `status` says about the leader if a standby answered it (an `UNAVAILABLE` whose message
/// starts with [`STANDBY_MESSAGE`] or that carries [`LEADER_METADATA`]); `None` for any other
/// status, a transport failure included.
pub fn standby(status: &tonic::Status) -> Option<Hint> {
    if status.code() != tonic::Code::Unavailable {
        return None;
    }
    let value = status.metadata().get(LEADER_METADATA);
    if value.is_none() && !status.message().starts_with(STANDBY_MESSAGE) {
        return None;
    }
    Some(match value {
        None => Hint::NoLeader,
        Some(v) => match v.to_str().map(str::trim) {
            Ok(url) if is_url(url) => Hint::Leader(url.to_owned()),
            Ok("") => Hint::NoLeader,
            Ok(other) => Hint::Unusable(other.to_owned()),
            Err(_) => Hint::Unusable(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_list_of_one_and_a_list_keeps_its_order_without_repeats() {
        assert_eq!(
            endpoints("http://127.0.0.1:6123"),
            Ok(vec!["http://127.0.0.1:6123".to_owned()])
        );
        assert_eq!(
            endpoints(" http://a:1 ,https://b:2,http://a:1").unwrap(),
            vec!["http://a:1", "https://b:2"]
        );
        assert_eq!(endpoints("  "), Err(EndpointsError::Empty));
        assert!(matches!(
            endpoints("http://a:1,,http://b:2"),
            Err(EndpointsError::EmptyEntry(_))
        ));
        assert_eq!(
            endpoints("http://a:1,b:2"),
            Err(EndpointsError::NotUrl("b:2".into()))
        );
    }

    fn unavailable(message: &str, leader: Option<&str>) -> tonic::Status {
        let mut status = tonic::Status::unavailable(message);
        if let Some(l) = leader {
            status
                .metadata_mut()
                .insert(LEADER_METADATA, l.parse().expect("ascii"));
        }
        status
    }

    #[test]
    fn a_standby_is_told_by_its_message_or_its_hint_and_nothing_else_is_one() {
        let msg = "this jobmaster is a standby: the leader is elsewhere";
        assert_eq!(standby(&unavailable(msg, None)), Some(Hint::NoLeader));
        assert_eq!(
            standby(&unavailable(msg, Some("http://127.0.0.1:7001"))),
            Some(Hint::Leader("http://127.0.0.1:7001".into()))
        );
        assert_eq!(
            standby(&unavailable("other words", Some("http://h:1"))),
            Some(Hint::Leader("http://h:1".into()))
        );
        assert_eq!(
            standby(&unavailable(msg, Some("h:1"))),
            Some(Hint::Unusable("h:1".into()))
        );
        assert_eq!(standby(&unavailable("connection refused", None)), None);
        assert_eq!(standby(&tonic::Status::internal(msg)), None);
    }
}
