//! Failure domains: the labels an executor registers with (`zone=a`, `rack=r1`) and a failure
//! domain named by one of them, `key=value` — every executor carrying that label (losing a
//! zone loses all its executors at once).
//!
//! One spelling everywhere (`taskexecutor --label`, the wire, scenarios, `jmctl explain
//! --domain`): a key and a value, each non-empty and *plain* — ASCII letters, digits and
//! `-`, `_`, `.`, `/` — so that `zone=a,rack=r1` is unambiguous in tables.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An executor's labels, by key.
pub type Labels = BTreeMap<String, String>;

/// Why a label (or a domain) is malformed; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label {0:?} must be key=value, e.g. zone=a")]
    NoEquals(String),
    #[error("label {text:?} has an empty {part}; write key=value, e.g. zone=a")]
    Empty { text: String, part: &'static str },
    #[error("label {text:?}: {part} {word:?} may only hold ASCII letters, digits and - _ . /")]
    NotPlain {
        text: String,
        part: &'static str,
        word: String,
    },
    #[error("label key {key:?} is given twice ({first:?} and {second:?})")]
    Duplicate {
        key: String,
        first: String,
        second: String,
    },
}

fn plain(word: &str) -> bool {
    word.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// Checks one key and value (as they arrive in a map, e.g. on the wire).
pub fn check_label(key: &str, value: &str) -> Result<(), LabelError> {
    let text = format!("{key}={value}");
    for (part, word) in [("key", key), ("value", value)] {
        if word.is_empty() {
            return Err(LabelError::Empty { text, part });
        }
        if !plain(word) {
            return Err(LabelError::NotPlain {
                text,
                part,
                word: word.to_owned(),
            });
        }
    }
    Ok(())
}

/// Parses `key=value`.
pub fn parse_label(text: &str) -> Result<(String, String), LabelError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| LabelError::NoEquals(text.to_owned()))?;
    check_label(key, value)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Parses a list of `key=value` (a repeated flag); a key may appear once.
pub fn parse_labels<S: AsRef<str>>(texts: &[S]) -> Result<Labels, LabelError> {
    let mut labels = Labels::new();
    for text in texts {
        let (key, value) = parse_label(text.as_ref())?;
        if let Some(first) = labels.get(&key) {
            return Err(LabelError::Duplicate {
                first: format!("{key}={first}"),
                second: format!("{key}={value}"),
                key,
            });
        }
        labels.insert(key, value);
    }
    Ok(labels)
}

/// Labels as one cell: `rack=r1,zone=a` (by key), or `-` for none.
pub fn labels_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return "-".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A failure domain: every executor labelled `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailureDomain {
    pub key: String,
    pub value: String,
}

impl FailureDomain {
    /// Does an executor with these labels belong to the domain?
    pub fn contains(&self, labels: &Labels) -> bool {
        labels.get(&self.key) == Some(&self.value)
    }
}

impl FromStr for FailureDomain {
    type Err = LabelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = parse_label(s)?;
        Ok(FailureDomain { key, value })
    }
}

impl fmt::Display for FailureDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_from_key_value_and_render_by_key() {
        let labels = parse_labels(&["zone=a", "rack=r1"]).unwrap();
        assert_eq!(labels_text(&labels), "rack=r1,zone=a");
        assert_eq!(labels_text(&Labels::new()), "-");
        let domain: FailureDomain = "zone=a".parse().unwrap();
        assert!(domain.contains(&labels));
        assert!(!"zone=b".parse::<FailureDomain>().unwrap().contains(&labels));
        assert_eq!(domain.to_string(), "zone=a");
    }

    #[test]
    fn malformed_labels_say_what_to_write() {
        let e = parse_label("zone").unwrap_err();
        assert!(e.to_string().contains("must be key=value"), "{e}");
        let e = parse_label("=a").unwrap_err();
        assert!(e.to_string().contains("empty key"), "{e}");
        let e = parse_label("zone=").unwrap_err();
        assert!(e.to_string().contains("empty value"), "{e}");
        let e = parse_label("zone=a b").unwrap_err();
        assert!(e.to_string().contains("ASCII letters"), "{e}");
        let e = parse_label("zone=a=b").unwrap_err();
        assert!(e.to_string().contains("value \"a=b\""), "{e}");
        let e = parse_labels(&["zone=a", "zone=b"]).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
    }
}
