//! The user tasks run as (`executor.run-as`): resolved once at start, then handed to every
//! task process, which switches to it between fork and exec.
//!
//! What the executor keeps for itself stays root's: its pid files (a private folder), the
//! attempt folders and the partition folders (so a task cannot swap a file the executor later
//! reads or serves for a symlink). The run-as user gets what the task writes: its state
//! folder, its output files and its descriptor. Everything else the task reads (fetched
//! inputs, partitions of earlier tasks) is readable by others: the executor's umask loses its
//! group and other read bits while it switches users.

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Uid, User, chown, geteuid, getgrouplist};
use tracing::info;

use super::ExecutorConfig;
use super::error::StartError;

/// The user task processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskUser {
    pub(crate) name: String,
    pub(crate) uid: Uid,
    /// Its primary group.
    pub(crate) gid: Gid,
    /// Every group it belongs to (the primary one included), as when the executor started.
    pub(crate) groups: Vec<Gid>,
    pub(crate) home: PathBuf,
}

impl TaskUser {
    /// The user `HOME`, `USER` and `LOGNAME` of a task name.
    pub(crate) fn env(&self) -> [(String, String); 3] {
        [
            ("HOME".to_owned(), self.home.display().to_string()),
            ("USER".to_owned(), self.name.clone()),
            ("LOGNAME".to_owned(), self.name.clone()),
        ]
    }

    /// Gives `path` to this user with `mode` (a state folder, an output file).
    pub(crate) fn hand_over(&self, path: &Path, mode: u32) -> std::io::Result<()> {
        chown(path, Some(self.uid), Some(self.gid))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
}

/// Resolves `executor.run-as` at start: `None` when tasks run as the executor's own user
/// (unset, or naming that user). Switching to another user needs root. While it switches
/// users, the executor's umask keeps group and other read and search bits, so tasks can read
/// what the executor lays out for them.
pub(crate) fn start(config: &ExecutorConfig) -> Result<Option<TaskUser>, StartError> {
    let Some(spec) = config.run_as.as_deref().map(str::trim) else {
        return Ok(None);
    };
    if spec.is_empty() {
        return Ok(None);
    }
    let user = lookup(spec)?;
    let Some(user) = switch(geteuid(), user)? else {
        return Ok(None);
    };
    let old = umask(Mode::empty());
    umask(Mode::from_bits_truncate(old.bits() & 0o022));
    info!(user = %user.name, uid = user.uid.as_raw(), gid = user.gid.as_raw(),
          groups = user.groups.len(), "tasks run as another user");
    Ok(Some(user))
}

/// After the executor made its directories: its pid files become private, and the data and
/// persistent directories must be reachable by the task user.
pub(crate) fn secure_dirs(
    config: &ExecutorConfig,
    user: Option<&TaskUser>,
) -> Result<(), StartError> {
    let Some(user) = user else {
        return Ok(());
    };
    let pids = config.data_dir.join("pids");
    std::fs::set_permissions(&pids, std::fs::Permissions::from_mode(0o700))
        .map_err(|error| StartError::CreateDir { path: pids, error })?;
    for dir in [&config.data_dir, &config.persistent_dir] {
        reachable(dir, user)?;
    }
    Ok(())
}

/// Looks a user up by name, or by uid when `spec` is a number.
pub(crate) fn lookup(spec: &str) -> Result<TaskUser, StartError> {
    let found = match spec.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(spec),
    };
    let unknown = |reason: String| StartError::UnknownRunAs {
        user: spec.to_owned(),
        reason,
    };
    let user = found
        .map_err(|e| unknown(format!("the user database cannot be read: {e}")))?
        .ok_or_else(|| unknown("no such user".to_owned()))?;
    let name = CString::new(user.name.as_str())
        .map_err(|_| unknown("its name holds a NUL byte".to_owned()))?;
    let groups = getgrouplist(&name, user.gid)
        .map_err(|e| unknown(format!("its groups cannot be listed: {e}")))?;
    Ok(TaskUser {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
        groups,
        home: user.dir,
    })
}

/// Whether tasks switch to `user` from an executor running with effective uid `euid`: not
/// when it is the executor's own user; refused unless the executor is root.
fn switch(euid: Uid, user: TaskUser) -> Result<Option<TaskUser>, StartError> {
    if user.uid == euid {
        return Ok(None);
    }
    if !euid.is_root() {
        return Err(StartError::RunAsNeedsRoot {
            user: user.name,
            euid: euid.as_raw(),
        });
    }
    Ok(Some(user))
}

