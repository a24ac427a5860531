//! "Never two live attempts of one task", watched from outside: a thread samples /proc while a
//! test runs and notes every moment two attempts of one task had live processes at once.
//!
//! A task's processes are found by their command line (a marker, e.g. the task's script) and
//! the `JM_ATTEMPT_DIR` in their environment (one folder per attempt and executor). A process
//! whose shim has lost its executor (the executor was killed with -9: the shim is stopping the
//! task, SIGTERM then SIGKILL after the grace period) is an orphan on its way out; overlaps
//! with such a process are noted apart, since an executor's death is noticed by the JobMaster
//! and by the shim at the same moment, independently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the watch saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Samples taken.
    pub samples: u64,
    /// Per task (`job vertex#subtask`), the first sample that showed two of its attempts
    /// alive at once, with how many samples did.
    pub overlaps: BTreeMap<String, (String, u64)>,
    /// The same where one of the attempts was an orphan of a killed executor.
    pub orphan_overlaps: BTreeMap<String, (String, u64)>,
    /// Every attempt folder seen alive, per task.
    pub seen: BTreeMap<String, BTreeSet<String>>,
}

/// A sampling thread; [`AttemptWatch::finish`] stops it and returns its [`Report`].
pub struct AttemptWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Report>>,
}

impl AttemptWatch {
    /// Watches the task processes whose attempt folder lies under `under` and whose command
    /// line contains `marker`, every `every`.
    pub fn start(under: &Path, marker: &str, every: Duration) -> AttemptWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let under = under.to_path_buf();
        let marker = marker.to_owned();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut report = Report::default();
            while !flag.load(Ordering::Relaxed) {
                sample(&under, &marker, &mut report);
                std::thread::sleep(every);
            }
            report
        });
        AttemptWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the watch after one last sample.
    pub fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("not finished yet")
            .join()
            .expect("the watch thread panicked")
    }
}

impl Drop for AttemptWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One live task process.
#[derive(Debug)]
struct Live {
    pid: i32,
    attempt_dir: String,
    orphan: bool,
}

fn sample(under: &Path, marker: &str, report: &mut Report) {
    let mut by_task: BTreeMap<String, Vec<Live>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if !cmdline(pid).contains(marker) || !alive(pid) {
            continue;
        }
        let Some(env) = super::task_env(pid) else {
            continue;
        };
        let Some(attempt_dir) = env.get("JM_ATTEMPT_DIR") else {
            continue;
        };
        if !PathBuf::from(attempt_dir).starts_with(under) {
            continue;
        }
        let get = |k: &str| env.get(k).map_or("", String::as_str);
        let task = format!(
            "{} {}#{}",
            get("JM_JOB_ID"),
            get("JM_VERTEX"),
            get("JM_SUBTASK")
        );
        by_task.entry(task).or_default().push(Live {
            pid,
            attempt_dir: attempt_dir.clone(),
            orphan: orphaned(pid),
        });
    }
    report.samples += 1;
    for (task, live) in by_task {
        let dirs: BTreeSet<&str> = live.iter().map(|l| l.attempt_dir.as_str()).collect();
        report
            .seen
            .entry(task.clone())
            .or_default()
            .extend(dirs.iter().map(|d| (*d).to_owned()));
        if dirs.len() < 2 {
            continue;
        }
        let what = format!("{live:?}");
        let into = if live.iter().any(|l| l.orphan) {
            &mut report.orphan_overlaps
        } else {
            &mut report.overlaps
        };
        into.entry(task).or_insert((what, 0)).1 += 1;
    }
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// State and parent of `pid` from /proc/PID/stat.
fn stat(pid: i32) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after) = stat.rsplit_once(')')?;
    let mut fields = after.split_whitespace();
    let state = fields.next()?.to_owned();
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(s, _)| !matches!(s.as_str(), "Z" | "X" | "x"))
}

/// Whether the task process `pid` has lost its executor: its shim (`… __shim …`, a few
/// levels up) is no longer the child of a live `taskexecutor` or `jobmaster` (`--local`).
fn orphaned(pid: i32) -> bool {
    let mut p = pid;
    for _ in 0..8 {
        let Some((_, parent)) = stat(p) else {
            return true;
        };
        if parent <= 1 {
            return true;
        }
        if cmdline(p).contains(" __shim ") {
            let program = cmdline(parent);
            let program = program.split(' ').next().unwrap_or_default();
            let executor = program.ends_with("taskexecutor") || program.ends_with("jobmaster");
            return !(executor && alive(parent));
        }
        p = parent;
    }
    true
}
