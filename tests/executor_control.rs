//! The task control channel (`JM_CONTROL`) with real task processes: a stateless task is
//! acknowledged on its behalf, the example counter task (`examples/tasks/counter.py`) writes
//! its state and resumes from it (`JM_RESTORE_DIR`), declines and silence are reported, and
//! bad lines do not break the channel. Tests that need `python3` are skipped without it.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use jobmaster::executor::control::{Ack, Control, RESTORE_ENV};
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(20);

/// A fresh folder for one test (short: socket paths are limited), removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("jmctl-{name}-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the test folder");
        Scratch(dir)
    }

    /// An attempt folder under it.
    fn attempt(&self, n: u32) -> PathBuf {
        let dir = self.0.join(format!("attempts/v#0.{n}"));
        std::fs::create_dir_all(&dir).expect("create the attempt folder");
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn python() -> bool {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: python3 is not installed");
    }
    found
}

fn counter() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/tasks/counter.py")
        .display()
        .to_string()
}

/// Starts `command` with the channel's variables (and `extra`), killed when dropped.
fn start(
    command: &[&str],
    control: &mut Control,
    restore: Option<&Path>,
    extra: &[(&str, &Path)],
) -> Child {
    let mut cmd = Command::new(command[0]);
    cmd.args(&command[1..])
        .envs(control.env(restore))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start the task")
}

/// Polls `ready` until it holds, failing the test after [`PATIENCE`].
async fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn a_task_that_never_connects_is_acknowledged_with_size_zero() {
    let scratch = Scratch::new("stateless");
    let mut control = Control::open(&scratch.attempt(1), &scratch.0, "v#0").expect("open");
    let _task = start(&["sleep", "30"], &mut control, None, &[]);
    let ack = control
        .checkpoint(1, &scratch.0.join("ck/1/v#0"), Duration::from_secs(5))
        .await;
    assert_eq!(ack, Ok(Ack { size_bytes: 0 }));
    assert!(!control.connected());
}

#[tokio::test]
async fn the_socket_is_private_and_gone_once_the_attempt_ends() {
    let scratch = Scratch::new("socket");
    let attempt = scratch.attempt(1);
    let control = Control::open(&attempt, &scratch.0, "v#0").expect("open");
    let path = control.path().to_owned();
    assert_eq!(path, attempt.join("control.sock"));
    let meta = std::fs::symlink_metadata(&path).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    control.close();
    assert!(!path.exists(), "closed: the socket is removed");
    // Dropping the last handle removes it too.
    let again = Control::open(&attempt, &scratch.0, "v#0").expect("open again");
    drop(again);
    assert!(!path.exists(), "dropped: the socket is removed");
}

#[tokio::test]
async fn a_restored_task_that_has_not_connected_yet_keeps_its_restored_state() {
    let scratch = Scratch::new("restored-unconnected");
    let restore = scratch.0.join("restore");
    std::fs::create_dir_all(restore.join("sub")).expect("restore folder");
    std::fs::write(restore.join("state"), b"42").expect("state");
    std::fs::write(restore.join("sub/offsets"), b"7,8").expect("offsets");
    let mut control = Control::open(&scratch.attempt(2), &scratch.0, "v#0").expect("open");
    // A task that is slow to start: it has not connected when the checkpoint comes.
    let _task = start(&["sleep", "30"], &mut control, Some(&restore), &[]);
    let dir = scratch.0.join("ck/9/v#0");
    let ack = control
        .checkpoint(9, &dir, Duration::from_secs(10))
        .await
        .expect("acknowledged on its behalf");
    assert_eq!(read(&dir.join("state")), "42");
    assert_eq!(read(&dir.join("sub/offsets")), "7,8");
    assert_eq!(ack.size_bytes, 5);
}

#[tokio::test]
async fn the_counter_task_acks_with_its_state_and_hears_complete_and_abort() {
    if !python() {
        return;
    }
    let scratch = Scratch::new("counter");
    let mut control = Control::open(&scratch.attempt(1), &scratch.0, "v#0").expect("open");
    let events = scratch.0.join("events.log");
    let _task = start(
        &["python3", &counter()],
        &mut control,
        None,
        &[("COUNTER_EVENTS", &events)],
    );
    eventually("the counter connects", || control.connected()).await;
    let dir = scratch.0.join("ck/1/v#0");
    let ack = control
        .checkpoint(1, &dir, Duration::from_secs(10))
        .await
        .expect("acknowledged");
    let state = read(&dir.join("state"));
    assert!(state.trim().parse::<u64>().is_ok(), "state: {state:?}");
    assert_eq!(ack.size_bytes, state.len() as u64);
    control.notify(1, true).await;
    control.notify(2, false).await;
    eventually("both notifications reach the task", || {
        let text = read(&events);
        text.contains("complete 1\n") && text.contains("abort 2\n")
    })
    .await;
}

