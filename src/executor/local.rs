//! The folders of `jobmaster --local`: its in-process executors keep their data under
//! `TMP/jobmaster-local-PID/` (TMP is [`std::env::temp_dir`]), marked with an `OWNER` file
//! (`PID START-TIME`). A daemon removes its folder when it stops cleanly; one killed with -9
//! cannot, so every start of `--local` reaps the folders whose owner is gone: it kills what
//! their pid files and attempt folders still name (the shims normally took those down with
//! the daemon already) and removes them.

use std::io;
use std::path::{Path, PathBuf};

use super::process;

/// Name of a local cluster's folder, before the daemon's pid.
const PREFIX: &str = "jobmaster-local-";
/// The file naming a folder's owner: `PID START-TIME`.
const OWNER: &str = "OWNER";

/// The folder of this process's local cluster under `tmp`.
pub fn root(tmp: &Path) -> PathBuf {
    tmp.join(format!("{PREFIX}{}", std::process::id()))
}

/// Creates `root` (mode 0700) and marks it as this process's.
pub fn claim(root: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)?;
    let me = std::process::id();
    let start = process::start_time(me).unwrap_or(0);
    std::fs::write(root.join(OWNER), format!("{me} {start}\n"))
}

/// A stale folder that was reaped.
#[derive(Debug)]
pub struct Reaped {
    pub folder: PathBuf,
    /// Process groups and stray processes killed.
    pub killed: usize,
    /// Why it could not be removed (it was reaped anyway).
    pub error: Option<io::Error>,
}

/// Reaps the folders under `tmp` of local clusters whose daemon is gone (see the module
/// doc). Folders of live daemons, of other users, and symbolic links are left alone.
pub fn reap_stale(tmp: &Path) -> Vec<Reaped> {
    let mut reaped = Vec::new();
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return reaped;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let folder = entry.path();
        if pid == me || !ours(&folder) || owner_alive(&folder, pid) {
            continue;
        }
        let mut killed = 0;
        if let Ok(executors) = std::fs::read_dir(&folder) {
            for executor in executors.flatten() {
                let dir = executor.path();
                if dir.is_dir() {
                    killed += process::reap_leftovers(&dir.join("pids"), &dir.join("attempts"));
                }
            }
        }
        let error = std::fs::remove_dir_all(&folder).err();
        reaped.push(Reaped {
            folder,
            killed,
            error,
        });
    }
    reaped
}

/// Whether `folder` is a real folder (not a link) of this process's user: only then are the
/// pid files in it trusted.
fn ours(folder: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(folder)
        .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw())
}

/// Whether the daemon that made `folder` (named after `pid`) still runs: by its `OWNER` file
/// (same pid, same start time), or, without one, by its pid alone.
fn owner_alive(folder: &Path, pid: u32) -> bool {
    match std::fs::read_to_string(folder.join(OWNER)) {
        Ok(text) => {
            let mut parts = text.split_whitespace();
            let owner = parts.next().and_then(|p| p.parse::<u32>().ok());
            let start = parts.next().and_then(|s| s.parse::<u64>().ok());
            match (owner, start) {
                (Some(owner), Some(start)) => process::start_time(owner) == Some(start),
                // Half written: its daemon is starting right now.
                _ => true,
            }
        }
        Err(_) => Path::new(&format!("/proc/{pid}")).exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_stale_once_its_owner_is_gone_and_live_ones_stay() {
        let tmp = std::env::temp_dir().join(format!(
            "jobmaster-local-test-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        // This process's own folder and a live one: kept.
        let mine = root(&tmp);
        claim(&mine).expect("claim");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let live = tmp.join(format!("{PREFIX}{}", child.id()));
        std::fs::create_dir_all(&live).expect("mkdir");
        // Gone: a wrong start time, and no OWNER file with a pid that does not run.
        let restarted = tmp.join(format!("{PREFIX}{}", child.id() + 1_000_000));
        std::fs::create_dir_all(restarted.join("executor-0/pids")).expect("mkdir");
        std::fs::write(restarted.join(OWNER), format!("{} 1\n", child.id())).expect("owner");
        let unknown = tmp.join(format!("{PREFIX}{}", u32::MAX - 1));
        std::fs::create_dir_all(&unknown).expect("mkdir");
        let other = tmp.join("jobmaster-local-x");
        std::fs::create_dir_all(&other).expect("mkdir");

        let mut reaped: Vec<PathBuf> = reap_stale(&tmp).into_iter().map(|r| r.folder).collect();
        reaped.sort();
        let mut expected = vec![restarted.clone(), unknown.clone()];
        expected.sort();
        assert_eq!(reaped, expected);
        assert!(mine.exists() && live.exists() && other.exists());
        assert!(!restarted.exists() && !unknown.exists());
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
