//! The embedded store: one redb file, `store.dir/jobmaster.redb`.
//!
//! redb is a pure-Rust embedded key-value store with ACID transactions: a commit is atomic
//! and, with `Durability::Immediate`, on disk when `commit` returns (copy-on-write B-trees and
//! a checksummed double-buffered header, so a crash at any moment leaves the last committed
//! state). It locks its file (`flock`), so two JobMasters cannot share a state dir. Records
//! are JSON, except task records, the bulk of every commit, in the compact binary encoding of
//! [`super::codec`]; one table per kind, keyed by job (and task or partition), so a turn
//! writes only what changed and dropping a job is a range delete.

use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, Durability, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Batch, FORMAT, Loaded, LoadedJob, Meta, Store, StoreError, codec};
use crate::core::{JobId, PartitionHost, PartitionId, TaskId, TaskRecord};

/// The file's name inside the state dir.
pub const FILE_NAME: &str = "jobmaster.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SPECS: TableDefinition<u64, &str> = TableDefinition::new("specs");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const TASKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("tasks");
const PARTITIONS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("partitions");

/// The embedded store.
pub struct Embedded {
    db: Database,
    file: PathBuf,
    fsync: bool,
    /// Task records as JSON (format 1) instead of binary: only to compare the two.
    json_tasks: bool,
}

impl Embedded {
    /// Opens (or creates) the store in `dir`. `fsync = false` lets the system write commits
    /// back when it likes (a crash of the machine may lose the last ones; of the process not).
    pub fn open(dir: &Path, fsync: bool) -> Result<Embedded, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| StoreError::NotWritable {
            dir: dir.to_path_buf(),
            error,
        })?;
        let file = dir.join(FILE_NAME);
        let corrupt = |message: String| StoreError::Corrupt {
            file: file.clone(),
            message,
        };
        let created = match create_quietly(&file) {
            Ok(created) => created,
            Err(message) => return Err(corrupt(message)),
        };
        let db = match created {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(DatabaseError::Storage(redb::StorageError::Io(error)))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                return Err(StoreError::NotWritable {
                    dir: dir.to_path_buf(),
                    error,
                });
            }
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let mut store = Embedded {
            db,
            file: file.clone(),
            fsync,
            json_tasks: false,
        };
        // The format is checked (and a new file stamped) before anything else is read.
        let found = {
            let read = store.db.begin_read().map_err(|e| corrupt(e.to_string()))?;
            match read.open_table(META) {
                Ok(t) => t
                    .get("format")
                    .map_err(|e| corrupt(e.to_string()))?
                    .map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(corrupt(e.to_string())),
            }
        };
        match found {
            Some(f) if f > FORMAT => {
                return Err(StoreError::NewerFormat {
                    file: store.file.clone(),
                    found: f,
                });
            }
            Some(FORMAT) => {}
            // An older format: read as it is; what is written from now on is this one's.
            Some(_) | None => store.stamp()?,
        }
        Ok(store)
    }

    /// Writes task records as JSON, as format 1 did (the binary encoding is the default):
    /// for benchmarks that compare the two encodings on one build.
    pub fn with_json_task_records(mut self) -> Embedded {
        self.json_tasks = true;
        self
    }

    fn stamp(&mut self) -> Result<(), StoreError> {
        let write = |e: &dyn std::fmt::Display| StoreError::Write {
            file: self.file.clone(),
            message: e.to_string(),
        };
        let txn = self.db.begin_write().map_err(|e| write(&e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| write(&e))?;
            meta.insert("format", FORMAT).map_err(|e| write(&e))?;
            // Every table exists from the start: reading one never meets a missing table.
            txn.open_table(SPECS).map_err(|e| write(&e))?;
            txn.open_table(JOBS).map_err(|e| write(&e))?;
            txn.open_table(TASKS).map_err(|e| write(&e))?;
            txn.open_table(PARTITIONS).map_err(|e| write(&e))?;
        }
        txn.commit().map_err(|e| write(&e))
    }

    fn corrupt(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            file: self.file.clone(),
            message: message.to_string(),
        }
    }

    fn write_error(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::Write {
            file: self.file.clone(),
            message: message.to_string(),
        }
    }

    fn decode<T: DeserializeOwned>(&self, what: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(format!("{what}: {e}")))
    }

    /// A task record, binary or (written by format 1) JSON.
    fn decode_task(&self, bytes: &[u8]) -> Result<TaskRecord, StoreError> {
        if bytes.first() == Some(&codec::TAG) {
            codec::decode_task(bytes).map_err(|e| self.corrupt(format!("task: {e}")))
        } else {
            self.decode("task", bytes)
        }
    }

    fn encode_task(&self, record: &TaskRecord) -> Vec<u8> {
        if self.json_tasks {
            encode(record)
        } else {
            codec::encode_task(record)
        }
    }
}