/// Checks that `user` may enter `dir` and every folder above it.
fn reachable(dir: &Path, user: &TaskUser) -> Result<(), StartError> {
    let dir = dir.canonicalize().map_err(|error| StartError::CreateDir {
        path: dir.to_path_buf(),
        error,
    })?;
    for folder in dir.ancestors() {
        let meta = std::fs::metadata(folder).map_err(|error| StartError::CreateDir {
            path: folder.to_path_buf(),
            error,
        })?;
        if !may_search(
            meta.mode(),
            Uid::from_raw(meta.uid()),
            Gid::from_raw(meta.gid()),
            user,
        ) {
            return Err(StartError::RunAsCannotEnter {
                user: user.name.clone(),
                path: folder.to_path_buf(),
                mode: meta.mode() & 0o7777,
            });
        }
    }
    Ok(())
}

/// Whether `user` may search (enter) a folder with `mode`, owned by `owner` and `group`.
fn may_search(mode: u32, owner: Uid, group: Gid, user: &TaskUser) -> bool {
    if user.uid.is_root() {
        return true;
    }
    let bit = if owner == user.uid {
        0o100
    } else if user.gid == group || user.groups.contains(&group) {
        0o010
    } else {
        0o001
    };
    mode & bit != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody() -> TaskUser {
        TaskUser {
            name: "nobody".into(),
            uid: Uid::from_raw(65534),
            gid: Gid::from_raw(65534),
            groups: vec![Gid::from_raw(65534), Gid::from_raw(100)],
            home: "/nonexistent".into(),
        }
    }

    #[test]
    fn search_permission_follows_the_owner_then_group_then_other_bits() {
        let user = nobody();
        let root = Uid::from_raw(0);
        let root_group = Gid::from_raw(0);
        // Others may enter /tmp-like and 0755 folders, not 0700 or 0750 ones.
        assert!(may_search(0o1777, root, root_group, &user));
        assert!(may_search(0o755, root, root_group, &user));
        assert!(may_search(0o711, root, root_group, &user));
        assert!(!may_search(0o700, root, root_group, &user));
        assert!(!may_search(0o750, root, root_group, &user));
        // A supplementary group's bit counts, and only the group's bit.
        assert!(may_search(0o750, root, Gid::from_raw(100), &user));
        assert!(!may_search(0o705, root, Gid::from_raw(100), &user));
        // The owner's bit alone decides for the owner.
        assert!(may_search(0o700, user.uid, root_group, &user));
        assert!(!may_search(0o077, user.uid, root_group, &user));
    }

    #[test]
    fn switching_to_another_user_needs_root() {
        let refused = switch(Uid::from_raw(1000), nobody()).unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("nobody"), "{message}");
        assert!(message.contains("root"), "{message}");
        assert!(message.contains("executor.run-as"), "{message}");
        assert_eq!(
            switch(Uid::from_raw(0), nobody()).unwrap(),
            Some(nobody()),
            "root switches"
        );
    }

    #[test]
    fn running_as_the_executors_own_user_switches_nothing() {
        // Not root, but the same user: no switch, so no refusal.
        assert_eq!(switch(Uid::from_raw(65534), nobody()).unwrap(), None);
        assert_eq!(
            switch(
                Uid::from_raw(0),
                TaskUser {
                    uid: Uid::from_raw(0),
                    ..nobody()
                }
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn users_are_found_by_name_or_uid_and_unknown_ones_are_named() {
        let root = lookup("root").expect("root exists");
        assert!(root.uid.is_root());
        assert!(root.groups.contains(&root.gid), "{:?}", root.groups);
        assert_eq!(lookup("0").expect("uid 0 exists").name, root.name);
        let missing = lookup("no-such-user-jm").unwrap_err().to_string();
        assert!(missing.contains("\"no-such-user-jm\""), "{missing}");
        assert!(missing.contains("no such user"), "{missing}");
    }

    #[test]
    fn a_task_learns_its_users_home_and_name() {
        let env = nobody().env();
        assert!(env.contains(&("HOME".into(), "/nonexistent".into())));
        assert!(env.contains(&("USER".into(), "nobody".into())));
        assert!(env.contains(&("LOGNAME".into(), "nobody".into())));
    }
}
