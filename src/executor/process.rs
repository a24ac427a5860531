//! Task processes: each attempt runs in its own process group, dies with the executor
//! (parent-death signal), and is recorded in a pid file so that a restarted executor kills
//! whatever an earlier run left behind (grandchildren escape the parent-death signal; they are
//! also found by the attempt directory in their environment once their leader is gone).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getppid, setgid, setgroups, setpgid, setuid};
use tokio::process::{Child, Command};

use super::user::TaskUser;

/// Starts `command` in a new process group with `env`, logging to `stdout`/`stderr`, as
/// `user` (with its groups) when given.
pub(crate) fn spawn(
    command: &[String],
    env: &[(String, String)],
    cwd: &Path,
    stdout: &Path,
    stderr: &Path,
    user: Option<&TaskUser>,
) -> Result<Child, SpawnError> {
    let (program, args) = command.split_first().ok_or_else(|| {
        SpawnError::Exec(io::Error::new(io::ErrorKind::InvalidInput, "empty command"))
    })?;
    // The logs stay the executor's: the task writes them through the descriptors it inherits,
    // and tasks of other jobs (the same run-as user) cannot read them.
    let log = |path: &Path| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if user.is_some() { 0o600 } else { 0o666 })
            .open(path)
    };
    let mut cmd = Command::new(program);
    // The executor's own settings (JOBMASTER_TOKEN, JOBMASTER_TLS_KEY, JOBMASTER__…) are not
    // the task's business.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("JOBMASTER") {
            cmd.env_remove(&key);
        }
    }
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(log(stdout).map_err(SpawnError::Logs)?)
        .stderr(log(stderr).map_err(SpawnError::Logs)?)
        .kill_on_drop(false);
    // Computed before the fork: the child may not allocate. Not `CommandExt::uid/gid`: std
    // switches the user before it runs `pre_exec`, and then the groups could not be set.
    let switch = user.map(|u| (u.groups.clone(), u.gid, u.uid));
    // SAFETY: only async-signal-safe calls between fork and exec (the nix wrappers are
    // plain system calls; they do not allocate).
    unsafe {
        cmd.pre_exec(move || {
            setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            // Groups first, then the group, then the user: each step needs root.
            if let Some((groups, gid, uid)) = &switch {
                setgroups(groups)?;
                setgid(*gid)?;
                setuid(*uid)?;
            }
            // After the switch: a change of user clears the parent-death signal.
            #[cfg(target_os = "linux")]
            {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // The executor may have died between fork and prctl.
                if getppid() == Pid::from_raw(1) {
                    // nix has no `_exit`, and `std::process::exit` runs exit handlers, which
                    // is not allowed in a forked child.
                    libc::_exit(137);
                }
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(SpawnError::Exec)
}

/// Why a task process did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    /// The executor could not open the task's log files: its own problem.
    #[error("cannot open the task's log files: {0}")]
    Logs(io::Error),
    /// The program could not be started (fork or exec).
    #[error("{0}")]
    Exec(io::Error),
}

impl SpawnError {
    /// Whether starting again cannot help: the program is missing or not executable, or an
    /// argument cannot be passed. Running out of processes or memory can pass.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            SpawnError::Logs(_) => false,
            SpawnError::Exec(e) => {
                matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::PermissionDenied
                        | io::ErrorKind::InvalidInput
                        | io::ErrorKind::NotADirectory
                        | io::ErrorKind::IsADirectory
                ) || e.raw_os_error() == Some(libc::ENOEXEC)
            }
        }
    }
}

/// Sends `signal` to the whole process group led by `pid`.
pub(crate) fn signal_group(pid: u32, signal: Signal) {
    if pid == 0 || pid > i32::MAX as u32 {
        return;
    }
    // A group that is already gone is fine.
    let _ = killpg(Pid::from_raw(pid as i32), signal);
}

/// The last `max` bytes of a file, as text (for failure reports).
pub(crate) fn tail(path: &Path, max: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// Start time of a process (field 22 of /proc/PID/stat), to tell it from a reused pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after it are separated cleanly.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Records a task process so a later run of the executor can kill it.
pub(crate) fn record(pids: &Path, name: &str, pid: u32) -> Option<PathBuf> {
    let start = start_time(pid)?;
    let path = pids.join(name);
    std::fs::write(&path, format!("{pid} {start}\n")).ok()?;
    Some(path)
}

/// Kills what an earlier run of the executor left behind; returns how many process groups and
/// stray processes it killed. A recorded group whose leader still runs is killed as a whole;
/// then every process whose environment names an attempt directory under `attempts` dies too:
/// the children of a task whose leader is already gone (killed by the parent-death signal and
/// reaped by init, so its pid no longer identifies the group), and those that left the group.
pub(crate) fn reap_leftovers(pids: &Path, attempts: &Path) -> usize {
    let mut killed = 0;
    if let Ok(entries) = std::fs::read_dir(pids) {
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                let mut parts = text.split_whitespace();
                let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
                let start = parts.next().and_then(|s| s.parse::<u64>().ok());
                if let (Some(pid), Some(start)) = (pid, start)
                    && start_time(pid) == Some(start)
                {
                    signal_group(pid, Signal::SIGKILL);
                    killed += 1;
                }
            }
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for pid in strays(attempts) {
        if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// Live processes (other than this one) whose `JM_ATTEMPT_DIR` lies under `attempts`.
fn strays(attempts: &Path) -> Vec<i32> {
    use std::os::unix::ffi::OsStrExt;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let me = std::process::id() as i32;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Unreadable (another user's) and zombie (empty) environments do not match.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let ours = environ.split(|b| *b == 0).any(|kv| {
            kv.strip_prefix(b"JM_ATTEMPT_DIR=".as_slice())
                .is_some_and(|dir| {
                    Path::new(std::ffi::OsStr::from_bytes(dir)).starts_with(attempts)
                })
        });
        if ours {
            found.push(pid);
        }
    }
    found
}
