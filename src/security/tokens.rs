//! Operators' bearer tokens: the token file (`auth.token-file`), which holds only SHA-256
//! hashes, each with a role and a name, and the check of a presented token against it.
//!
//! Format, one token per line, `#` starts a comment line:
//! `<role> <name> sha256:<64 lowercase hex digits of SHA-256 of the token>`.
//! Tokens are 32 random bytes (`jobmaster certs`, `jobmaster token`), so an unsalted hash
//! is enough: nobody can guess one from its hash. A presented token is hashed and compared
//! with every line in constant time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Role;

/// One line of the token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub role: Role,
    pub name: String,
    hash: [u8; 32],
}

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "token file {path}, line {line}: {problem}; expected `<role> <name> sha256:<64 hex \
         digits>` with role viewer or operator (`jobmaster token` prints such a line)"
    )]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// SHA-256 of a token.
fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Parses a token file's text.
pub fn parse(path: &Path, text: &str) -> Result<Vec<TokenEntry>, TokenFileError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: String| TokenFileError::Line {
            path: path.to_owned(),
            line: i + 1,
            problem,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [role, name, hash] = fields[..] else {
            return Err(bad(format!("{} fields instead of 3", fields.len())));
        };
        let role: Role = role.parse().map_err(|e| bad(format!("{e}")))?;
        let hash = parse_hash(hash).ok_or_else(|| {
            bad("the third field is not sha256: and 64 hex digits (a plain token does not belong in this file, only its hash)".into())
        })?;
        entries.push(TokenEntry {
            role,
            name: name.to_owned(),
            hash,
        });
    }
    Ok(entries)
}

/// The token file in use, reloaded when it changes.
pub struct Tokens {
    path: PathBuf,
    state: RwLock<(Vec<u8>, Arc<Vec<TokenEntry>>)>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Arc<Tokens>, TokenFileError> {
        let bytes = read(path)?;
        let entries = parse(path, &String::from_utf8_lossy(&bytes))?;
        Ok(Arc::new(Tokens {
            path: path.to_owned(),
            state: RwLock::new((bytes, Arc::new(entries))),
        }))
    }

    /// The entry whose hash matches `token`. Every entry is compared, in constant time, so
    /// the time taken says nothing about which one (or how much of one) matched.
    pub fn check(&self, token: &str) -> Option<TokenEntry> {
        let presented = digest(token);
        let entries = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        let mut found = None;
        for entry in entries.iter() {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some(entry.clone());
            }
        }
        found
    }

    /// Rereads the file; returns whether it changed. A file that does not parse keeps the
    /// previous tokens in use.
    pub fn reload(&self) -> Result<bool, TokenFileError> {
        let bytes = match read(&self.path) {
            // Deleting the file revokes every token (keeping the old ones would not).
            Err(TokenFileError::Read { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                Vec::new()
            }
            other => other?,
        };
        if self.state.read().unwrap_or_else(|e| e.into_inner()).0 == bytes {
            return Ok(false);
        }
        let entries = parse(&self.path, &String::from_utf8_lossy(&bytes))?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = (bytes, Arc::new(entries));
        Ok(true)
    }

    /// Checks the file every `interval` (tokens added or revoked without a restart).
    pub fn spawn_reloader(self: &Arc<Tokens>, interval: Duration) {
        super::reload::spawn_reloader(self, interval);
    }
}

impl super::reload::Reload for Tokens {
    type Error = TokenFileError;
    const WHAT: &'static str = "token file";
    fn reload(&self) -> Result<bool, TokenFileError> {
        Tokens::reload(self)
    }
    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TokenFileError> {
    std::fs::read(path).map_err(|error| TokenFileError::Read {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(role: &str, name: &str, token: &str) -> String {
        let hex: String = digest(token).iter().map(|b| format!("{b:02x}")).collect();
        format!("{role} {name} sha256:{hex}\n")
    }

    #[test]
    fn a_token_is_known_by_its_hash_and_maps_to_its_role() {
        let text = format!(
            "# tokens\n{}{}",
            line("viewer", "grafana", "jm_aaa"),
            line("operator", "alice", "jm_bbb")
        );
        let entries = parse(Path::new("tokens"), &text).expect("parses");
        let tokens = Tokens {
            path: "tokens".into(),
            state: RwLock::new((Vec::new(), Arc::new(entries))),
        };
        let alice = tokens.check("jm_bbb").expect("known");
        assert_eq!((alice.role, alice.name.as_str()), (Role::Operator, "alice"));
        assert_eq!(tokens.check("jm_aaa").map(|e| e.role), Some(Role::Viewer));
        assert_eq!(tokens.check("jm_bb"), None);
        assert_eq!(tokens.check(""), None);
    }

    #[test]
    fn deleting_the_token_file_revokes_every_token() {
        let path = std::env::temp_dir().join(format!("jobmaster-tokens-{}", std::process::id()));
        std::fs::write(&path, line("operator", "alice", "jm_alice")).expect("write");
        let tokens = Tokens::load(&path).expect("loads");
        assert!(tokens.check("jm_alice").is_some());
        std::fs::remove_file(&path).expect("delete");
        assert!(tokens.reload().expect("a missing file is no tokens"));
        assert_eq!(tokens.check("jm_alice"), None);
    }

    #[test]
    fn a_plain_token_or_an_unknown_role_in_the_file_is_refused_with_its_line() {
        for (text, expected) in [
            ("viewer bob jm_plaintext\n", "line 1"),
            ("# c\nroot bob sha256:00\n", "line 2"),
            ("viewer sha256:00\n", "2 fields"),
        ] {
            let e = parse(Path::new("t"), text).expect_err(text).to_string();
            assert!(e.contains(expected), "{e}");
        }
    }
}
