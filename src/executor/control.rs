//! The task control channel (`JM_CONTROL`): a Unix domain socket per attempt on which the
//! executor relays the checkpoint coordinator's commands to the task and reads its answers, a
//! line protocol any program can speak (see "Task control channel: checkpoints" in the README).
//!
//! executor → task: `checkpoint ID DIR`, `complete ID`, `abort ID`;
//! task → executor: `ack ID [SIZE_BYTES]`, `decline ID REASON...`.
//!
//! A task that never connects is stateless: a checkpoint is acknowledged on its behalf (size
//! 0). One connection at a time: a task that connects again replaces its earlier connection.
//! The socket lives as long as its [`Control`]: it is removed by [`Control::close`] (the runner
//! calls it when the attempt ends) or when the last handle is dropped.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::user::TaskUser;
use crate::log_text::Escaped;

/// The environment variable naming the control socket.
pub const CONTROL_ENV: &str = "JM_CONTROL";
/// The environment variable naming the task's state in the checkpoint it resumes from.
pub const RESTORE_ENV: &str = "JM_RESTORE_DIR";
/// Longest line a task may send, newline excluded; longer lines are refused (skipped).
pub const MAX_LINE_BYTES: usize = 4096;
/// The socket's name in the attempt's folder.
const SOCKET_NAME: &str = "control.sock";
/// Longest socket path: `sun_path` holds 108 bytes, the terminating NUL included.
const MAX_SOCKET_PATH: usize = 107;

/// A checkpoint the task (or, for a stateless task, the executor on its behalf) acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The size of the state it wrote, as the task reported it (0 when it did not say).
    pub size_bytes: u64,
}

/// A checkpoint the task did not acknowledge, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint declined: {reason}")]
pub struct Declined {
    /// The task's own reason (`decline ID REASON`), or what happened: the task closed its
    /// connection, did not answer in time, or the executor could not prepare the folder.
    pub reason: String,
    /// The task closed its connection while the checkpoint waited for it (it is ending, most
    /// likely dying): not a refusal of the checkpoint.
    pub task_gone: bool,
}

/// Why a control channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Even the shortest socket path is too long (cannot happen with the fallback under /tmp).
    #[error("the control socket path {0} is longer than {MAX_SOCKET_PATH} bytes")]
    PathTooLong(PathBuf),
    /// The socket could not be made, bound or given to the task's user.
    #[error("cannot create the control socket {path}: {error}")]
    Socket { path: PathBuf, error: io::Error },
}

/// One line from the task.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Ack { id: u64, size_bytes: u64 },
    Decline { id: u64, reason: String },
}

impl Answer {
    fn id(&self) -> u64 {
        match self {
            Answer::Ack { id, .. } | Answer::Decline { id, .. } => *id,
        }
    }

    /// Parses one line (without its newline); `None` for anything else than an answer.
    fn parse(line: &str) -> Option<Answer> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "ack" => {
                let mut parts = rest.split(' ').filter(|p| !p.is_empty());
                let id = parts.next()?.parse().ok()?;
                let size_bytes = match parts.next() {
                    Some(size) => size.parse().ok()?,
                    None => 0,
                };
                parts
                    .next()
                    .is_none()
                    .then_some(Answer::Ack { id, size_bytes })
            }
            "decline" => {
                let rest = rest.trim_start_matches(' ');
                let (id, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                let reason = reason.trim();
                Some(Answer::Decline {
                    id: id.parse().ok()?,
                    reason: if reason.is_empty() {
                        "the task gave no reason".to_owned()
                    } else {
                        reason.to_owned()
                    },
                })
            }
            _ => None,
        }
    }
}

/// The task's current connection: where to write, and its answers (closed when the task
/// closes the connection). Dropping it stops its reader.
struct Connection {
    writer: OwnedWriteHalf,
    answers: mpsc::Receiver<Answer>,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Default)]
struct Shared {
    /// The latest connection, unless a command is using it.
    connection: Option<Connection>,
    /// The task connected at least once: from then on it is not stateless.
    connected: bool,
}

/// The executor's end of one attempt's control channel.
pub struct Control {
    path: PathBuf,
    shared: Arc<Mutex<Shared>>,
    /// One command at a time on the connection.
    busy: tokio::sync::Mutex<()>,
    acceptor: JoinHandle<()>,
    /// Who checkpoint folders are given to (`None`: the executor's user).
    owner: Option<TaskUser>,
    /// What the logs name the attempt.
    task: String,
    /// The state the attempt started from (`JM_RESTORE_DIR`), if it was restored.
    restored: Option<PathBuf>,
}

