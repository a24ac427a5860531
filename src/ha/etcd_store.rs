//! The JobMaster's store on etcd (`ha.mode = "etcd"`): what the embedded store keeps, under
//! `ha.namespace`, written only by the leader — every transaction is guarded by its leader key
//! (the key must still exist with the create revision it won with), so a deposed leader
//! cannot write.
//!
//! Layout (`NS` = the namespace; ids in hex):
//! - `NS/meta`: the epoch, the core clock's origin and the restart count (JSON);
//! - `NS/jobs/JOB/spec/PART`: the accepted spec as JSON, in parts of at most 512 KiB;
//! - `NS/jobs/JOB/tasks/CHUNK`: the records of tasks `CHUNK*1024 ..`, binary
//!   ([`crate::store::codec`]), so a 100,000-task job is ~100 values, each far below etcd's
//!   1.5 MiB request limit;
//! - `NS/jobs/JOB/parts/CHUNK`: where the job's partitions are, likewise;
//! - `NS/jobs/JOB/record`: the job record, written last: a job is loaded only with it.
//!
//! A commit is one transaction when it fits etcd's limits (128 operations, 1.5 MiB); a larger
//! one (the submit of a very large job, a full restart of one) is split into several, the job
//! records last. Commits are made durable by etcd's quorum; `store.fsync` does not apply.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tracing::warn;

use super::etcd::Etcd;
use super::etcd::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, compare, request_op,
};
use super::lease::Leadership;
use crate::core::{JobId, JobRecord, PartitionHost, PartitionId, TaskId};
use crate::store::{Batch, Loaded, LoadedJob, Meta, Store, StoreError, codec};

/// Tasks (or partitions) per value.
pub const CHUNK: u32 = 1024;
/// Spec bytes per value.
const SPEC_PART: usize = 512 << 10;
/// Operations per transaction (etcd's `--max-txn-ops` defaults to 128).
const MAX_OPS: usize = 120;
/// Bytes per transaction (etcd's `--max-request-bytes` defaults to 1.5 MiB).
const MAX_BYTES: usize = 1 << 20;

/// The guard of every write: the leader key and the revision it was created at.
#[derive(Debug, Clone)]
pub struct Guard {
    pub key: Vec<u8>,
    pub rev: i64,
}

/// See the module documentation.
pub struct EtcdStore {
    etcd: Arc<Etcd>,
    handle: Handle,
    ns: String,
    guard: Guard,
    leadership: Arc<Leadership>,
    loaded: Loaded,
    /// Encoded task records by (job, chunk), as stored: a changed task rewrites its chunk.
    tasks: HashMap<(JobId, u32), BTreeMap<u32, Vec<u8>>>,
    /// Encoded partition hosts by (job, chunk).
    partitions: HashMap<(JobId, u32), BTreeMap<u32, Vec<u8>>>,
    /// Stored bytes per key.
    sizes: HashMap<Vec<u8>, usize>,
    /// Keys of jobs found without their record (a submit cut short): deleted by the first
    /// commit.
    orphans: Vec<JobId>,
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        file: "etcd".into(),
        message: message.into(),
    }
}

fn write_error(message: impl Into<String>) -> StoreError {
    StoreError::Write {
        file: "etcd".into(),
        message: message.into(),
    }
}

/// Runs `f` to completion from synchronous code (the coordinator's writer thread, or a runtime
/// worker: then it lets the runtime move other tasks away first).
fn block<F: Future>(handle: &Handle, f: F) -> F::Output {
    match Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(|| handle.block_on(f)),
        Err(_) => handle.block_on(f),
    }
}

impl EtcdStore {
    /// Reads everything under `ns` as the leader holding `guard`.
    pub async fn open(
        etcd: Arc<Etcd>,
        ns: &str,
        guard: Guard,
        leadership: Arc<Leadership>,
    ) -> Result<EtcdStore, StoreError> {
        let mut store = EtcdStore {
            etcd,
            handle: Handle::current(),
            ns: ns.trim_end_matches('/').to_owned(),
            guard,
            leadership,
            loaded: Loaded::default(),
            tasks: HashMap::new(),
            partitions: HashMap::new(),
            sizes: HashMap::new(),
            orphans: Vec::new(),
        };
        store.read().await?;
        Ok(store)
    }

    fn meta_key(&self) -> Vec<u8> {
        format!("{}/meta", self.ns).into_bytes()
    }

    fn job_prefix(&self, job: JobId) -> String {
        format!("{}/jobs/{:016x}/", self.ns, job.0)
    }

