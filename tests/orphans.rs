//! No orphans (issue 13, item 3): no task process, grandchildren and double-forked daemons
//! included, outlives its executor — a `taskexecutor` or a `jobmaster --local` killed with -9
//! takes them along (each attempt runs under a shim that is their subreaper and watches a
//! lifeline to the executor). Behind that, the second line of defence: a restarted executor
//! kills what its pid files and attempt folders still name, and `jobmaster --local` reaps the
//! folders of earlier local clusters whose daemon is gone.

mod process_support;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jobmaster::api::v1::ListExecutorsRequest;
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use process_support::{
    Cluster, JOBMASTER, TaskProcess, bounded, eventually, quick_restarts, task_processes,
};

const TEST_LIMIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(60);

/// A task that leaves a grandchild in its group (`sleep 3333`, pid in `DIR/child.N`) and a
/// double-forked daemon in a session of its own (`sleep 3334`, pid in `DIR/daemon.N`), then
/// waits; DIR is its first argument.
fn leaver(dir: &Path) -> serde_json::Value {
    let script = r#"dir=$0
sleep 3333 & echo $! > "$dir/child.$JM_SUBTASK"
( setsid sh -c 'echo $$ > "$1"; exec sleep 3334' sh "$dir/daemon.$JM_SUBTASK" & )
wait"#;
    serde_json::json!({
        "name": "leaver",
        "restart": { "strategy": "none" },
        "vertices": [{ "id": "leaver", "parallelism": 1,
                       "command": ["sh", "-c", script, dir.display().to_string()] }],
    })
}

/// Field `index` (0 = state, 1 = ppid, 2 = pgrp, ...) after the command name in
/// /proc/PID/stat.
fn stat_field(pid: i32, index: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1.to_owned();
    after.split_whitespace().nth(index).map(str::to_owned)
}

