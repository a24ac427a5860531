//! The exactly-once example (`examples/tasks/exactly_once.py`) on a real cluster: per-city
//! order counts from replayable sources, checkpointed, with a sink that commits on `complete`;
//! executors are killed with SIGKILL mid-stream and the committed counts are checked exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Cluster, eventually, example, python3, quick_restarts};

pub const CITIES: [&str; 5] = ["beijing", "shanghai", "shenzhen", "hangzhou", "chengdu"];

/// Writes `orders` orders (one city per line, a fixed pseudo-random sequence) to `path`;
/// returns the expected count per city.
pub fn write_orders(path: &Path, orders: usize) -> BTreeMap<String, u64> {
    let mut expected = BTreeMap::new();
    let mut text = String::with_capacity(orders * 10);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..orders {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let city = CITIES[(x % CITIES.len() as u64) as usize];
        *expected.entry(city.to_owned()).or_insert(0) += 1;
        text.push_str(city);
        text.push('\n');
    }
    std::fs::write(path, text).expect("write the orders");
    expected
}

/// The job: `parallelism` regions of source -> count (pointwise, pipelined), checkpointed
/// every `interval`.
pub fn spec(
    orders: &Path,
    link: &Path,
    out: &Path,
    parallelism: u32,
    rate: u32,
    interval: &str,
) -> serde_json::Value {
    let program = example("tasks/exactly_once.py");
    let python = python3();
    serde_json::json!({
        "name": "city-orders-exactly-once",
        "failover": "region",
        "restart": quick_restarts("100ms"),
        "checkpoint": { "interval": interval, "timeout": "10s", "tolerable-failures": 1000 },
        "vertices": [
            { "id": "source", "parallelism": parallelism,
              "command": [python, program, "source", orders, link, rate.to_string()] },
            { "id": "count", "parallelism": parallelism,
              "command": [python, program, "count", link, out] },
        ],
        "edges": [
            { "from": "source", "to": "count", "pattern": "pointwise", "exchange": "pipelined" },
        ],
    })
}

/// The committed counts, summed over the count subtasks; and per count subtask's file
/// (`count-N.json/CITY`).
pub fn committed(out: &Path) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut sum = BTreeMap::new();
    let mut per_file = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return (sum, per_file);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("count-") && name.ends_with(".json")) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("read a committed file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("a committed file is JSON");
        for (city, n) in v["counts"].as_object().expect("counts") {
            let n = n.as_u64().expect("a count");
            *sum.entry(city.clone()).or_insert(0) += n;
            per_file.insert(format!("{name}/{city}"), n);
        }
    }
    (sum, per_file)
}

/// What one run measured.
pub struct Run {
    pub kills: usize,
    /// Kill -> every task RUNNING again, per kill.
    pub recoveries: Vec<Duration>,
    /// Tasks restarted per kill (attempt numbers that grew).
    pub restarted: Vec<usize>,
}

