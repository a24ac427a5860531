//! The names of the core's enums as they appear on the wire, in specs, scenarios and on the
//! command line — `RUNNING`, `recoverable`, … — parsed back by one `FromStr` each, with one
//! error that lists what would have been accepted.

use std::fmt;
use std::str::FromStr;

use super::JobId;
use super::attempt::AttemptState;
use super::event::FailureClass;
use super::job_state::JobState;
use super::spec::Exchange;

/// A name that is none of the expected ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {name:?} is unknown; expected {expected}")]
pub struct UnknownName {
    /// What was being named (`"state"`, `"failure class"`, …).
    pub what: &'static str,
    pub name: String,
    /// The accepted names, comma-separated.
    pub expected: String,
}

/// Finds `text` among the names of `all`.
pub(crate) fn parse_name<T: Copy + fmt::Display>(
    what: &'static str,
    all: &[T],
    text: &str,
) -> Result<T, UnknownName> {
    all.iter()
        .copied()
        .find(|v| v.to_string() == text)
        .ok_or_else(|| UnknownName {
            what,
            name: text.to_owned(),
            expected: all
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl FromStr for AttemptState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name("state", &AttemptState::ALL, s)
    }
}

impl FromStr for JobState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name("job state", &JobState::ALL, s)
    }
}

impl FromStr for FailureClass {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name("failure class", &FailureClass::ALL, s)
    }
}

impl FromStr for Exchange {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name("exchange", &Exchange::ALL, s)
    }
}

/// A job id is 16 hex digits, as [`JobId`]'s `Display` writes it.
impl FromStr for JobId {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownName {
            what: "job_id",
            name: s.to_owned(),
            expected: "a job id (16 hex digits)".to_owned(),
        };
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u64::from_str_radix(s, 16).map(JobId).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_value() {
        for s in AttemptState::ALL {
            assert_eq!(s.name().parse::<AttemptState>(), Ok(s));
        }
        for s in JobState::ALL {
            assert_eq!(s.name().parse::<JobState>(), Ok(s));
        }
        for c in FailureClass::ALL {
            assert_eq!(c.name().parse::<FailureClass>(), Ok(c));
        }
        for x in Exchange::ALL {
            assert_eq!(x.name().parse::<Exchange>(), Ok(x));
        }
        let job = JobId(0x00ab_cdef_0123_4567);
        assert_eq!(job.to_string().parse::<JobId>(), Ok(job));
    }

    #[test]
    fn an_unknown_name_lists_the_accepted_ones() {
        let e = "running".parse::<AttemptState>().unwrap_err();
        assert_eq!(e.what, "state");
        assert!(e.expected.contains("RUNNING"), "{e}");
        let e = "fatal".parse::<FailureClass>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "failure class \"fatal\" is unknown; expected recoverable, non-recoverable, \
             executor-lost, partition-lost"
        );
        for bad in [
            "",
            "abc",
            "+0000000000000001",
            "00000000000000001",
            "000000000000000g",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
    }
}
