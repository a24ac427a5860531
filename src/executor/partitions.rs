//! Result partitions on disk: where they live, how much disk is free, deleting them.
//!
//! A blocking output of attempt `a` of task `p#i` for consumer vertex `c` is a directory
//! `DATA/partitions/JOB/p#i.a/c/` holding one file per consumer subtask (`0`, `1`, ...);
//! a persistent output has the same layout under the persistent directory.

use std::path::{Path, PathBuf};

use crate::api::v1::PartitionRef;
use crate::core::names::is_invisible_or_bidi;

/// A name that is safe as one path component, and in a log line: no control character (a
/// newline would forge a line) and no invisible or bidirectional formatting character.
pub(crate) fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains('/')
        && s.len() <= 255
        && !s.chars().any(|c| c.is_control() || is_invisible_or_bidi(c))
}

/// The directory of a partition under `root` (data dir or persistent dir), or `None` when a
/// name is not a safe path component.
pub(crate) fn partition_dir(
    root: &Path,
    job: &str,
    producer: &str,
    attempt: u32,
    consumer: &str,
) -> Option<PathBuf> {
    if !(safe_component(job) && safe_component(producer) && safe_component(consumer)) {
        return None;
    }
    Some(
        root.join("partitions")
            .join(job)
            .join(format!("{producer}.{attempt}"))
            .join(consumer),
    )
}

pub(crate) fn ref_dir(root: &Path, r: &PartitionRef) -> Option<PathBuf> {
    partition_dir(root, &r.job_id, &r.producer, r.attempt, &r.consumer_vertex)
}

/// Free bytes on the file system holding `path` (0 when it cannot be read).
pub(crate) fn free_disk(path: &Path) -> u64 {
    // The field types differ by platform (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let free = nix::sys::statvfs::statvfs(path).map_or(0, |st| {
        (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64)
    });
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_never_become_paths() {
        let root = Path::new("/data");
        assert!(partition_dir(root, "j", "../etc", 0, "c").is_none());
        assert!(partition_dir(root, "j", "a#0", 0, "..").is_none());
        assert!(partition_dir(root, "", "a#0", 0, "c").is_none());
        for bad in [
            "a\0",
            "a\nINFO forged",
            "a\u{1b}[31m",
            "a\u{202E}b",
            "a\u{200B}",
        ] {
            assert!(!safe_component(bad), "{bad:?}");
        }
        assert_eq!(
            partition_dir(root, "j", "a#0", 2, "c").unwrap(),
            Path::new("/data/partitions/j/a#0.2/c")
        );
    }
}