#[tokio::test]
async fn a_restarted_attempt_resumes_its_count_from_the_restore_dir() {
    if !python() {
        return;
    }
    let scratch = Scratch::new("restore");
    let events = scratch.0.join("events.log");
    let mut first = Control::open(&scratch.attempt(1), &scratch.0, "v#0").expect("open");
    assert!(first.env(None).iter().all(|(k, _)| k != RESTORE_ENV));
    let mut task = start(
        &["python3", &counter()],
        &mut first,
        None,
        &[("COUNTER_EVENTS", &events)],
    );
    eventually("the counter connects", || first.connected()).await;
    // A checkpoint once it has counted a little, so the restored count is not zero.
    let dir = scratch.0.join("ck/7/v#0");
    let deadline = Instant::now() + PATIENCE;
    let saved = loop {
        first
            .checkpoint(7, &dir, Duration::from_secs(10))
            .await
            .expect("acknowledged");
        let saved: u64 = read(&dir.join("state")).trim().parse().expect("a count");
        if saved > 0 {
            break saved;
        }
        assert!(Instant::now() < deadline, "the counter never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    task.kill().await.expect("kill the first attempt");
    first.close();

    let mut second = Control::open(&scratch.attempt(2), &scratch.0, "v#0").expect("open");
    let env = second.env(Some(&dir));
    assert!(env.contains(&(RESTORE_ENV.to_owned(), dir.display().to_string())));
    let _task = start(
        &["python3", &counter()],
        &mut second,
        Some(&dir),
        &[("COUNTER_EVENTS", &events)],
    );
    eventually("the second attempt starts from the saved count", || {
        read(&events).contains(&format!("start {saved}\n"))
    })
    .await;
    eventually("the second attempt connects", || second.connected()).await;
    let later = scratch.0.join("ck/8/v#0");
    second
        .checkpoint(8, &later, Duration::from_secs(10))
        .await
        .expect("acknowledged");
    let resumed: u64 = read(&later.join("state")).trim().parse().expect("a count");
    assert!(resumed >= saved, "resumed at {resumed}, saved {saved}");
}

/// A Python task that connects and answers each checkpoint with `answer` (a format string of
/// `id`), after writing `before` (ditto).
fn scripted(before: &str, answer: &str) -> String {
    format!(
        r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["JM_CONTROL"])
f = s.makefile("rb")
for line in f:
    words = line.decode().split(" ")
    if words[0] == "checkpoint":
        id = words[1]
        s.sendall(({before:?}).format(id=id).encode())
        s.sendall(({answer:?}).format(id=id).encode())
"#
    )
}

#[tokio::test]
async fn a_decline_is_reported_with_its_reason() {
    if !python() {
        return;
    }
    let scratch = Scratch::new("decline");
    let mut control = Control::open(&scratch.attempt(1), &scratch.0, "v#0").expect("open");
    let script = scripted("", "decline {id} disk is full\n");
    let _task = start(&["python3", "-c", &script], &mut control, None, &[]);
    eventually("the task connects", || control.connected()).await;
    let declined = control
        .checkpoint(3, &scratch.0.join("ck/3/v#0"), Duration::from_secs(10))
        .await
        .expect_err("declined");
    assert_eq!(declined.reason, "disk is full");
}

#[tokio::test]
async fn a_task_that_does_not_answer_in_time_is_declined_as_timed_out() {
    if !python() {
        return;
    }
    let scratch = Scratch::new("hang");
    let mut control = Control::open(&scratch.attempt(1), &scratch.0, "v#0").expect("open");
    let script = scripted("", "");
    let _task = start(&["python3", "-c", &script], &mut control, None, &[]);
    eventually("the task connects", || control.connected()).await;
    let declined = control
        .checkpoint(4, &scratch.0.join("ck/4/v#0"), Duration::from_millis(300))
        .await
        .expect_err("declined");
    assert!(declined.reason.contains("timed out"), "{}", declined.reason);
}

#[tokio::test]
async fn a_task_that_closes_its_connection_is_declined() {
    if !python() {
        return;
    }
    let scratch = Scratch::new("closes");
    let mut control = Control::open(&scratch.attempt(1), &scratch.0, "v#0").expect("open");
    let script = r#"
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["JM_CONTROL"])
s.makefile("rb").readline()
s.close()
"#;
    let _task = start(&["python3", "-c", script], &mut control, None, &[]);
    eventually("the task connects", || control.connected()).await;
    let declined = control
        .checkpoint(5, &scratch.0.join("ck/5/v#0"), Duration::from_secs(10))
        .await
        .expect_err("declined");
    assert!(declined.reason.contains("closed"), "{}", declined.reason);
    // Connected once, gone now: not taken for a stateless task.
    let again = control
        .checkpoint(6, &scratch.0.join("ck/6/v#0"), Duration::from_secs(10))
        .await;
    assert!(again.is_err(), "{again:?}");
}