impl Control {
    /// Opens the channel of the attempt whose folder is `attempt_dir` (the socket is
    /// `control.sock` in it, or a short path under `data_dir/ctl` when that path is too long
    /// for a Unix socket), with mode 0600. `task` names the attempt in logs. Must be called
    /// inside a tokio runtime.
    pub fn open(attempt_dir: &Path, data_dir: &Path, task: &str) -> Result<Control, ControlError> {
        Control::open_as(attempt_dir, data_dir, task, None)
    }

    /// [`Control::open`] for a task that runs as `owner`: the socket and the checkpoint
    /// folders become that user's.
    pub(crate) fn open_as(
        attempt_dir: &Path,
        data_dir: &Path,
        task: &str,
        owner: Option<&TaskUser>,
    ) -> Result<Control, ControlError> {
        let path = socket_path(attempt_dir, data_dir)?;
        let failed = |error: io::Error| ControlError::Socket {
            path: path.clone(),
            error,
        };
        match path.parent() {
            Some(parent) if parent == shared_dir() => private_dir(parent).map_err(failed)?,
            Some(parent) => std::fs::create_dir_all(parent).map_err(failed)?,
            None => {}
        }
        // A socket left by an executor that died.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(failed(e)),
            _ => {}
        }
        let listener = UnixListener::bind(&path).map_err(failed)?;
        // The folder around it is the executor's (not writable by others): nobody can swap the
        // socket, and the mode closes it to other users before the task starts.
        let mode = |path: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        };
        match owner {
            Some(user) => user.hand_over(&path, 0o600),
            None => mode(&path),
        }
        .map_err(|e| {
            let _ = std::fs::remove_file(&path);
            failed(e)
        })?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let acceptor = tokio::spawn(accept(listener, shared.clone(), task.to_owned()));
        Ok(Control {
            path,
            shared,
            busy: tokio::sync::Mutex::new(()),
            acceptor,
            owner: owner.cloned(),
            task: task.to_owned(),
            restored: None,
        })
    }

    /// The socket's path (`JM_CONTROL`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The variables the task gets for its channel: `JM_CONTROL`, and `JM_RESTORE_DIR` when it
    /// resumes from a checkpoint (`restore_dir`, its state in that checkpoint).
    pub fn env(&mut self, restore_dir: Option<&Path>) -> Vec<(String, String)> {
        self.restored = restore_dir.map(Path::to_owned);
        let mut env = vec![(CONTROL_ENV.to_owned(), self.path.display().to_string())];
        if let Some(dir) = restore_dir {
            env.push((RESTORE_ENV.to_owned(), dir.display().to_string()));
        }
        env
    }

    /// Whether the task has connected (at least once): a stateful task.
    pub fn connected(&self) -> bool {
        self.lock().connected
    }

    /// Triggers checkpoint `id`: creates `dir` (the task's, when it runs as another user),
    /// sends `checkpoint ID DIR` and waits up to `timeout` for the task's answer. A task that
    /// has not connected is stateless: acknowledged at once with size 0.
    pub async fn checkpoint(
        &self,
        id: u64,
        dir: &Path,
        timeout: Duration,
    ) -> Result<Ack, Declined> {
        let declined = |reason: String| Declined {
            reason,
            task_gone: false,
        };
        let gone = |reason: String| Declined {
            reason,
            task_gone: true,
        };
        let text = dir.to_str().filter(|d| !d.contains(['\n', '\r']));
        let Some(text) = text else {
            return Err(declined(format!(
                "the checkpoint folder {} cannot be sent on one line",
                Escaped(&dir.display().to_string())
            )));
        };
        let _busy = self.busy.lock().await;
        let Some(mut connection) = self.take() else {
            if self.connected() {
                return Err(declined("the task closed its control connection".into()));
            }
            // Not connected (yet): its state is still what it started from — none, or the
            // state it was restored from, which goes into this checkpoint unchanged.
            let Some(from) = self.restored.clone() else {
                debug!(task = %self.task, checkpoint = id, "stateless task: acknowledged on its behalf");
                return Ok(Ack { size_bytes: 0 });
            };
            let (to, owner) = (dir.to_owned(), self.owner.clone());
            let copied = tokio::task::spawn_blocking(move || {
                super::checkpoints::copy_tree(&from, &to, owner.as_ref())
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
            return match copied {
                Ok(size_bytes) => {
                    debug!(task = %self.task, checkpoint = id, size_bytes,
                           "task not connected since its restore: its restored state acknowledged on its behalf");
                    Ok(Ack { size_bytes })
                }
                Err(e) => Err(declined(format!(
                    "cannot copy the restored state of a task that has not connected: {e}"
                ))),
            };
        };
        if let Err(e) = self.prepare(dir) {
            self.put_back(connection);
            return Err(declined(format!(
                "cannot create the checkpoint folder {}: {e}",
                dir.display()
            )));
        }
        // Answers to an earlier checkpoint that came too late.
        while connection.answers.try_recv().is_ok() {}
        let line = format!("checkpoint {id} {text}\n");
        if let Err(e) = connection.writer.write_all(line.as_bytes()).await {
            return Err(gone(format!(
                "cannot write to the task's control connection: {e}"
            )));
        }
        let wait = async {
            loop {
                match connection.answers.recv().await {
                    Some(answer) if answer.id() == id => return Some(answer),
                    Some(other) => {
                        debug!(task = %self.task, checkpoint = id, answered = other.id(),
                               "answer for another checkpoint ignored");
                    }
                    None => return None,
                }
            }
        };
        let answer = tokio::time::timeout(timeout, wait).await;
        match answer {
            Ok(Some(Answer::Ack { size_bytes, .. })) => {
                self.put_back(connection);
                Ok(Ack { size_bytes })
            }
            Ok(Some(Answer::Decline { reason, .. })) => {
                self.put_back(connection);
                Err(declined(reason))
            }
            Ok(None) => Err(gone(
                "the task closed its control connection before answering".into(),
            )),
            Err(_) => {
                self.put_back(connection);
                Err(declined(format!(
                    "timed out: no answer within {}",
                    humantime::format_duration(timeout)
                )))
            }
        }
    }

    /// Tells the task checkpoint `id` is complete (`complete ID`) or aborted (`abort ID`).
    /// Best effort: nothing is sent to a task that is not connected, and a failed write is
    /// only logged.
    pub async fn notify(&self, id: u64, complete: bool) {
        let _busy = self.busy.lock().await;
        let Some(mut connection) = self.take() else {
            return;
        };
        let word = if complete { "complete" } else { "abort" };
        match connection
            .writer
            .write_all(format!("{word} {id}\n").as_bytes())
            .await
        {
            Ok(()) => self.put_back(connection),
            Err(e) => {
                debug!(task = %self.task, checkpoint = id, error = %e, "cannot notify the task");
            }
        }
    }

    /// Stops accepting and removes the socket (the attempt ended).
    pub fn close(&self) {
        self.acceptor.abort();
        self.lock().connection = None;
        let _ = std::fs::remove_file(&self.path);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<Connection> {
        self.lock().connection.take()
    }

    /// Keeps `connection` unless the task connected again meanwhile.
    fn put_back(&self, connection: Connection) {
        let mut shared = self.lock();
        if shared.connection.is_none() && !connection.reader.is_finished() {
            shared.connection = Some(connection);
        }
    }

    /// Makes the checkpoint folder, the task's own.
    fn prepare(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        if let Some(user) = &self.owner {
            user.hand_over(dir, 0o700)?;
        }
        Ok(())
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.close();
    }
}

/// Where an attempt's socket goes: `control.sock` in its folder; when that path exceeds what a
/// Unix socket address holds (108 bytes with its NUL), `DATA/ctl/<hash>.sock`, a short name
/// derived from the attempt folder; when even that is too long (a deep data dir),
/// `/tmp/jobmaster-ctl-<euid>/<hash>.sock` (a folder of the executor's own, checked by
/// [`private_dir`] before use: `/tmp` is everyone's).
fn socket_path(attempt_dir: &Path, data_dir: &Path) -> Result<PathBuf, ControlError> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::ffi::OsStrExt;
    let fits = |p: &Path| p.as_os_str().as_bytes().len() <= MAX_SOCKET_PATH;
    let own = attempt_dir.join(SOCKET_NAME);
    if fits(&own) {
        return Ok(own);
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    attempt_dir.hash(&mut hasher);
    let name = format!("{:016x}.sock", hasher.finish());
    let short = data_dir.join("ctl").join(&name);
    if fits(&short) {
        return Ok(short);
    }
    let shortest = shared_dir().join(name);
    if fits(&shortest) {
        Ok(shortest)
    } else {
        Err(ControlError::PathTooLong(shortest))
    }
}

/// The executor user's folder for sockets under `/tmp`.
fn shared_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/jobmaster-ctl-{}", nix::unistd::geteuid()))
}

/// Makes (or checks) `dir` under the shared `/tmp`: a real folder (not a symbolic link) of the
/// executor's user that no other user may write to (search only, for a run-as task user).
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o711).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a folder of uid {euid} closed to other users",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Accepts the task's connections; a new one replaces the one before.
async fn accept(listener: UnixListener, shared: Arc<Mutex<Shared>>, task: String) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(task = %task, error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tx, rx) = mpsc::channel(16);
        let (read, writer) = stream.into_split();
        let reader = tokio::spawn(read_answers(read, tx, task.clone()));
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        if shared.connection.is_some() {
            debug!(task = %task, "task connected again: its earlier control connection is closed");
        }
        shared.connected = true;
        shared.connection = Some(Connection {
            writer,
            answers: rx,
            reader,
        });
    }
}