/// Runs the example on `executors` executors of 4 slots with `parallelism` regions and `orders`
/// orders, kills an executor hosting tasks `kills` times (each restarted at once, so slots
/// stay), and checks the committed counts: never a count above the expected one (nothing
/// counted twice), and at the end exactly the expected counts (nothing lost).
pub async fn run(
    name: &str,
    executors: &[&str],
    parallelism: u32,
    orders: usize,
    rate: u32,
    kills: usize,
) -> Run {
    let slots: Vec<(&str, u32)> = executors.iter().map(|e| (*e, 4)).collect();
    let mut cluster = Cluster::start(name, &slots, &[]).await;
    let root = cluster.root.clone();
    let link = short_dir(&root, "link");
    let out = root.join("out");
    let orders_file = root.join("orders.txt");
    let expected = write_orders(&orders_file, orders);
    let job = cluster
        .submit(&spec(&orders_file, &link, &out, parallelism, rate, "300ms"))
        .await;
    let mut run = Run {
        kills: 0,
        recoveries: Vec::new(),
        restarted: Vec::new(),
    };
    // Committed counts never exceed the expected ones (nothing counted twice) and never go
    // back (a restarted counter resumed from its state: one that started over would commit
    // smaller counts under a newer checkpoint).
    let last = std::cell::RefCell::new(BTreeMap::<String, u64>::new());
    let check = |what: &str| {
        let (counts, per_file) = committed(&out);
        for (city, n) in &counts {
            let want = expected.get(city).copied().unwrap_or(0);
            assert!(
                *n <= want,
                "{what}: {city} committed {n} > {want}: counted twice"
            );
        }
        let mut last = last.borrow_mut();
        for (key, n) in &per_file {
            let before = last.get(key).copied().unwrap_or(0);
            assert!(
                *n >= before,
                "{what}: {key} committed {n} after {before}: state lost"
            );
        }
        *last = per_file;
        counts
    };
    cluster
        .wait_tasks(&job, "every task RUNNING", Duration::from_secs(30), |t| {
            t.state == "RUNNING"
        })
        .await;
    for k in 0..kills {
        // Progress since the last kill: a checkpoint committed more.
        let before: u64 = check("before a kill").values().sum();
        eventually(
            "a checkpoint commits more counts",
            Duration::from_secs(30),
            || {
                let now: u64 = check("while waiting").values().sum();
                async move {
                    (now > before || now == orders as u64)
                        .then_some(())
                        .ok_or(format!("{now} committed"))
                }
            },
        )
        .await;
        let tasks = cluster.tasks(&job).await;
        let hosting: Vec<String> = executors
            .iter()
            .filter(|e| tasks.values().any(|t| t.executor == **e))
            .map(|e| (*e).to_owned())
            .collect();
        let victim = hosting[k % hosting.len()].clone();
        let attempts: BTreeMap<String, u32> = tasks
            .values()
            .map(|t| (t.name.clone(), t.attempt))
            .collect();
        let killed = Instant::now();
        cluster.signal_executor(&victim, libc::SIGKILL);
        cluster.start_executor(&victim, 4);
        let after = cluster
            .wait_tasks(
                &job,
                "every task RUNNING again",
                Duration::from_secs(30),
                |t| {
                    let was_there = tasks.get(&t.name).is_some_and(|old| old.executor == victim);
                    let restarted = attempts.get(&t.name) != Some(&t.attempt);
                    t.state == "RUNNING" && (restarted || !was_there)
                },
            )
            .await;
        run.recoveries.push(killed.elapsed());
        run.restarted.push(
            after
                .values()
                .filter(|t| attempts.get(&t.name) != Some(&t.attempt))
                .count(),
        );
        run.kills += 1;
        let _ = check("after a kill");
    }
    let counts = eventually(
        "the committed counts reach the expected ones",
        Duration::from_secs(120),
        || {
            let counts = check("at the end");
            let expected = &expected;
            async move {
                if &counts == expected {
                    Ok(counts)
                } else {
                    Err(format!("committed {counts:?}, expected {expected:?}"))
                }
            }
        },
    )
    .await;
    assert_eq!(counts, expected);
    // Checkpoint storage (`checkpoints` beside the executors' persistent folder): only the
    // retained checkpoint (1) and one in progress stay, older and aborted ones are deleted;
    // the job's whole folder goes once the job ends.
    let storage = root.join("checkpoints").join(&job);
    let chk = || {
        std::fs::read_dir(&storage)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
                    .count()
            })
            .unwrap_or(0)
    };
    eventually("old checkpoints deleted", Duration::from_secs(30), || {
        let n = chk();
        async move {
            (1..=2)
                .contains(&n)
                .then_some(())
                .ok_or(format!("{n} checkpoints"))
        }
    })
    .await;
    cluster
        .client()
        .cancel_job(jobmaster::api::v1::CancelJobRequest {
            job_id: job.clone(),
        })
        .await
        .expect("CancelJob");
    eventually(
        "the ended job's checkpoints deleted",
        Duration::from_secs(30),
        || {
            let gone = !storage.exists();
            async move { gone.then_some(()).ok_or("still there".to_owned()) }
        },
    )
    .await;
    run
}

/// A folder for the link sockets with a short path (a Unix socket path holds 107 bytes).
fn short_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("create the link folder");
    dir
}
