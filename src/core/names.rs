//! Names: the core's enums as they appear on the wire, in specs, scenarios and on the command
//! line — `RUNNING`, `recoverable`, … — parsed back by one `FromStr` each, with one error that
//! lists what would have been accepted; and the one rule for the names users and executors
//! choose (vertex ids, executor ids, [`check_name`]), which end up in task names, logs and
//! metric labels.

use std::fmt;
use std::str::FromStr;

use super::JobId;
use super::attempt::AttemptState;
use super::event::FailureClass;
use super::job_state::JobState;
use super::spec::Exchange;

/// Longest name (vertex id, executor id) accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Characters of Unicode general category Cf (format): invisible, or reordering the text
/// around them — zero-width spaces and joiners, the soft hyphen, bidirectional embeddings,
/// overrides and isolates, the byte-order mark, tag characters. A name holding one reads as
/// another name, or makes a log line read differently from what it holds.
pub fn is_invisible_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Why a name (a vertex id, an executor id) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the {what} must not be empty")]
    Empty { what: &'static str },
    #[error("the {what} is {len} bytes long; at most {MAX_NAME_LEN} are allowed")]
    TooLong { what: &'static str, len: usize },
    #[error("the {what} must not be {name:?}: executors use it as a folder name")]
    Dots { what: &'static str, name: String },
    #[error(
        "{what} {name:?} contains {} at position {position}, which is not allowed; use letters, \
         digits and punctuation other than '#' and '/' (no whitespace, control or invisible \
         formatting characters)",
        c.escape_unicode()
    )]
    BadChar {
        what: &'static str,
        name: String,
        c: char,
        /// Counted in characters, the first is 1.
        position: usize,
    },
}

/// The one rule for names that end up in task names (`vertex#subtask`), folder names on
/// executors, logs and metric labels — checked by the spec, by executors for what they are
/// sent, and at registration, so that every accepted spec deploys: non-empty, at most
/// [`MAX_NAME_LEN`] bytes, not `.` or `..`, and no `#`, `/`, whitespace, control character or
/// invisible/bidirectional formatting character ([`is_invisible_or_bidi`]). `what` names the
/// name in the error ("vertex id", "executor_id").
pub fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            len: name.len(),
        });
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots {
            what,
            name: name.to_owned(),
        });
    }
    let bad = |c: char| {
        c == '#' || c == '/' || c.is_whitespace() || c.is_control() || is_invisible_or_bidi(c)
    };
    if let Some((i, c)) = name.chars().enumerate().find(|&(_, c)| bad(c)) {
        return Err(NameError::BadChar {
            what,
            name: name.to_owned(),
            c,
            position: i + 1,
        });
    }
    Ok(())
}

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
    fn names_refuse_invisible_bidi_control_hash_and_slash_characters_and_say_which_and_where() {
        for dots in [".", ".."] {
            assert!(matches!(
                check_name("vertex id", dots),
                Err(NameError::Dots { .. })
            ));
        }
        for ok in ["source", "orders-2", "exec_a.b-c", "...", "ünïcode", "名前"] {
            assert_eq!(check_name("vertex id", ok), Ok(()), "{ok:?}");
        }
        for (name, c, position) in [
            ("a\u{200B}b", '\u{200B}', 2),
            ("\u{202E}abc", '\u{202E}', 1),
            ("ab\u{2066}", '\u{2066}', 3),
            ("a\u{FEFF}", '\u{FEFF}', 2),
            ("x\u{061C}", '\u{061C}', 2),
            ("soft\u{00AD}hyphen", '\u{00AD}', 5),
            ("m\u{180E}", '\u{180E}', 2),
            ("a\nb", '\n', 2),
            ("a\u{1b}[31m", '\u{1b}', 2),
            ("a\u{85}", '\u{85}', 2),
            ("a b", ' ', 2),
            ("a\u{2028}", '\u{2028}', 2),
            ("map#1", '#', 4),
            ("<img/src=x>", '/', 5),
        ] {
            let e = check_name("executor_id", name).unwrap_err();
            assert_eq!(
                e,
                NameError::BadChar {
                    what: "executor_id",
                    name: name.to_owned(),
                    c,
                    position
                }
            );
            let text = e.to_string();
            assert!(
                text.contains(&format!("{} at position {position}", c.escape_unicode())),
                "{text}"
            );
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() || is_invisible_or_bidi(c)),
                "{text:?}"
            );
        }
        assert_eq!(
            check_name("vertex id", "").unwrap_err().to_string(),
            "the vertex id must not be empty"
        );
        assert!(check_name("vertex id", &"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(matches!(
            check_name("vertex id", &"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { len: 129, .. })
        ));
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
