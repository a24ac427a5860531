//! The JobMaster's store on etcd (`ha.mode = "etcd"`), against a real etcd with its default
//! request limits (1.5 MiB, 128 operations per transaction): a 100,000-task job round-trips,
//! a dropped job leaves no key, and a deposed leader's writes are refused.
//!
//! Skipped (with a message) when the `etcd` binary is missing.

mod process_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobmaster::core::{CoreConfig, Event, JobId, JobMaster, JobSpec, SpecFormat};
use jobmaster::ha::etcd::Etcd as EtcdClient;
use jobmaster::ha::etcd::pb::v3electionpb::LeaderKey;
use jobmaster::ha::etcd_store::{EtcdStore, Guard};
use jobmaster::ha::lease::{Leadership, keep_alive};
use jobmaster::store::{Batch, Meta, Store};
use process_support::TestDir;
use process_support::ha::{Etcd, etcd_available};

async fn elected(client: &Arc<EtcdClient>, name: &[u8]) -> (LeaderKey, Arc<Leadership>) {
    let sent = Instant::now();
    let (lease, ttl) = client.grant(Duration::from_secs(10)).await.expect("lease");
    let leadership = Leadership::new(lease, sent + ttl);
    tokio::spawn(keep_alive(client.clone(), leadership.clone(), ttl));
    let key = client
        .campaign(name, lease, b"test")
        .await
        .expect("campaign");
    (key, leadership)
}

async fn open(client: &Arc<EtcdClient>, key: &LeaderKey, l: &Arc<Leadership>) -> EtcdStore {
    let guard = Guard {
        key: key.key.clone(),
        rev: key.rev,
    };
    EtcdStore::open(client.clone(), "/store-test", guard, l.clone())
        .await
        .expect("open the store")
}

/// The submit of a job with one vertex of `parallelism` tasks, as the coordinator commits it.
fn submitted(job: JobId, parallelism: u32) -> (JobSpec, Batch) {
    let spec = JobSpec::parse(
        &serde_json::json!({
            "name": "big",
            "vertices": [{"id": "v", "parallelism": parallelism, "command": ["true"]}],
        })
        .to_string(),
        SpecFormat::Json,
    )
    .expect("spec");
    let mut core = JobMaster::new(CoreConfig::default());
    core.handle(
        Event::SubmitJob {
            job,
            spec: spec.clone(),
        },
        1_000,
    )
    .expect("submit");
    let batch = Batch {
        meta: Some(Meta {
            epoch: 7,
            origin_unix_ms: 1_700_000_000_000,
            recoveries: 2,
        }),
        specs: vec![(job, spec.to_json())],
        changes: core.take_changes(),
        sync: true,
    };
    (spec, batch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100000_task_job_round_trips_through_etcd_and_a_dropped_job_leaves_no_key() {
    if !etcd_available() {
        eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let dir = TestDir::new("etcd-store-big");
    let etcd = Etcd::start(&dir.0, 1).await;
    let client = Arc::new(etcd.client());
    let (key, leadership) = elected(&client, b"/store-test/leader").await;
    let mut store = open(&client, &key, &leadership).await;
    assert!(store.load().expect("load").jobs.is_empty());

    let job = JobId(42);
    let (spec, batch) = submitted(job, 100_000);
    let tasks = batch.changes.tasks.clone();
    assert_eq!(tasks.len(), 100_000);
    let record = batch.changes.jobs[0].clone();
    store.commit(batch).expect("commit a 100,000-task job");

    // A new leader term reads it all back.
    let again = open(&client, &key, &leadership).await;
    let loaded = again.load().expect("load");
    let meta = loaded.meta.expect("meta");
    assert_eq!((meta.epoch, meta.recoveries), (7, 2));
    assert_eq!(loaded.jobs.len(), 1);
    let stored = &loaded.jobs[0];
    assert_eq!(
        serde_json::to_value(&stored.record).unwrap(),
        serde_json::to_value(&record).unwrap()
    );
    assert_eq!(stored.spec_json, spec.to_json());
    assert_eq!(stored.tasks.len(), 100_000);
    for ((_, t, r), (lt, lr)) in tasks.iter().zip(&stored.tasks) {
        assert_eq!((t, r), (lt, lr));
    }
    assert!(store.size_bytes() > 0);

    let mut drop = Batch {
        sync: true,
        ..Batch::default()
    };
    drop.changes.dropped.push(job);
    store.commit(drop).expect("drop the job");
    let keys = client
        .range_prefix(b"/store-test/jobs/")
        .await
        .expect("range");
    assert!(keys.is_empty(), "{} keys left", keys.len());
    assert!(
        open(&client, &key, &leadership)
            .await
            .load()
            .unwrap()
            .jobs
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_write() {
    if !etcd_available() {
        eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let dir = TestDir::new("etcd-store-deposed");
    let etcd = Etcd::start(&dir.0, 1).await;
    let client = Arc::new(etcd.client());
    let name = b"/store-test/leader";
    let (old_key, old) = elected(&client, name).await;
    let mut old_store = open(&client, &old_key, &old).await;
    // The old leader loses its key (as when its lease expires) and another one is elected.
    client.resign(old_key.clone()).await.expect("resign");
    let (new_key, new) = elected(&client, name).await;
    assert!(new_key.rev > old_key.rev, "the epoch grows");
    assert!(old.is_held(), "the old leader has not noticed yet");

    let (_, batch) = submitted(JobId(1), 10);
    let e = old_store
        .commit(batch)
        .expect_err("a deposed leader's write");
    assert!(e.to_string().contains("another one leads"), "{e}");
    assert!(!old.is_held(), "it steps down");
    assert!(
        client
            .range_prefix(b"/store-test/jobs/")
            .await
            .unwrap()
            .is_empty(),
        "nothing written"
    );
    // The new leader writes.
    let mut new_store = open(&client, &new_key, &new).await;
    let (_, batch) = submitted(JobId(2), 10);
    new_store.commit(batch).expect("the leader writes");
    assert_eq!(
        open(&client, &new_key, &new)
            .await
            .load()
            .unwrap()
            .jobs
            .len(),
        1
    );
}
