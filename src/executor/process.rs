//! Task processes, from the executor's side: each attempt runs under a [shim](super::shim)
//! that the executor starts (with `posix_spawn`: no hook runs between fork and exec) with one
//! end of a Unix socket pair as its standard input, the channel. The shim first reports on it
//! whether the command started; then it is the shim's lifeline: stop and kill requests travel
//! on it, and its end tells the shim the executor is gone. The shim is recorded in a pid file, so
//! that a restarted executor kills whatever an earlier run left behind should a shim itself
//! have been killed (the task processes are also found by the attempt directory in their
//! environment): a second line of defence.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::shim::{self, Launch, LaunchUser, Report};
use super::user::TaskUser;

/// A started attempt: the shim's process, and the lifeline to it.
pub(crate) struct Task {
    pub(crate) child: Child,
    pub(crate) control: std::sync::Arc<Control>,
}

/// The executor's end of a shim's lifeline. Dropping the last handle closes it, which the
/// shim takes as the executor's death: it stops the task.
pub(crate) struct Control {
    fd: OwnedFd,
    /// The shim's pid (its own process group), recorded in the pid file.
    pub(crate) shim: u32,
}

impl Control {
    /// SIGTERM to the task's process group.
    pub(crate) fn terminate(&self) {
        self.send(b'T');
    }

    /// SIGKILL to the task's process group and every process it left.
    pub(crate) fn kill(&self) {
        self.send(b'K');
    }

    fn send(&self, request: u8) {
        // Non-blocking: a full pipe (a shim that stopped reading) must not block the executor;
        // a shim that is gone is fine.
        let _ = nix::unistd::write(self.fd.as_fd(), &[request]);
    }
}

/// Starts `command` under the shim program `shim` with `env`, logging to `stdout`/`stderr`,
/// as `user` (with its groups) when given. `launch` is where the launch file goes (in the
/// attempt's folder); `grace` is how long the shim waits between SIGTERM and SIGKILL when it
/// stops what a task left; `nice` is added to the executor's niceness for the command.
/// Returns once the shim has said whether the command started.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn spawn(
    shim_program: &Path,
    command: &[String],
    env: &[(String, String)],
    cwd: &Path,
    stdout: &Path,
    stderr: &Path,
    launch_path: &Path,
    grace: std::time::Duration,
    nice: i32,
    user: Option<&TaskUser>,
) -> Result<Task, SpawnError> {
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
    let launch = Launch {
        program: program.clone(),
        args: args.to_vec(),
        env: env.to_vec(),
        user: user.map(|u| LaunchUser {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            groups: u.groups.iter().map(|g| g.as_raw()).collect(),
        }),
        grace_ms: grace.as_millis().min(u64::MAX as u128) as u64,
        nice,
    };
    write_private(
        launch_path,
        &serde_json::to_vec(&launch).unwrap_or_default(),
    )
    .map_err(SpawnError::Logs)?;
    // Close-on-exec both (the pair is made so): the shim's end reaches it as its standard
    // input, copied there in the child, so no other child (another attempt's shim) ever
    // holds either end.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(SpawnError::Shim)?;
    let mut cmd = Command::new(shim_program);
    // The executor's own settings (JOBMASTER_TOKEN, JOBMASTER_TLS_KEY, JOBMASTER__…) are not
    // the task's business.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("JOBMASTER") {
            cmd.env_remove(&key);
        }
    }
    cmd.args(shim::args(launch_path))
        .current_dir(cwd)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(log(stdout).map_err(SpawnError::Logs)?)
        .stderr(log(stderr).map_err(SpawnError::Logs)?)
        // Its own group: a Ctrl-C meant for the executor's terminal does not reach it.
        .process_group(0)
        .kill_on_drop(false);
    let spawned = cmd.spawn();
    // The command holds the shim's end until dropped: only the shim may hold it now, or
    // dropping the last [`Control`] would not end the lifeline.
    drop(cmd);
    let mut child = spawned.map_err(SpawnError::Shim)?;
    let shim_pid = child.id().unwrap_or(0);
    let (report, ours) = match read_report(ours).await {
        Ok((text, ours)) => (Report::parse(&text), Some(ours)),
        Err(_) => (None, None),
    };
    match (report, ours) {
        (Some(Report::Started(_)), Some(fd)) => Ok(Task {
            child,
            control: std::sync::Arc::new(Control { fd, shim: shim_pid }),
        }),
        (other, channel) => {
            // It exits at once after a failed start; after a report it could not make sense
            // of, the end of its lifeline tells it to stop whatever it started.
            drop(channel);
            let _ = child.wait().await;
            Err(match other {
                Some(Report::Errno(n)) => SpawnError::Exec(io::Error::from_raw_os_error(n)),
                Some(Report::Error(text)) => SpawnError::Shim(io::Error::other(text)),
                _ => SpawnError::Shim(io::Error::other(format!(
                    "{} ended without starting the task: is it the taskexecutor (or jobmaster) \
                     program?",
                    shim_program.display()
                ))),
            })
        }
    }
}