#[tokio::test]
async fn malformed_long_and_stale_lines_do_not_break_the_channel() {
    if !python() {
        return;
    }
    let scratch = Scratch::new("malformed");
    let mut control = Control::open(&scratch.attempt(1), &scratch.0, "v#0").expect("open");
    let long = "x".repeat(5000);
    let before = format!("hello there\nack\nack x 1\n{long}\nack 999 1\ndecline 998 old\n");
    let script = scripted(&before, "ack {id} 42\n");
    let _task = start(&["python3", "-c", &script], &mut control, None, &[]);
    eventually("the task connects", || control.connected()).await;
    for id in [9, 10] {
        let ack = control
            .checkpoint(
                id,
                &scratch.0.join(format!("ck/{id}/v#0")),
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(ack, Ok(Ack { size_bytes: 42 }), "checkpoint {id}");
    }
}

#[tokio::test]
async fn a_task_that_connects_again_replaces_its_earlier_connection() {
    if !python() {
        return;
    }
    let scratch = Scratch::new("reconnect");
    let mut control = Control::open(&scratch.attempt(1), &scratch.0, "v#0").expect("open");
    let marker = scratch.0.join("second");
    let script = format!(
        r#"
import os, socket
a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
a.connect(os.environ["JM_CONTROL"])
b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
b.connect(os.environ["JM_CONTROL"])
open({marker:?}, "w").close()
for line in b.makefile("rb"):
    words = line.decode().split(" ")
    if words[0] == "checkpoint":
        b.sendall(("ack %s 2\n" % words[1]).encode())
"#,
        marker = marker.display().to_string()
    );
    let _task = start(&["python3", "-c", &script], &mut control, None, &[]);
    eventually("the task connects twice", || marker.exists()).await;
    // The second connection may still be on its way from the listener's queue.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ack = control
            .checkpoint(11, &scratch.0.join("ck/11/v#0"), Duration::from_millis(500))
            .await;
        if ack == Ok(Ack { size_bytes: 2 }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second connection never took over: {ack:?}"
        );
    }
}

#[tokio::test]
async fn a_deep_attempt_folder_gets_its_socket_under_the_data_dir() {
    let scratch = Scratch::new("deep");
    let deep = scratch
        .0
        .join("attempts")
        .join("j".repeat(100))
        .join("v#0.1");
    std::fs::create_dir_all(&deep).expect("create the attempt folder");
    let mut control = Control::open(&deep, &scratch.0, "v#0").expect("open");
    let path = control.path().to_owned();
    assert!(
        path.starts_with(scratch.0.join("ctl")),
        "{}",
        path.display()
    );
    let meta = std::fs::symlink_metadata(&path).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let _task = start(&["sleep", "30"], &mut control, None, &[]);
    assert_eq!(
        control
            .checkpoint(1, &scratch.0.join("ck/1"), Duration::from_secs(5))
            .await,
        Ok(Ack { size_bytes: 0 })
    );
    control.close();
    assert!(!path.exists());
}

#[tokio::test]
async fn a_deep_data_dir_gets_its_sockets_in_a_private_folder_under_tmp() {
    let scratch = Scratch::new("deeper");
    let data = scratch.0.join("d".repeat(110));
    let deep = data.join("attempts/j/v#0.1");
    std::fs::create_dir_all(&deep).expect("create the attempt folder");
    let control = Control::open(&deep, &data, "v#0").expect("open");
    let path = control.path().to_owned();
    assert!(
        path.to_string_lossy().starts_with("/tmp/jobmaster-ctl-"),
        "{}",
        path.display()
    );
    let folder = std::fs::symlink_metadata(path.parent().expect("a folder")).expect("folder");
    assert_eq!(folder.permissions().mode() & 0o777, 0o711);
    let meta = std::fs::symlink_metadata(&path).expect("the socket exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    drop(control);
    assert!(!path.exists());
}
