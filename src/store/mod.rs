//! The JobMaster's store (DESIGN §4, "Persistence"): what the core says must be durable,
//! written before the commands of the same coordinator turn leave the process (write-ahead,
//! one commit per turn), and read back by a restarted JobMaster.
//!
//! [`Store`] is the interface; [`embedded::Embedded`] keeps everything in one crash-safe redb
//! file under `store.dir` (the default), [`Memory`] keeps nothing across restarts (tests,
//! `store.backend = "memory"`).

pub mod codec;
pub mod embedded;

use std::path::PathBuf;

use crate::core::{Changes, JobId, JobRecord, PartitionHost, PartitionId, TaskId, TaskRecord};

/// The newest store format this build reads and writes. 1: every record JSON; 2: task records
/// in the binary encoding of [`codec`] (a format-1 store is read as it is, and stamped 2 when
/// opened: it will hold binary records).
pub const FORMAT: u64 = 2;

/// The JobMaster-wide facts a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The epoch (leader term) of the JobMaster that last opened the store; the next one
    /// takes a greater one.
    pub epoch: u64,
    /// Wall-clock time (ms since the Unix epoch) of core time 0: the core's clock goes on
    /// across restarts, so stored times (backoffs, windows, transitions) keep their meaning.
    pub origin_unix_ms: u64,
    /// Starts of a JobMaster on this store that found it holding state.
    pub recoveries: u64,
}

/// One stored job, as read.
#[derive(Debug, Clone)]
pub struct LoadedJob {
    /// The spec it was accepted with, as JSON ([`crate::core::JobSpec::to_json`]).
    pub spec_json: String,
    pub record: JobRecord,
    pub tasks: Vec<(TaskId, TaskRecord)>,
    pub partitions: Vec<(PartitionId, PartitionHost)>,
}

/// Everything a store holds.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// `None` for a new, empty store.
    pub meta: Option<Meta>,
    pub jobs: Vec<LoadedJob>,
}

/// One commit: the core's changes of a turn, new jobs' specs, and the meta record.
#[derive(Debug, Default)]
pub struct Batch {
    pub meta: Option<Meta>,
    /// Specs of jobs accepted in this turn (as JSON).
    pub specs: Vec<(JobId, String)>,
    pub changes: Changes,
    /// Wait until this commit and every one before it is on disk. A commit without may be
    /// lost in a crash together with the ones after it, until a synced one: the JobMaster
    /// uses it only for what executors can tell it again.
    pub sync: bool,
}

impl Batch {
    /// A commit that waits for the disk.
    pub fn synced(meta: Option<Meta>) -> Batch {
        Batch {
            meta,
            sync: true,
            ..Batch::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_none() && self.specs.is_empty() && self.changes.is_empty()
    }
}

/// Why the store cannot be used. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "state dir {dir}: cannot create or write it ({error}); give the jobmaster a writable \
         --state-dir (store.dir)"
    )]
    NotWritable {
        dir: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(
        "state dir {dir} is in use by another jobmaster (its store is locked); stop that one, \
         or give this one another --state-dir"
    )]
    Locked { dir: PathBuf },
    #[error(
        "store {file} has format {found}, this jobmaster reads format {FORMAT} at most: it was \
         written by a newer jobmaster; run that version, or restore a backup made by this one"
    )]
    NewerFormat { file: PathBuf, found: u64 },
    #[error(
        "store {file} cannot be read: {message}; the jobmaster did not start and removed \
         nothing. Restore a backup \
         (see the README, \"Durability\"), or move it away to start empty"
    )]
    Corrupt { file: PathBuf, message: String },
    #[error("store {file}: write failed: {message}")]
    Write { file: PathBuf, message: String },
}

/// Where the JobMaster's durable state lives.
pub trait Store: Send {
    /// Everything stored.
    fn load(&self) -> Result<Loaded, StoreError>;
    /// Applies `batch` atomically and durably (returns once it is on disk).
    fn commit(&mut self, batch: Batch) -> Result<(), StoreError>;
    /// Applies `batches` in order as one atomic commit, synced if any of them asks: the
    /// commits of turns that queued up behind a running one.
    fn commit_group(&mut self, batches: Vec<Batch>) -> Result<(), StoreError> {
        for batch in batches {
            self.commit(batch)?;
        }
        Ok(())
    }
    /// Bytes the store takes on disk (0 when in memory).
    fn size_bytes(&self) -> u64;
    /// Keeps nothing (commits cost nothing and need no thread of their own).
    fn volatile(&self) -> bool {
        false
    }
}

/// A store that keeps nothing: a JobMaster with it forgets every job when it stops.
#[derive(Debug, Default)]
pub struct Memory;

impl Store for Memory {
    fn load(&self) -> Result<Loaded, StoreError> {
        Ok(Loaded::default())
    }

    fn commit(&mut self, _batch: Batch) -> Result<(), StoreError> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        0
    }

    fn volatile(&self) -> bool {
        true
    }
}

/// Opens the store `settings` name (`store.backend`, `store.dir`, `store.fsync`).
pub fn open(settings: &crate::settings::Settings) -> Result<Box<dyn Store>, StoreError> {
    use crate::settings::StoreBackend;
    Ok(match settings.store.backend {
        StoreBackend::Memory => Box::new(Memory),
        StoreBackend::Embedded => Box::new(embedded::Embedded::open(
            &settings.store.dir,
            settings.store.fsync,
        )?),
    })
}
