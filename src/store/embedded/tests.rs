use super::*;
use crate::core::{Changes, JobSpec};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jobmaster-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_second_open_of_one_state_dir_is_refused_while_the_first_holds_it() {
    let d = dir("lock");
    let first = Embedded::open(&d, true).expect("first open");
    match Embedded::open(&d, true) {
        Err(StoreError::Locked { dir }) => assert_eq!(dir, d),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, got a second store"),
    }
    drop(first);
    Embedded::open(&d, true).expect("open again once the first is closed");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_store_from_a_newer_format_is_refused_and_left_untouched() {
    let d = dir("newer");
    {
        let store = Embedded::open(&d, true).expect("open");
        let txn = store.db.begin_write().expect("write");
        txn.open_table(META)
            .expect("meta")
            .insert("format", FORMAT + 1)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let before = std::fs::read(d.join(FILE_NAME)).expect("file");
    match Embedded::open(&d, true) {
        Err(e @ StoreError::NewerFormat { .. }) => {
            assert!(
                e.to_string().contains("written by a newer jobmaster"),
                "{e}"
            )
        }
        Err(e) => panic!("expected NewerFormat, got {e}"),
        Ok(_) => panic!("a newer store was opened"),
    }
    assert_eq!(std::fs::read(d.join(FILE_NAME)).expect("file"), before);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_corrupt_file_is_refused_not_wiped() {
    let d = dir("corrupt");
    std::fs::create_dir_all(&d).expect("dir");
    let garbage: Vec<u8> = (0..65536u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(d.join(FILE_NAME), &garbage).expect("write garbage");
    match Embedded::open(&d, true) {
        Err(e @ StoreError::Corrupt { .. }) => {
            assert!(e.to_string().contains("removed nothing"), "{e}")
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a corrupt file was opened"),
    }
    assert_eq!(std::fs::read(d.join(FILE_NAME)).expect("file"), garbage);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn committed_jobs_load_back_and_dropped_jobs_leave_every_table() {
    let d = dir("roundtrip");
    let spec = JobSpec::from_toml(
        "name = \"t\"\n[[vertices]]\nid = \"a\"\nparallelism = 3\ncommand = [\"true\"]\n\
         [[vertices]]\nid = \"b\"\nparallelism = 1\ncommand = [\"true\"]\n\
         [[edges]]\nfrom = \"a\"\nto = \"b\"\npattern = \"all-to-all\"\nexchange = \"blocking\"\n",
    )
    .expect("spec");
    let mut core = crate::core::JobMaster::new(Default::default());
    core.handle(
        crate::core::Event::SubmitJob {
            job: JobId(7),
            spec: spec.clone(),
        },
        5,
    )
    .expect("submit");
    let changes = core.take_changes();
    assert_eq!(changes.jobs.len(), 1);
    assert_eq!(changes.tasks.len(), 4);
    let mut store = Embedded::open(&d, true).expect("open");
    store
        .commit(Batch {
            meta: Some(Meta {
                epoch: 9,
                origin_unix_ms: 1000,
                recoveries: 2,
            }),
            specs: vec![(JobId(7), spec.to_json())],
            changes,
            sync: true,
        })
        .expect("commit");
    drop(store);
    let store = Embedded::open(&d, true).expect("reopen");
    let loaded = store.load().expect("load");
    assert_eq!(
        loaded.meta,
        Some(Meta {
            epoch: 9,
            origin_unix_ms: 1000,
            recoveries: 2,
        })
    );
    assert_eq!(loaded.jobs.len(), 1);
    assert_eq!(loaded.jobs[0].tasks.len(), 4);
    assert_eq!(
        JobSpec::from_json(&loaded.jobs[0].spec_json).expect("spec"),
        spec
    );
    let mut store = store;
    store
        .commit(Batch {
            changes: Changes {
                dropped: vec![JobId(7)],
                ..Changes::default()
            },
            ..Batch::synced(None)
        })
        .expect("drop");
    assert_eq!(row_counts(&store).expect("counts"), [0, 0, 0, 0]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_truncated_store_is_refused_as_corrupt_not_a_panic() {
    let d = dir("truncated");
    {
        let mut store = Embedded::open(&d, true).expect("open");
        store
            .commit(Batch {
                meta: Some(Meta {
                    epoch: 1,
                    origin_unix_ms: 1,
                    recoveries: 0,
                }),
                ..Batch::synced(None)
            })
            .expect("commit");
    }
    let file = d.join(FILE_NAME);
    let whole = std::fs::read(&file).expect("file");
    let half = whole[..whole.len() / 2].to_vec();
    std::fs::write(&file, &half).expect("truncate");
    match Embedded::open(&d, true) {
        Err(e @ StoreError::Corrupt { .. }) => {
            assert!(e.to_string().contains("removed nothing"), "{e}")
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a truncated file was opened"),
    }
    assert_eq!(std::fs::read(&file).expect("file"), half);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_unsynced_commit_reaches_the_disk_with_the_next_synced_one() {
    let d = dir("unsynced");
    {
        let mut store = Embedded::open(&d, true).expect("open");
        store
            .commit(Batch {
                meta: Some(Meta {
                    epoch: 3,
                    origin_unix_ms: 5,
                    recoveries: 0,
                }),
                sync: false,
                ..Batch::default()
            })
            .expect("unsynced commit");
        // Visible at once to this store.
        assert_eq!(store.load().expect("load").meta.map(|m| m.epoch), Some(3));
        // An empty synced batch flushes it.
        store.commit(Batch::synced(None)).expect("flush");
    }
    let store = Embedded::open(&d, true).expect("reopen");
    assert_eq!(store.load().expect("load").meta.map(|m| m.epoch), Some(3));
    let _ = std::fs::remove_dir_all(&d);
}