/// Reads the shim's report, one line on the channel (empty when the shim ended without one),
/// and gives back the channel (non-blocking, so a request never blocks the executor).
async fn read_report(ours: std::os::unix::net::UnixStream) -> io::Result<(String, OwnedFd)> {
    ours.set_nonblocking(true)?;
    let mut stream = tokio::net::UnixStream::from_std(ours)?;
    let mut text = Vec::new();
    let mut byte = [0u8; 1];
    // A byte at a time: nothing after the line may be taken from the channel (the shim sends
    // nothing more, but the line is short).
    while stream.read(&mut byte).await? == 1 {
        text.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    let fd = OwnedFd::from(stream.into_std()?);
    Ok((String::from_utf8_lossy(&text).into_owned(), fd))
}

/// Writes `bytes` to a new file only the executor's user may read.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Why a task process did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    /// The executor could not write the task's log or launch files: its own problem.
    #[error("cannot write the task's log or launch files: {0}")]
    Logs(io::Error),
    /// The program could not be started (exec, or the switch to the run-as user).
    #[error("{0}")]
    Exec(io::Error),
    /// The shim the task runs under could not be started, or failed: the executor's problem.
    #[error("the task shim failed: {0}")]
    Shim(io::Error),
}

impl SpawnError {
    /// Whether starting again cannot help: the program is missing or not executable, or an
    /// argument cannot be passed. Running out of processes or memory can pass.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            SpawnError::Logs(_) | SpawnError::Shim(_) => false,
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

/// Sends `signal` to the whole process group led by `pid`; false when there is no such group.
pub(crate) fn signal_group(pid: u32, signal: Signal) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    killpg(Pid::from_raw(pid as i32), signal).is_ok()
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
pub(crate) fn start_time(pid: u32) -> Option<u64> {
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
                    && signal_group(pid, Signal::SIGKILL)
                {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A "shim" that answers with a line that is no report, then runs until its channel ends
    /// (as a real shim that started its task would): the executor must close its end rather
    /// than wait for a shim that waits for it.
    #[tokio::test]
    async fn a_garbled_report_ends_the_channel_so_the_shim_stops() {
        let dir = std::env::temp_dir().join(format!("jm-garbled-shim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shim = dir.join("shim.sh");
        std::fs::write(&shim, "#!/bin/sh\necho garbage >&0\ncat <&0 >/dev/null\n").unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spawned = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            spawn(
                &shim,
                &["true".to_owned()],
                &[],
                &dir,
                &dir.join("stdout.log"),
                &dir.join("stderr.log"),
                &dir.join("launch.json"),
                std::time::Duration::from_secs(1),
                0,
                None,
            ),
        )
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        match spawned {
            Ok(Err(SpawnError::Shim(e))) => {
                assert!(e.to_string().contains("without starting"), "{e}")
            }
            Ok(other) => panic!("a garbled report is a failed start: {:?}", other.err()),
            Err(_) => panic!("spawn waited for a shim that waited for the executor"),
        }
    }
}