    async fn read(&mut self) -> Result<(), StoreError> {
        let unreachable = |e: super::HaError| corrupt(format!("cannot read from etcd: {e}"));
        if let Some(kv) = self.etcd.get(&self.meta_key()).await.map_err(unreachable)? {
            let meta: StoredMeta =
                serde_json::from_slice(&kv.value).map_err(|e| corrupt(format!("meta: {e}")))?;
            self.loaded.meta = Some(Meta {
                epoch: meta.epoch,
                origin_unix_ms: meta.origin_unix_ms,
                recoveries: meta.recoveries,
            });
        }
        let prefix = format!("{}/jobs/", self.ns);
        let kvs = self
            .etcd
            .range_prefix(prefix.as_bytes())
            .await
            .map_err(unreachable)?;
        #[derive(Default)]
        struct Parts {
            record: Option<Vec<u8>>,
            spec: BTreeMap<u32, Vec<u8>>,
        }
        let mut jobs: BTreeMap<u64, Parts> = BTreeMap::new();
        for kv in kvs {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            self.sizes.insert(kv.key.clone(), kv.value.len());
            let rest = &key[prefix.len()..];
            let mut it = rest.split('/');
            let (Some(job), Some(kind)) = (it.next(), it.next()) else {
                return Err(corrupt(format!("unexpected key {key}")));
            };
            let job = u64::from_str_radix(job, 16)
                .map_err(|_| corrupt(format!("unexpected key {key}")))?;
            let index = || -> Result<u32, StoreError> {
                it.clone()
                    .next()
                    .and_then(|i| u32::from_str_radix(i, 16).ok())
                    .ok_or_else(|| corrupt(format!("unexpected key {key}")))
            };
            let parts = jobs.entry(job).or_default();
            match kind {
                "record" => parts.record = Some(kv.value),
                "spec" => {
                    parts.spec.insert(index()?, kv.value);
                }
                "tasks" => {
                    let chunk = index()?;
                    let records =
                        split_records(&kv.value).map_err(|e| corrupt(format!("{key}: {e}")))?;
                    self.tasks.insert((JobId(job), chunk), records);
                }
                "parts" => {
                    let chunk = index()?;
                    let records =
                        split_records(&kv.value).map_err(|e| corrupt(format!("{key}: {e}")))?;
                    self.partitions.insert((JobId(job), chunk), records);
                }
                _ => return Err(corrupt(format!("unexpected key {key}"))),
            }
        }
        // Records by job, decoded once.
        let mut job_tasks: HashMap<JobId, Vec<(TaskId, crate::core::TaskRecord)>> = HashMap::new();
        for ((job, _), records) in &self.tasks {
            let list = job_tasks.entry(*job).or_default();
            for (t, bytes) in records {
                let r = codec::decode_task(bytes)
                    .map_err(|e| corrupt(format!("job {job} task {t}: {e}")))?;
                list.push((TaskId(*t), r));
            }
        }
        let mut job_partitions: HashMap<JobId, Vec<(PartitionId, PartitionHost)>> = HashMap::new();
        for ((job, _), records) in &self.partitions {
            let list = job_partitions.entry(*job).or_default();
            for (p, bytes) in records {
                let host: PartitionHost = serde_json::from_slice(bytes)
                    .map_err(|e| corrupt(format!("job {job} partition {p}: {e}")))?;
                list.push((PartitionId(*p), host));
            }
        }
        for (id, parts) in jobs {
            let job = JobId(id);
            let Some(record) = parts.record else {
                warn!(job = %job, "job without its record in etcd (a submit cut short): removed");
                self.orphans.push(job);
                self.tasks.retain(|(j, _), _| *j != job);
                self.partitions.retain(|(j, _), _| *j != job);
                continue;
            };
            let record: JobRecord =
                serde_json::from_slice(&record).map_err(|e| corrupt(format!("job {job}: {e}")))?;
            let spec_json = String::from_utf8(parts.spec.into_values().flatten().collect())
                .map_err(|_| corrupt(format!("job {job}: the spec is not UTF-8")))?;
            let mut tasks = job_tasks.remove(&job).unwrap_or_default();
            let mut partitions = job_partitions.remove(&job).unwrap_or_default();
            tasks.sort_by_key(|(t, _)| *t);
            partitions.sort_by_key(|(p, _)| *p);
            self.loaded.jobs.push(LoadedJob {
                spec_json,
                record,
                tasks,
                partitions,
            });
        }
        Ok(())
    }