/// `Database::create` with redb's panics turned into an error (`Err` with the panic's message).
///
/// redb 2.6 checks some fields of an existing file's header with assertions rather than errors
/// (a file shorter than its header says, as a truncated copy is; a damaged layout field): its
/// panic would end the jobmaster with a backtrace, where a damaged store must be one clear
/// error and exit code 2. The panic is caught, and kept off stderr on this thread only.
fn create_quietly(file: &Path) -> Result<Result<Database, DatabaseError>, String> {
    use std::cell::Cell;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    thread_local! {
        static QUIET: Cell<bool> = const { Cell::new(false) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    // Unwind safety: nothing of ours is touched inside; a half-made Database is dropped.
    let created = catch_unwind(AssertUnwindSafe(|| Database::create(file)));
    QUIET.with(|q| q.set(false));
    created.map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a check failed".to_owned());
        format!("damaged file ({what})")
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

impl Store for Embedded {
    fn load(&self) -> Result<Loaded, StoreError> {
        let e = |e: redb::Error| self.corrupt(e);
        let read = self.db.begin_read().map_err(|x| e(x.into()))?;
        let meta = read.open_table(META).map_err(|x| e(x.into()))?;
        let get = |key: &str| -> Result<Option<u64>, StoreError> {
            Ok(meta.get(key).map_err(|x| e(x.into()))?.map(|v| v.value()))
        };
        let meta = match (get("epoch")?, get("origin_unix_ms")?) {
            (Some(epoch), Some(origin_unix_ms)) => Some(Meta {
                epoch,
                origin_unix_ms,
                recoveries: get("recoveries")?.unwrap_or(0),
            }),
            _ => None,
        };
        let specs = read.open_table(SPECS).map_err(|x| e(x.into()))?;
        let jobs = read.open_table(JOBS).map_err(|x| e(x.into()))?;
        let tasks = read.open_table(TASKS).map_err(|x| e(x.into()))?;
        let partitions = read.open_table(PARTITIONS).map_err(|x| e(x.into()))?;
        let mut loaded = Vec::new();
        for row in jobs.iter().map_err(|x| e(x.into()))? {
            let (id, bytes) = row.map_err(|x| e(x.into()))?;
            let id = id.value();
            let record = self.decode(&format!("job {}", JobId(id)), bytes.value())?;
            let spec_json = specs
                .get(id)
                .map_err(|x| e(x.into()))?
                .ok_or_else(|| self.corrupt(format!("job {} has no spec", JobId(id))))?
                .value()
                .to_owned();
            let mut job_tasks = Vec::new();
            for row in tasks
                .range((id, 0)..=(id, u32::MAX))
                .map_err(|x| e(x.into()))?
            {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                let (_, t) = k.value();
                job_tasks.push((TaskId(t), self.decode_task(v.value())?));
            }
            let mut job_partitions = Vec::new();
            for row in partitions
                .range((id, 0)..=(id, u32::MAX))
                .map_err(|x| e(x.into()))?
            {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                let (_, p) = k.value();
                let host: PartitionHost = self.decode("partition", v.value())?;
                job_partitions.push((PartitionId(p), host));
            }
            loaded.push(LoadedJob {
                spec_json,
                record,
                tasks: job_tasks,
                partitions: job_partitions,
            });
        }
        Ok(Loaded { meta, jobs: loaded })
    }

    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.commit_group(vec![batch])
    }

    fn commit_group(&mut self, batches: Vec<Batch>) -> Result<(), StoreError> {
        let sync = batches.iter().any(|b| b.sync);
        let mut txn = self.db.begin_write().map_err(|e| self.write_error(e))?;
        // `None`: redb makes the commit visible and durable with the next durable one (an
        // empty synced batch is such a flush). Without `store.fsync` every commit is `None`
        // but the flushes, which the coordinator makes at least once a second.
        txn.set_durability(match (sync, self.fsync) {
            (true, true) => Durability::Immediate,
            (true, false) => Durability::Eventual,
            (false, _) => Durability::None,
        });
        {
            let w = |e: redb::Error| StoreError::Write {
                file: self.file.clone(),
                message: e.to_string(),
            };
            let mut meta = txn.open_table(META).map_err(|x| w(x.into()))?;
            let mut specs = txn.open_table(SPECS).map_err(|x| w(x.into()))?;
            let mut jobs = txn.open_table(JOBS).map_err(|x| w(x.into()))?;
            let mut tasks = txn.open_table(TASKS).map_err(|x| w(x.into()))?;
            let mut partitions = txn.open_table(PARTITIONS).map_err(|x| w(x.into()))?;
            for batch in &batches {
                if let Some(m) = batch.meta {
                    meta.insert("epoch", m.epoch).map_err(|x| w(x.into()))?;
                    meta.insert("origin_unix_ms", m.origin_unix_ms)
                        .map_err(|x| w(x.into()))?;
                    meta.insert("recoveries", m.recoveries)
                        .map_err(|x| w(x.into()))?;
                }
                for (job, spec) in &batch.specs {
                    specs
                        .insert(job.0, spec.as_str())
                        .map_err(|x| w(x.into()))?;
                }
                let changes = &batch.changes;
                for record in &changes.jobs {
                    jobs.insert(record.id.0, encode(record).as_slice())
                        .map_err(|x| w(x.into()))?;
                }
                for (job, t, record) in &changes.tasks {
                    tasks
                        .insert((job.0, t.0), self.encode_task(record).as_slice())
                        .map_err(|x| w(x.into()))?;
                }
                for (job, p, host) in &changes.partitions {
                    if *host == PartitionHost::Unavailable {
                        partitions.remove((job.0, p.0)).map_err(|x| w(x.into()))?;
                    } else {
                        partitions
                            .insert((job.0, p.0), encode(host).as_slice())
                            .map_err(|x| w(x.into()))?;
                    }
                }
                for job in &changes.dropped {
                    let id = job.0;
                    jobs.remove(id).map_err(|x| w(x.into()))?;
                    specs.remove(id).map_err(|x| w(x.into()))?;
                    tasks
                        .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)
                        .map_err(|x| w(x.into()))?;
                    partitions
                        .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)
                        .map_err(|x| w(x.into()))?;
                }
            }
        }
        txn.commit().map_err(|e| self.write_error(e))
    }

    fn size_bytes(&self) -> u64 {
        std::fs::metadata(&self.file).map_or(0, |m| m.len())
    }
}

/// Rows per table, for tests and `jmload`.
pub fn row_counts(store: &Embedded) -> Result<[u64; 4], StoreError> {
    let e = |x: redb::Error| store.corrupt(x);
    let read = store.db.begin_read().map_err(|x| e(x.into()))?;
    let jobs = read.open_table(JOBS).map_err(|x| e(x.into()))?.len();
    let specs = read.open_table(SPECS).map_err(|x| e(x.into()))?.len();
    let tasks = read.open_table(TASKS).map_err(|x| e(x.into()))?.len();
    let partitions = read.open_table(PARTITIONS).map_err(|x| e(x.into()))?.len();
    Ok([
        jobs.map_err(|x| e(x.into()))?,
        specs.map_err(|x| e(x.into()))?,
        tasks.map_err(|x| e(x.into()))?,
        partitions.map_err(|x| e(x.into()))?,
    ])
}

#[cfg(test)]
mod tests;