/// Reads the task's lines, passing on its answers; other lines are logged and skipped.
async fn read_answers(
    read: tokio::net::unix::OwnedReadHalf,
    answers: mpsc::Sender<Answer>,
    task: String,
) {
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = (MAX_LINE_BYTES + 2) as u64;
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let ended = line.last() == Some(&b'\n');
        if ended {
            line.pop();
        }
        if line.len() > MAX_LINE_BYTES || !ended && line.len() == limit as usize {
            warn!(task = %task, limit = MAX_LINE_BYTES, "control line too long: refused");
            if !ended && !skip_line(&mut reader).await {
                return;
            }
            continue;
        }
        if !ended {
            // The connection closed in the middle of a line.
            return;
        }
        let text = String::from_utf8_lossy(&line);
        match Answer::parse(&text) {
            Some(answer) => {
                if answers.send(answer).await.is_err() {
                    return;
                }
            }
            None => {
                warn!(task = %task, line = %Escaped(&text), "control line not understood: ignored");
            }
        }
    }
}

/// Skips to the end of the current line; false when the connection ended first.
async fn skip_line(reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> bool {
    loop {
        let (found, used) = match reader.fill_buf().await {
            Ok([]) | Err(_) => return false,
            Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                Some(at) => (true, at + 1),
                None => (false, buf.len()),
            },
        };
        reader.consume(used);
        if found {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_anything_else_is_refused() {
        assert_eq!(
            Answer::parse("ack 7"),
            Some(Answer::Ack {
                id: 7,
                size_bytes: 0
            })
        );
        assert_eq!(
            Answer::parse("ack 7 1024\r"),
            Some(Answer::Ack {
                id: 7,
                size_bytes: 1024
            })
        );
        assert_eq!(
            Answer::parse("decline 3 disk is full"),
            Some(Answer::Decline {
                id: 3,
                reason: "disk is full".into()
            })
        );
        assert_eq!(
            Answer::parse("decline 3"),
            Some(Answer::Decline {
                id: 3,
                reason: "the task gave no reason".into()
            })
        );
        for bad in [
            "",
            "ack",
            "ack x",
            "ack 1 -2",
            "ack 1 2 3",
            "ACK 1",
            "hello",
            "decline",
            "decline x why",
        ] {
            assert_eq!(Answer::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn under_run_as_the_socket_is_the_task_users() {
        use std::os::unix::fs::MetadataExt;
        let Ok(user) = super::super::user::lookup("nobody") else {
            eprintln!("skipped: no user nobody");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("jmctl-runas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test folder");
        let control = Control::open_as(&dir, &dir, "v#0", Some(&user)).expect("open");
        let meta = std::fs::metadata(control.path()).expect("socket");
        assert_eq!(meta.uid(), user.uid.as_raw());
        assert_eq!(meta.mode() & 0o777, 0o600);
        drop(control);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_long_attempt_folder_gets_a_short_socket_under_the_data_dir() {
        let data = Path::new("/d");
        assert_eq!(
            socket_path(Path::new("/d/attempts/j/v#0.1"), data).ok(),
            Some(PathBuf::from("/d/attempts/j/v#0.1/control.sock"))
        );
        let deep = PathBuf::from(format!("/d/attempts/{}/v#0.1", "j".repeat(120)));
        let short = socket_path(&deep, data).expect("short path");
        assert!(short.starts_with("/d/ctl"), "{}", short.display());
        assert_eq!(socket_path(&deep, data).ok(), Some(short));
        let deep_data = PathBuf::from(format!("/{}", "d".repeat(110)));
        let shared = socket_path(&deep, &deep_data).expect("a path under /tmp");
        assert!(shared.starts_with(shared_dir()), "{}", shared.display());
    }
}