    /// The operations of `batches`, in the order they must apply: deletions, then values, then
    /// job records and the meta record (a job is loaded only once its record is there).
    fn operations(&mut self, batches: Vec<Batch>) -> Vec<Op> {
        let mut deletes: Vec<Op> = std::mem::take(&mut self.orphans)
            .into_iter()
            .map(|job| Op::DeletePrefix(self.job_prefix(job).into_bytes()))
            .collect();
        let mut puts: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut last: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut dirty_tasks: BTreeSet<(JobId, u32)> = BTreeSet::new();
        let mut dirty_parts: BTreeSet<(JobId, u32)> = BTreeSet::new();
        for batch in batches {
            if let Some(m) = batch.meta {
                let meta = StoredMeta {
                    epoch: m.epoch,
                    origin_unix_ms: m.origin_unix_ms,
                    recoveries: m.recoveries,
                };
                last.insert(
                    self.meta_key(),
                    serde_json::to_vec(&meta).expect("meta serializes"),
                );
            }
            for (job, spec) in &batch.specs {
                let prefix = self.job_prefix(*job);
                for (i, part) in spec.as_bytes().chunks(SPEC_PART).enumerate() {
                    puts.insert(format!("{prefix}spec/{i:08x}").into_bytes(), part.to_vec());
                }
            }
            let changes = batch.changes;
            for record in &changes.jobs {
                last.insert(
                    format!("{}record", self.job_prefix(record.id)).into_bytes(),
                    serde_json::to_vec(record).expect("records serialize"),
                );
            }
            for (job, t, record) in &changes.tasks {
                let chunk = t.0 / CHUNK;
                self.tasks
                    .entry((*job, chunk))
                    .or_default()
                    .insert(t.0, codec::encode_task(record));
                dirty_tasks.insert((*job, chunk));
            }
            for (job, p, host) in &changes.partitions {
                let chunk = p.0 / CHUNK;
                let records = self.partitions.entry((*job, chunk)).or_default();
                if *host == PartitionHost::Unavailable {
                    records.remove(&p.0);
                } else {
                    records.insert(p.0, serde_json::to_vec(host).expect("hosts serialize"));
                }
                dirty_parts.insert((*job, chunk));
            }
            for job in &changes.dropped {
                let prefix = self.job_prefix(*job);
                let under = |k: &Vec<u8>| k.starts_with(prefix.as_bytes());
                puts.retain(|k, _| !under(k));
                last.retain(|k, _| !under(k));
                self.sizes.retain(|k, _| !under(k));
                self.tasks.retain(|(j, _), _| j != job);
                self.partitions.retain(|(j, _), _| j != job);
                dirty_tasks.retain(|(j, _)| j != job);
                dirty_parts.retain(|(j, _)| j != job);
                deletes.push(Op::DeletePrefix(prefix.into_bytes()));
            }
        }
        let mut ops = deletes;
        for (kind, dirty, chunks) in [
            ("tasks", &dirty_tasks, &self.tasks),
            ("parts", &dirty_parts, &self.partitions),
        ] {
            for key in dirty {
                let name = format!("{}{kind}/{:08x}", self.job_prefix(key.0), key.1).into_bytes();
                match chunks.get(key) {
                    Some(records) if !records.is_empty() => {
                        puts.insert(name, join_records(records));
                    }
                    _ => ops.push(Op::Delete(name)),
                }
            }
        }
        self.tasks.retain(|_, r| !r.is_empty());
        self.partitions.retain(|_, r| !r.is_empty());
        for (k, v) in puts.into_iter().chain(last) {
            ops.push(Op::Put(k, v));
        }
        ops
    }

    async fn apply(&mut self, ops: Vec<Op>) -> Result<(), StoreError> {
        for txn in split(ops) {
            if !self.leadership.is_held() {
                return Err(write_error(
                    "this jobmaster no longer leads (its lease lapsed): it stops writing",
                ));
            }
            for op in &txn {
                match op {
                    Op::Put(k, v) => {
                        self.sizes.insert(k.clone(), v.len());
                    }
                    Op::Delete(k) => {
                        self.sizes.remove(k);
                    }
                    Op::DeletePrefix(p) => self.sizes.retain(|k, _| !k.starts_with(p)),
                }
            }
            let request = TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    key: self.guard.key.clone(),
                    range_end: Vec::new(),
                    target_union: Some(compare::TargetUnion::CreateRevision(self.guard.rev)),
                }],
                success: txn.into_iter().map(Op::request).collect(),
                failure: Vec::new(),
            };
            let response = self
                .etcd
                .txn(request)
                .await
                .map_err(|e| write_error(e.to_string()))?;
            if !response.succeeded {
                self.leadership
                    .lose("etcd refused a write: the leader key is gone (another jobmaster leads)");
                return Err(write_error(
                    "etcd refused the write: this jobmaster's leader key is gone, another one \
                     leads",
                ));
            }
        }
        Ok(())
    }
}

