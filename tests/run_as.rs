//! Tasks run as another user (`executor.run-as`, `--run-as`; issue 12 item 6): real
//! `jobmaster` and `taskexecutor` processes whose task processes switch to `nobody`, and the
//! executor's refusals to start.
//!
//! Switching users needs root: the tests that switch are skipped, with a note, when the test
//! does not run as root (CI runs as root).

mod process_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::unistd::{Gid, User, geteuid, getgrouplist};
use process_support::{Cluster, TASKEXECUTOR, bounded, describe, eventually};

const TEST_LIMIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(60);
const NOBODY: &str = "nobody";

fn root_or_skip(test: &str) -> bool {
    let root = geteuid().is_root();
    if !root {
        eprintln!(
            "skipping {test}: switching users needs root, and the test runs as uid {}",
            geteuid()
        );
    }
    root
}

/// `nobody`'s uid, primary gid and groups, from the user database.
fn nobody() -> (u32, u32, Vec<u32>) {
    let user = User::from_name(NOBODY)
        .expect("read the user database")
        .expect("user nobody exists");
    let name = std::ffi::CString::new(NOBODY).expect("no NUL");
    let mut groups: Vec<u32> = getgrouplist(&name, user.gid)
        .expect("nobody's groups")
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    (user.uid.as_raw(), user.gid.as_raw(), groups)
}

/// Runs `taskexecutor ARGS` (against a jobmaster that is not there) until it exits; returns
/// whether it succeeded and what it printed. `uid`: run it as that user.
async fn executor_start_error(root: &Path, args: &[&str], uid: Option<u32>) -> (bool, String) {
    let log = root.join("executor.log");
    let out = std::fs::File::create(&log).expect("create the log");
    let mut command = Command::new(TASKEXECUTOR);
    command
        .args([
            "--jobmaster",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--id",
            "tm-refused",
        ])
        .arg("--data-dir")
        .arg(root.join("data"))
        .arg("--persistent-dir")
        .arg(root.join("persistent"))
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone the log handle"))
        .stderr(out);
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        command.uid(uid);
    }
    let mut child = command.spawn().expect("start a taskexecutor");
    let status = eventually("the executor exits at start", WAIT, || {
        let r = child.try_wait();
        async move {
            match r {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".to_owned()),
                Err(e) => Err(format!("wait: {e}")),
            }
        }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    (status.success(), text)
}

/// A fresh directory under the system temp dir that `nobody` may enter (mode 0755),
/// removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "jobmaster-run-as-{name}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the test directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A producer and a consumer over a blocking exchange on two executors whose tasks run as
/// `nobody`: every task runs with nobody's uid, groups and environment, writes its state
/// folder and output files, reads its inputs (one fetched from the other executor, one local),
/// cannot look into the executor's pid files, and the job finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_as_the_run_as_user_and_a_blocking_exchange_between_them_finishes() {
    if !root_or_skip("tasks_run_as_the_run_as_user_and_a_blocking_exchange_between_them_finishes") {
        return;
    }
    bounded(TEST_LIMIT, async {
        let (uid, gid, groups) = nobody();
        let cluster = Cluster::start(
            "run-as",
            &[("tm-1", 1), ("tm-2", 1)],
            &[("JOBMASTER__EXECUTOR__RUN_AS", NOBODY)],
        )
        .await;
        // The consumer's result goes to a folder of nobody's own.
        let out = cluster.root.join("out");
        std::fs::create_dir(&out).expect("create the output folder");
        std::os::unix::fs::chown(&out, Some(uid), Some(gid)).expect("give it to nobody");
        let result = out.join("result.txt");

        // Each producer writes "uid gid groups" to its output and a file to its state folder.
        let produce = "set -eu; echo ok > \"$JM_STATE_DIR/state\"; \
                       echo \"$(id -u) $(id -g) $(id -G | tr ' ' '\\n' | sort -n | uniq | tr '\\n' ' ')\" \
                       > \"$JM_OUTPUT_FILES\"";
        // The consumer copies its inputs, then adds its own identity and environment and
        // whether it can list the executor's pid files.
        let consume = "set -eu; out=$0; cat $JM_INPUT_FILES > \"$out.tmp\"; \
                       echo \"consumer $(id -u) $USER $LOGNAME $HOME\" >> \"$out.tmp\"; \
                       if ls \"$JM_ATTEMPT_DIR/../../../pids\" > /dev/null 2>&1; \
                       then echo pids readable; else echo pids private; fi >> \"$out.tmp\"; \
                       mv \"$out.tmp\" \"$out\"";
        let spec = serde_json::json!({
            "name": "run-as",
            "failover": "region",
            "restart": { "strategy": "none" },
            "vertices": [
                { "id": "produce", "parallelism": 2, "command": ["sh", "-c", produce] },
                { "id": "consume", "parallelism": 1,
                  "command": ["sh", "-c", consume, result.display().to_string()] },
            ],
            "edges": [
                { "from": "produce", "to": "consume", "pattern": "all-to-all",
                  "exchange": "blocking" },
            ],
        });
        let job = cluster.submit(&spec).await;
        let done = cluster.wait_job_state(&job, "FINISHED", WAIT).await;
        let tasks = done
            .tasks
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        let on = |name: &str| {
            done.tasks
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.executor.clone())
                .unwrap_or_default()
        };
        // One slot each: the producers ran side by side, so the consumer fetched one input
        // from the other executor and read the other on its own.
        assert_ne!(
            on("produce#0"),
            on("produce#1"),
            "the producers ran on different executors: {}",
            describe(&tasks)
        );

        let text = std::fs::read_to_string(&result).expect("the consumer wrote its result");
        let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
        let producer = format!("{uid} {gid} {} ", groups.join(" "));
        let home = User::from_name(NOBODY)
            .ok()
            .flatten()
            .map(|u| u.dir.display().to_string())
            .unwrap_or_default();
        let expected = format!(
            "{producer}\n{producer}\nconsumer {uid} {NOBODY} {NOBODY} {home}\npids private\n"
        );
        assert_eq!(text, expected, "every task ran as nobody with its groups");
    })
    .await;
}

/// An unknown run-as user stops the executor at start with a message naming the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_run_as_user_stops_the_executor_at_start_naming_the_user() {
    bounded(TEST_LIMIT, async {
        let dir = Scratch::new("unknown");
        let (ok, text) = executor_start_error(&dir.0, &["--run-as", "no-such-user-jm"], None).await;
        assert!(!ok, "the executor refused to start:\n{text}");
        assert!(
            text.contains("\"no-such-user-jm\"") && text.contains("no such user"),
            "the message names the user:\n{text}"
        );
    })
    .await;
}

/// An executor that is not root refuses to run tasks as another user, saying it needs root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_is_not_root_refuses_to_run_tasks_as_another_user() {
    if !root_or_skip("an_executor_that_is_not_root_refuses_to_run_tasks_as_another_user") {
        return;
    }
    bounded(TEST_LIMIT, async {
        let (uid, _, _) = nobody();
        let dir = Scratch::new("not-root");
        // The executor runs as nobody and must be able to create its directories.
        std::os::unix::fs::chown(&dir.0, Some(uid), None).expect("give the folder to nobody");
        let (ok, text) = executor_start_error(&dir.0, &["--run-as", "root"], Some(uid)).await;
        assert!(!ok, "the executor refused to start:\n{text}");
        assert!(
            text.contains("switching users needs root") && text.contains("\"root\""),
            "the message says why:\n{text}"
        );
    })
    .await;
}
