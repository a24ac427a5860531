//! A store the jobmaster cannot use (issue 14, item 6), on the `jobmaster` binary: a store of
//! a newer format, a corrupt or truncated file, a state dir it cannot create or write, and a
//! state dir another jobmaster holds. Each is one clear line on stderr and exit code 2, and
//! the store file is left as it was — never a silent start from nothing.

mod process_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use process_support::{Cluster, JOBMASTER, TestDir, bounded};

const TEST_LIMIT: Duration = Duration::from_secs(150);
const WAIT: Duration = Duration::from_secs(60);
const ENV: &[(&str, &str)] = &[("JOBMASTER__RECOVERY__RECONCILE_TIMEOUT", "4s")];

/// What a `jobmaster` that refused to start left.
struct Refusal {
    code: Option<i32>,
    stderr: String,
    stdout: String,
}

/// Runs `jobmaster ARGS` in `cwd` (ports 0) and waits (at most 30 s) until it exits.
async fn run_refused(cwd: &Path, args: &[&str]) -> Refusal {
    let child = Command::new(JOBMASTER)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the jobmaster");
    let pid = child.id() as i32;
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(Duration::from_secs(30), waiting).await {
        Ok(output) => {
            let output = output
                .expect("the waiting task")
                .expect("wait for the jobmaster");
            Refusal {
                code: output.status.code(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            }
        }
        Err(_) => {
            // SAFETY: kill(2) on our own child, still running (not reaped: it did not exit).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            panic!("the jobmaster did not exit within 30 s: it started on a store it must refuse");
        }
    }
}

/// Asserts exit code 2 and exactly one line on stderr containing every one of `says`.
fn assert_refused(r: &Refusal, says: &[&str]) {
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        r.code,
        Some(2),
        "exit code 2; stderr:\n{}\nstdout:\n{}",
        r.stderr,
        r.stdout
    );
    assert_eq!(lines.len(), 1, "one error line on stderr:\n{}", r.stderr);
    for s in says {
        assert!(lines[0].contains(s), "the error says {s:?}: {}", lines[0]);
    }
}

/// A store holding one finished job, made by a real jobmaster in `cwd` (./jobmaster-state):
/// returns the store file.
async fn store_with_a_job(name: &str) -> (Cluster, PathBuf) {
    let mut cluster = Cluster::start(name, &[("tm-1", 2)], ENV).await;
    let spec = serde_json::json!({
        "name": "stored",
        "vertices": [{ "id": "v", "parallelism": 2, "command": ["true"] }],
    });
    let job = cluster.submit(&spec).await;
    cluster.wait_job_state(&job, "FINISHED", WAIT).await;
    cluster.kill_jobmaster();
    let file = cluster.root.join("jobmaster-state/jobmaster.redb");
    assert!(file.is_file(), "the store is {}", file.display());
    (cluster, file)
}

/// Item 6: a store written by a newer jobmaster (format 999) stops the jobmaster with exit
/// code 2 and one line naming the format and what to do; the file is not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_a_newer_format_stops_the_jobmaster_with_code_2_untouched() {
    bounded(TEST_LIMIT, async {
        let (cluster, file) = store_with_a_job("crash-newer").await;
        {
            let db = redb::Database::open(&file).expect("open the store with redb");
            let txn = db.begin_write().expect("write");
            {
                let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
                let mut meta = txn.open_table(meta).expect("the meta table");
                meta.insert("format", 999).expect("insert");
            }
            txn.commit().expect("commit");
        }
        let bytes = std::fs::read(&file).expect("read the store");
        let r = run_refused(&cluster.root, &[]).await;
        assert_refused(
            &r,
            &[
                "format 999",
                "jobmaster-state/jobmaster.redb",
                "newer jobmaster",
                "run that version",
            ],
        );
        assert!(
            std::fs::read(&file).expect("read the store") == bytes,
            "the store is untouched"
        );
    })
    .await;
}

