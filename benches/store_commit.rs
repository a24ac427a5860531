//! What a store commit costs (issue 14): encoding task records, and committing them to the
//! embedded redb store with and without fsync. A 1,000-task failover writes about 4,000 task
//! records over its cycle (CANCELING, CANCELED, the new attempts, RUNNING), a 100,000-task
//! SubmitJob 100,000 in one commit. The records are those of a RUNNING attempt (five
//! transitions), overwritten in place as a failover overwrites them.
//!
//! ```sh
//! cargo bench --bench store_commit
//! ```

use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jobmaster::core::attempt::AttemptLog;
use jobmaster::core::{AttemptState, Changes, ExecutorId, JobId, TaskId, TaskRecord};
use jobmaster::store::embedded::Embedded;
use jobmaster::store::{Batch, Store, codec};

/// A RUNNING attempt's record, as the core writes it.
fn record(i: u32) -> TaskRecord {
    let mut log = AttemptLog::new(1_000_000);
    for (k, s) in [
        AttemptState::Scheduled,
        AttemptState::Deploying,
        AttemptState::Initializing,
        AttemptState::Running,
    ]
    .into_iter()
    .enumerate()
    {
        log.transition(s, 1_000_000 + 3 * k as u64)
            .expect("a legal path");
    }
    TaskRecord {
        attempt: 3,
        version: 17,
        executor: Some(ExecutorId(format!("exec-{:04}", i % 10))),
        awaiting_restart: false,
        log,
    }
}

fn batch(tasks: u32) -> Batch {
    Batch {
        changes: Changes {
            tasks: (0..tasks)
                .map(|t| (JobId(1 << 20 | 1), TaskId(t), record(t)))
                .collect(),
            ..Changes::default()
        },
        ..Batch::default()
    }
}

fn temporary(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("store-commit-bench-{name}-{}", std::process::id()))
}

fn bench(c: &mut Criterion) {
    let one = serde_json::to_vec(&record(0)).expect("encodes");
    println!(
        "one task record: {} bytes of JSON: {}",
        one.len(),
        String::from_utf8_lossy(&one)
    );
    println!(
        "one task record: {} bytes in the binary encoding",
        codec::encode_task(&record(0)).len()
    );
    let mut g = c.benchmark_group("store_encode");
    let records: Vec<TaskRecord> = (0..1000).map(record).collect();
    g.bench_function("json/1000", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|r| serde_json::to_vec(r).expect("encodes").len())
                .sum::<usize>()
        })
    });
    g.bench_function("binary/1000", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|r| codec::encode_task(r).len())
                .sum::<usize>()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("store_commit");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    // Encodings alternate within the run; `no-fsync` (Durability::Eventual) for scale only.
    for (fsync, json) in [(true, true), (true, false), (false, true), (false, false)] {
        let name = format!(
            "{}-{}",
            if fsync { "fsync" } else { "no-fsync" },
            if json { "json" } else { "binary" }
        );
        let dir = temporary(&name);
        let _ = std::fs::remove_dir_all(&dir);
        let store = Embedded::open(&dir, fsync).expect("opens");
        let mut store = if json {
            store.with_json_task_records()
        } else {
            store
        };
        for tasks in [1, 100, 1000] {
            g.bench_function(format!("{name}/{tasks}"), |b| {
                b.iter_batched(
                    || batch(tasks),
                    |batch| store.commit(batch).expect("commits"),
                    BatchSize::LargeInput,
                )
            });
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();

    let mut g = c.benchmark_group("store_commit_large");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for json in [true, false] {
        let name = if json { "json" } else { "binary" };
        let dir = temporary(&format!("large-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Embedded::open(&dir, true).expect("opens");
        let mut store = if json {
            store.with_json_task_records()
        } else {
            store
        };
        g.bench_function(format!("fsync-{name}/100000"), |b| {
            b.iter_batched(
                || batch(100_000),
                |batch| store.commit(batch).expect("commits"),
                BatchSize::PerIteration,
            )
        });
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