impl Store for EtcdStore {
    fn load(&self) -> Result<Loaded, StoreError> {
        Ok(self.loaded.clone())
    }

    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.commit_group(vec![batch])
    }

    fn commit_group(&mut self, batches: Vec<Batch>) -> Result<(), StoreError> {
        if self.loaded.meta.is_some() || !self.loaded.jobs.is_empty() {
            // What was loaded is in the core now.
            self.loaded = Loaded::default();
        }
        let ops = self.operations(batches);
        if ops.is_empty() {
            return Ok(());
        }
        let handle = self.handle.clone();
        block(&handle, self.apply(ops))
    }

    fn size_bytes(&self) -> u64 {
        self.sizes.iter().map(|(k, v)| (k.len() + v) as u64).sum()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMeta {
    epoch: u64,
    origin_unix_ms: u64,
    recoveries: u64,
}

/// One write of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeletePrefix(Vec<u8>),
}

impl Op {
    fn bytes(&self) -> usize {
        // Keys, values and a little framing.
        16 + match self {
            Op::Put(k, v) => k.len() + v.len(),
            Op::Delete(k) | Op::DeletePrefix(k) => 2 * k.len(),
        }
    }

    fn request(self) -> RequestOp {
        let request = match self {
            Op::Put(key, value) => request_op::Request::RequestPut(PutRequest {
                key,
                value,
                ..PutRequest::default()
            }),
            Op::Delete(key) => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key,
                ..DeleteRangeRequest::default()
            }),
            Op::DeletePrefix(prefix) => {
                request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    range_end: super::etcd::prefix_end(&prefix),
                    key: prefix,
                    ..DeleteRangeRequest::default()
                })
            }
        };
        RequestOp {
            request: Some(request),
        }
    }
}

/// `ops` in transactions within etcd's default limits, in order.
fn split(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut out: Vec<Vec<Op>> = Vec::new();
    let mut bytes = 0;
    for op in ops {
        let size = op.bytes();
        match out.last_mut() {
            Some(txn) if txn.len() < MAX_OPS && bytes + size <= MAX_BYTES => {
                bytes += size;
                txn.push(op);
            }
            _ => {
                bytes = size;
                out.push(vec![op]);
            }
        }
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or("truncated")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// A chunk's value: (index, length, bytes) per record.
fn join_records(records: &BTreeMap<u32, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.values().map(|r| r.len() + 4).sum());
    for (i, r) in records {
        put_varint(&mut out, u64::from(*i));
        put_varint(&mut out, r.len() as u64);
        out.extend_from_slice(r);
    }
    out
}

fn split_records(bytes: &[u8]) -> Result<BTreeMap<u32, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let mut at = 0;
    while at < bytes.len() {
        let i = u32::try_from(get_varint(bytes, &mut at)?).map_err(|_| "index too large")?;
        let len = get_varint(bytes, &mut at)? as usize;
        let end = at
            .checked_add(len)
            .filter(|e| *e <= bytes.len())
            .ok_or("truncated")?;
        out.insert(i, bytes[at..end].to_vec());
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_round_trips_and_a_truncated_one_is_refused() {
        let mut records = BTreeMap::new();
        records.insert(3, vec![1, 2, 3]);
        records.insert(1000, vec![0; 300]);
        let bytes = join_records(&records);
        assert_eq!(split_records(&bytes).unwrap(), records);
        assert!(split_records(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn transactions_stay_within_etcds_operation_and_byte_limits_in_order() {
        let ops: Vec<Op> = (0..300)
            .map(|i| Op::Put(format!("k{i:04}").into_bytes(), vec![0; 20_000]))
            .collect();
        let txns = split(ops.clone());
        assert!(txns.iter().all(|t| t.len() <= MAX_OPS));
        assert!(
            txns.iter()
                .all(|t| t.iter().map(Op::bytes).sum::<usize>() <= MAX_BYTES)
        );
        assert_eq!(txns.concat(), ops, "every op once, in order");
        let small: Vec<Op> = (0..10).map(|i| Op::Delete(vec![i])).collect();
        assert_eq!(split(small).len(), 1);
    }
}