/// Item 6: a store file that is not a store (garbage bytes, and a real store cut in half)
/// stops the jobmaster with exit code 2 and one line naming the file and what to do; the file
/// is not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_file_stops_the_jobmaster_with_code_2_untouched() {
    bounded(TEST_LIMIT, async {
        let (cluster, file) = store_with_a_job("crash-corrupt").await;
        let real = std::fs::read(&file).expect("read the store");
        let garbage: Vec<u8> = (0..65_536u32).map(|i| (i * 7919 % 251) as u8).collect();
        for (what, bytes) in [
            ("garbage", garbage),
            ("cut in half", real[..real.len() / 2].to_vec()),
        ] {
            std::fs::write(&file, &bytes).expect("write the store");
            let r = run_refused(&cluster.root, &[]).await;
            eprintln!("{what}: {}", r.stderr.trim());
            assert_refused(
                &r,
                &[
                    "jobmaster-state/jobmaster.redb",
                    "cannot be read",
                    "removed nothing",
                ],
            );
            assert!(
                std::fs::read(&file).expect("read the store") == bytes,
                "{what}: the store is untouched"
            );
        }
    })
    .await;
}

/// `chattr +i PATH` (immutable: not even root may write it) until dropped; `None` where the
/// file system or the container does not allow it.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let done = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        done.then(|| Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Item 6: a state dir the jobmaster cannot write stops it with exit code 2 and one line
/// naming the dir and the flag to fix it. The tests run as root, whom file modes do not stop:
/// the dir's parent is a regular file, the dir is a regular file, and (where `chattr` works)
/// the dir is immutable, or the store file in it is (then it is left as it was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_dir_stops_the_jobmaster_with_code_2() {
    bounded(TEST_LIMIT, async {
        let dir = TestDir::new("unwritable");
        let refused = |state: PathBuf| {
            let cwd = dir.0.clone();
            async move {
                let shown = state.display().to_string();
                let r = run_refused(&cwd, &["--state-dir", &shown]).await;
                assert_refused(&r, &[&shown, "cannot create or write", "--state-dir"]);
            }
        };
        let file = dir.0.join("a-file");
        std::fs::write(&file, b"not a directory").expect("write a file");
        refused(file.join("state")).await;
        refused(file.clone()).await;
        assert_eq!(std::fs::read(&file).expect("read"), b"not a directory");

        let locked = dir.0.join("immutable");
        std::fs::create_dir(&locked).expect("create a dir");
        match Immutable::set(&locked) {
            Some(_guard) => refused(locked.clone()).await,
            None => eprintln!("chattr +i is not available here: the immutable cases are skipped"),
        }
        let stored = dir.0.join("stored");
        drop(jobmaster::store::embedded::Embedded::open(&stored, true).expect("a store"));
        let store = stored.join(jobmaster::store::embedded::FILE_NAME);
        let bytes = std::fs::read(&store).expect("read the store");
        if let Some(_guard) = Immutable::set(&store) {
            refused(stored.clone()).await;
        }
        assert!(
            std::fs::read(&store).expect("read the store") == bytes,
            "the store is untouched"
        );
    })
    .await;
}

/// Item 6: a second jobmaster on a state dir in use stops with exit code 2 and one line
/// saying so; the first keeps running and the store is not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_jobmaster_on_a_state_dir_in_use_stops_with_code_2() {
    bounded(TEST_LIMIT, async {
        let cluster = Cluster::start("crash-locked", &[], ENV).await;
        let file = cluster.root.join("jobmaster-state/jobmaster.redb");
        // The first one is idle: it writes nothing while the second tries.
        let bytes = std::fs::read(&file).expect("read the store");
        let r = run_refused(&cluster.root, &[]).await;
        assert_refused(
            &r,
            &[
                "state dir jobmaster-state ",
                "in use by another jobmaster",
                "--state-dir",
            ],
        );
        assert!(
            std::fs::read(&file).expect("read the store") == bytes,
            "the store is untouched"
        );
        // The first one still answers.
        cluster
            .client()
            .list_jobs(jobmaster::api::v1::ListJobsRequest {})
            .await
            .unwrap_or_else(|s| panic!("ListJobs: {}", s.message()));
    })
    .await;
}
