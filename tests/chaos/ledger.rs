//! Task ledgers on the shared volume: every task of the chaos jobs appends one line per event
//! to `/shared/ledger/JOB.log`, with the time taken in the task (all containers share the
//! host's clock):
//!
//! ```text
//! start TASK ATTEMPT UNIX_SECONDS.MICROS EXECUTOR     when the attempt starts
//! alive TASK ATTEMPT UNIX_SECONDS.MICROS EXECUTOR     every 200 ms while it runs (streaming)
//! end   TASK ATTEMPT UNIX_SECONDS.MICROS EXECUTOR     when it stops on SIGTERM or finishes
//! ```
//!
//! An attempt's *activity* runs from its first line to its last. Two attempts of one task
//! were never alive at once when their activities do not overlap, and each starts after the
//! last line of every earlier attempt — a frozen or cut-off attempt that went on writing after
//! its successor started shows up as an overlap. (An attempt killed with SIGKILL writes no
//! `end`; its last `alive` line bounds it, and the suite checks from the outside that its
//! processes are gone.)

use std::collections::BTreeMap;
use std::path::Path;

/// The wrapper every chaos task runs under (bash, for `$EPOCHREALTIME` without a fork): it
/// writes `start`, runs `$@` (or, with no arguments, ticks `alive` every 200 ms until SIGTERM),
/// then writes `end` and exits with the command's status.
pub const WRAPPER: &str = r#"L=/shared/ledger/$JM_JOB_ID.log
mkdir -p /shared/ledger
w() { printf '%s %s#%s %s %s %s\n' "$1" "$JM_VERTEX" "$JM_SUBTASK" "$JM_ATTEMPT" "$EPOCHREALTIME" "$JM_EXECUTOR_ID" >> "$L"; }
w start
if [ $# -eq 0 ]; then
  trap 'w end; exit 0' TERM INT
  while :; do sleep 0.2 & wait $!; w alive; done
fi
"$@"
rc=$?
w end
exit $rc"#;

/// The command of a chaos task: the ledger wrapper around `command` (empty: a streaming task
/// that runs until cancelled).
pub fn task_command(command: &[&str]) -> Vec<String> {
    let mut c = vec![
        "bash".to_owned(),
        "-c".to_owned(),
        WRAPPER.to_owned(),
        "ledger".to_owned(),
    ];
    c.extend(command.iter().map(|s| (*s).to_owned()));
    c
}

/// One attempt's activity.
#[derive(Debug, Clone)]
pub struct Activity {
    pub attempt: u32,
    pub executor: String,
    pub first: f64,
    pub last: f64,
    pub ended: bool,
    pub lines: usize,
}

/// The ledger of one job: per task, per attempt.
#[derive(Debug, Default)]
pub struct Ledger {
    pub tasks: BTreeMap<String, BTreeMap<u32, Activity>>,
}

impl Ledger {
    /// Reads `/shared/ledger/JOB.log` through the shared volume's folder on the host.
    pub fn read(shared: &Path, job: &str) -> Ledger {
        let text = std::fs::read_to_string(shared.join("ledger").join(format!("{job}.log")))
            .unwrap_or_default();
        let mut ledger = Ledger::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let [event, task, attempt, time, executor] = f[..] else {
                // A line cut by a SIGKILL in the middle of its write.
                continue;
            };
            let (Ok(attempt), Ok(time)) = (attempt.parse::<u32>(), time.parse::<f64>()) else {
                continue;
            };
            let a = ledger
                .tasks
                .entry(task.to_owned())
                .or_default()
                .entry(attempt)
                .or_insert(Activity {
                    attempt,
                    executor: executor.to_owned(),
                    first: time,
                    last: time,
                    ended: false,
                    lines: 0,
                });
            a.first = a.first.min(time);
            a.last = a.last.max(time);
            a.lines += 1;
            a.ended |= event == "end";
        }
        ledger
    }

    /// Every attempt that was alive when a later attempt of its task started, or that started
    /// after a later attempt; empty when no two attempts of any task were alive at once.
    pub fn overlaps(&self) -> Vec<Overlap> {
        let mut found = Vec::new();
        for (task, attempts) in &self.tasks {
            for new in attempts.values() {
                for old in attempts.values().filter(|o| o.attempt < new.attempt) {
                    if old.last >= new.first {
                        found.push(Overlap {
                            task: task.clone(),
                            old: old.clone(),
                            new: new.clone(),
                        });
                    }
                }
            }
        }
        found
    }
}

/// An attempt (`old`) seen alive after a later attempt (`new`) of its task started.
#[derive(Debug, Clone)]
pub struct Overlap {
    pub task: String,
    pub old: Activity,
    pub new: Activity,
}

impl Overlap {
    /// How long `old` was seen alive after `new` started, in seconds.
    pub fn seconds(&self) -> f64 {
        self.old.last - self.new.first
    }
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: attempt {} (on {}) was alive {:.3} s after attempt {} (on {}) started",
            self.task,
            self.old.attempt,
            self.old.executor,
            self.seconds(),
            self.new.attempt,
            self.new.executor
        )
    }
}