/// Whether `pid` is a live (not zombie) process whose command line contains `what` (a pid may
/// be reused).
fn runs(pid: i32, what: &str) -> bool {
    let live = stat_field(pid, 0).is_some_and(|s| !matches!(s.as_str(), "Z" | "X" | "x"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default();
    live && cmdline.contains(what)
}

/// Waits until the leaver's grandchild and daemon run; returns their pids.
async fn leftovers_running(dir: &Path) -> (i32, i32) {
    eventually("the task's grandchild and daemon run", WAIT, || async {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
        };
        match (read("child.0"), read("daemon.0")) {
            (Some(c), Some(d)) if runs(c, "sleep 3333") && runs(d, "sleep 3334") => Ok((c, d)),
            other => Err(format!("pids so far: {other:?}")),
        }
    })
    .await
}

async fn wait_dead(pids: &[(i32, &str)]) {
    eventually("the task's leftovers are gone", WAIT, || async {
        let left: Vec<_> = pids.iter().filter(|(p, what)| runs(*p, what)).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {left:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grandchildren_and_double_forked_daemons_die_with_a_taskexecutor_killed_with_sigkill() {
    bounded(TEST_LIMIT, async {
        let mut cluster = Cluster::start("orphans-kill9", &[("tm-1", 1)], &[]).await;
        let dir = cluster.root.join("pids");
        std::fs::create_dir_all(&dir).expect("pid folder");
        let job = cluster.submit(&leaver(&dir)).await;
        cluster
            .wait_tasks(&job, "the task RUNNING", WAIT, |t| t.state == "RUNNING")
            .await;
        let (child, daemon) = leftovers_running(&dir).await;
        // The daemon really left: another session and process group than the grandchild's.
        assert_ne!(
            stat_field(child, 2),
            stat_field(daemon, 2),
            "the daemon has its own group"
        );

        cluster.signal_executor("tm-1", libc::SIGKILL);
        wait_dead(&[(child, "sleep 3333"), (daemon, "sleep 3334")]).await;
        cluster.wait_no_processes_of("tm-1").await;
    })
    .await;
}

/// A `jobmaster --local` started with its temporary directory under `root/tmp`, logging JSON
/// to `root/NAME.log`.
struct Local {
    child: Child,
    log: PathBuf,
    client: JobMasterServiceClient<tonic::transport::Channel>,
}

impl Local {
    async fn start(root: &Path, name: &str) -> Local {
        let log = root.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create the log");
        let child = Command::new(JOBMASTER)
            .args(["--local", "1", "--local-slots", "2"])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .env("TMPDIR", root.join("tmp"))
            .env("RUST_LOG", "info")
            .env("JOBMASTER__HEARTBEAT__INTERVAL", "100ms")
            .env("JOBMASTER__HEARTBEAT__TIMEOUT", "3s")
            .env("JOBMASTER__EXECUTOR__CANCEL_GRACE", "2s")
            .env("JOBMASTER__EXECUTOR__MIN_FREE_DISK_BYTES", "0")
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out)
            .spawn()
            .expect("start jobmaster --local");
        let grpc = eventually("the jobmaster listens", WAIT, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move {
                text.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|v| v["fields"]["message"] == "jobmaster listening")
                    .and_then(|v| v["fields"]["grpc"].as_str().map(str::to_owned))
                    .ok_or_else(|| format!("no `jobmaster listening` line yet:\n{text}"))
            }
        })
        .await;
        let url = format!("http://{grpc}");
        let client = eventually("connect to the jobmaster", WAIT, || {
            let url = url.clone();
            async move {
                JobMasterServiceClient::connect(url)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        eventually("the local executor registers", WAIT, || {
            let mut client = client.clone();
            async move {
                let ids: Vec<String> = client
                    .list_executors(ListExecutorsRequest::default())
                    .await
                    .map_err(|s| s.to_string())?
                    .into_inner()
                    .executors
                    .into_iter()
                    .map(|e| e.id)
                    .collect();
                if ids.contains(&"local-0".to_owned()) {
                    Ok(())
                } else {
                    Err(format!("{ids:?}"))
                }
            }
        })
        .await;
        Local { child, log, client }
    }

    /// Its data folder: `TMP/jobmaster-local-PID`.
    fn folder(&self, root: &Path) -> PathBuf {
        root.join("tmp")
            .join(format!("jobmaster-local-{}", self.child.id()))
    }

    fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Kills what a test left running and removes its folder.
struct Scratch {
    root: PathBuf,
    /// Processes the test started itself and has not reaped (killed with SIGKILL).
    pids: Vec<i32>,
}

impl Scratch {
    /// `pid` was reaped: its number may name another process now.
    fn reaped(&mut self, pid: u32) {
        self.pids.retain(|&p| p != pid as i32);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: kill(2) on a process this test started (and has not reaped yet).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        for p in task_processes(&self.root) {
            // SAFETY: kill(2) on a pid just read from /proc; it belongs to this test.
            unsafe {
                libc::kill(p.pid, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            for name in ["first", "second"] {
                let text = std::fs::read_to_string(self.root.join(format!("{name}.log")))
                    .unwrap_or_default();
                eprintln!("----- {name}.log -----\n{text}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The start time of `pid` (field 22 of /proc/PID/stat), as executors record it.
fn start_time(pid: i32) -> u64 {
    stat_field(pid, 19)
        .and_then(|s| s.parse().ok())
        .expect("the process runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_killed_with_sigkill_takes_its_tasks_along_and_the_next_start_reaps_its_folder()
 {
    bounded(TEST_LIMIT, async {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let root = std::env::temp_dir().join(format!(
            "jobmaster-orphans-local-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(root.join("tmp")).expect("test folder");
        let root = root.canonicalize().expect("canonical test folder");
        let mut scratch = Scratch {
            root: root.clone(),
            pids: Vec::new(),
        };
        let dir = root.join("pids");
        std::fs::create_dir_all(&dir).expect("pid folder");

        let first = Local::start(&root, "first").await;
        scratch.pids.push(first.child.id() as i32);
        let stale = first.folder(&root);
        assert!(
            stale.join("OWNER").is_file(),
            "the running daemon marks its folder"
        );
        let mut client = first.client.clone();
        let job = client
            .submit_job(jobmaster::api::v1::SubmitJobRequest {
                spec: leaver(&dir).to_string(),
                format: "json".into(),
            })
            .await
            .expect("submit")
            .into_inner()
            .job_id;
        let (child, daemon) = leftovers_running(&dir).await;
        let Local {
            child: mut first_process,
            ..
        } = first;
        let _ = first_process.kill();
        let _ = first_process.wait();
        scratch.reaped(first_process.id());
        wait_dead(&[(child, "sleep 3333"), (daemon, "sleep 3334")]).await;
        assert!(
            stale.is_dir(),
            "a daemon killed with -9 leaves its folder ({job})"
        );

        // What a pid file still names dies when the next local cluster reaps the folder.
        // A process group leader, as every recorded shim is.
        let mut planted = Command::new("sleep")
            .arg("3335")
            .process_group(0)
            .spawn()
            .expect("start a planted process");
        let pid = planted.id() as i32;
        scratch.pids.push(pid);
        let pids = stale.join("executor-0").join("pids");
        std::fs::create_dir_all(&pids).expect("pid folder");
        std::fs::write(pids.join("planted"), format!("{pid} {}\n", start_time(pid)))
            .expect("pid file");

        let second = Local::start(&root, "second").await;
        scratch.pids.push(second.child.id() as i32);
        let status = eventually("the planted process is killed", WAIT, || {
            let r = planted.try_wait();
            async move {
                match r {
                    Ok(Some(status)) => Ok(status),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
        scratch.reaped(planted.id());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        assert!(!stale.exists(), "the stale folder is removed");
        let logged = second.log_lines().into_iter().any(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("earlier local cluster"))
                && v["fields"]["folder"] == stale.display().to_string()
                && v["fields"]["killed"].as_u64().is_some_and(|k| k >= 1)
        });
        assert!(
            logged,
            "the removal is logged with the folder and what was killed"
        );

        // A clean stop still removes its own folder.
        let mine = second.folder(&root);
        assert!(mine.is_dir());
        let mut second_process = second.child;
        // SAFETY: kill(2) on our own unreaped child.
        unsafe {
            libc::kill(second_process.id() as i32, libc::SIGTERM);
        }
        let stopped = eventually("the second daemon stops", WAIT, || {
            let r = second_process.try_wait();
            async move {
                match r {
                    Ok(Some(status)) => Ok(status),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
        scratch.reaped(second_process.id());
        assert!(stopped.success(), "{stopped}");
        assert!(!mine.exists(), "a clean stop removes the daemon's folder");
    })
    .await;
}

/// Whether process `p` (same pid, same attempt directory) is still alive.
fn alive(cluster: &Cluster, p: &TaskProcess) -> bool {
    cluster
        .processes()
        .iter()
        .any(|q| q.pid == p.pid && q.attempt_dir == p.attempt_dir)
}

/// The pids of executor `executor`'s shims (its children started as `__shim`).
fn shims_of(executor: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            stat_field(pid, 1).and_then(|p| p.parse::<i32>().ok()) == Some(executor)
                && runs(pid, "__shim")
        })
        .collect()
}

/// The second line of defence: should a shim die with its executor (both killed with -9),
/// the task's grandchildren live on (re-parented to this test, their subreaper, as on a host
/// whose init reaps orphans) — until the executor starts again on the same data dir and
/// kills them by the attempt folder in their environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grandchildren_left_when_their_shim_dies_too_are_reaped_when_the_executor_starts_again() {
    bounded(TEST_LIMIT, async {
        // Orphans of this test process's descendants become its children, so that the test
        // can reap them like init does (this one's init does not).
        // SAFETY: prctl(2) with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
        let mut cluster = Cluster::start("reap", &[("tm-1", 2)], &[]).await;
        let spec = serde_json::json!({
            "name": "leaver",
            "failover": "region",
            "restart": quick_restarts("100ms"),
            "vertices": [{
                "id": "leaver",
                "parallelism": 2,
                "command": ["sh", "-c", "sleep 600 & wait"],
            }],
        });
        let job = cluster.submit(&spec).await;
        cluster
            .wait_tasks(&job, "every task RUNNING", WAIT, |t| t.state == "RUNNING")
            .await;
        let orphans = eventually("each task has its sleep child", WAIT, || async {
            let sleeps: Vec<TaskProcess> = cluster
                .processes_of("tm-1")
                .into_iter()
                .filter(|p| p.cmdline.starts_with("sleep"))
                .collect();
            if sleeps.len() == 2 {
                Ok(sleeps)
            } else {
                Err(format!("{sleeps:?}"))
            }
        })
        .await;

        // Frozen, the executor cannot notice its shims die; then it dies too.
        let executor = cluster.executor_pid("tm-1");
        cluster.signal_executor("tm-1", libc::SIGSTOP);
        let shims = shims_of(executor);
        assert_eq!(shims.len(), 2, "one shim per attempt: {shims:?}");
        for &shim in &shims {
            // SAFETY: kill(2) on a child of our own stopped child.
            unsafe {
                libc::kill(shim, libc::SIGKILL);
            }
        }
        cluster.signal_executor("tm-1", libc::SIGKILL);
        // The task leaders die with their shims (parent-death signal) and are reaped by this
        // test: their pids no longer name their process groups. Their children are orphans.
        let mut gone: BTreeSet<i32> = orphans.iter().map(|p| p.pgid).collect();
        gone.extend(&shims);
        eventually(
            "the shims and task leaders died and were reaped",
            WAIT,
            || {
                for &pid in &gone {
                    // SAFETY: waitpid(2) on a specific pid, no status wanted.
                    unsafe {
                        libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
                    }
                }
                let left: Vec<i32> = gone
                    .iter()
                    .copied()
                    .filter(|l| Path::new(&format!("/proc/{l}")).exists())
                    .collect();
                async move {
                    if left.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("{left:?} remain"))
                    }
                }
            },
        )
        .await;
        assert!(
            orphans.iter().all(|p| alive(&cluster, p)),
            "the grandchildren outlive their shims: {orphans:?}"
        );

        cluster.start_executor("tm-1", 2);
        eventually(
            "the restarted executor reaps what its predecessor left",
            WAIT,
            || async {
                let left: Vec<&TaskProcess> =
                    orphans.iter().filter(|p| alive(&cluster, p)).collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            },
        )
        .await;
        // And the job runs again on it.
        cluster
            .wait_tasks(&job, "every task RUNNING again", WAIT, |t| {
                t.state == "RUNNING" && t.attempt >= 1
            })
            .await;
    })
    .await;
}
