//! The coordinator's side of persistence: a restarted JobMaster rebuilt from its store, and
//! one commit per turn — the core's changes (and new jobs' specs) are on disk before the
//! turn's orders leave and before its callers hear back (write-ahead, group commit).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::info;

use super::Coordinator;
use crate::core::{CoreConfig, JobId, JobMaster, JobSpec, SpecFormat, SpecLimits};
use crate::server::committer::Submitted;
use crate::server::{ServeError, Shared};
use crate::store::{Batch, LoadedJob, Store, StoreError};

impl Coordinator {
    /// The coordinator of a JobMaster started on `store`, holding the `loaded` jobs: ended
    /// ones as they were, the others RECONCILING until their executors report back.
    pub(crate) fn restore(
        config: CoreConfig,
        loaded: Vec<LoadedJob>,
        store: Box<dyn Store>,
        shared: Arc<Shared>,
    ) -> Result<Coordinator, ServeError> {
        let now = shared.now();
        let mut specs = Vec::with_capacity(loaded.len());
        let mut stored = Vec::with_capacity(loaded.len());
        for job in loaded {
            let id = job.record.id;
            // Accepted once: today's limits (which may be lower) do not apply again.
            let spec =
                JobSpec::parse_with_limits(&job.spec_json, SpecFormat::Json, SpecLimits::NONE)
                    .map_err(|e| StoreError::Corrupt {
                        file: Default::default(),
                        message: format!("the spec of job {id} does not parse: {e}"),
                    })?;
            specs.push((id, Arc::new(spec.clone())));
            stored.push(crate::core::StoredJob {
                spec,
                record: job.record,
                tasks: job.tasks,
                partitions: job.partitions,
            });
        }
        let timeout = shared.settings.recovery.reconcile_timeout.as_millis() as u64;
        let (core, commands) = JobMaster::restore(config, stored, now, timeout)?;
        let mut c = Coordinator::new(core, shared.clone(), store);
        let jobs = specs.len();
        let started = Instant::now();
        for (id, spec) in specs {
            let tasks: u64 = spec.vertices.iter().map(|v| u64::from(v.parallelism)).sum();
            c.specs.insert(id, spec);
            c.retention.added(id, tasks);
            c.views.add(&c.core, id, now);
            if let Some(&(state, at)) = c.core.job_transitions(id).and_then(|t| t.last())
                && state.is_terminal()
            {
                let age = Duration::from_millis(now.saturating_sub(at));
                c.retention.ended(
                    id,
                    Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
                );
                c.metrics.job_ended(id);
            }
            let _ = c.metrics.job(id);
            let span = tracing::info_span!("job", job = %id);
            c.job_spans.insert(id, span);
        }
        c.carry_out(commands);
        let reconciling = c.core.reconciling();
        shared.reconciling.store(reconciling, Ordering::Relaxed);
        if jobs > 0 {
            info!(jobs, reconciling, timeout = ?shared.settings.recovery.reconcile_timeout,
                  "jobs loaded from the store; waiting for executors to report what they run");
            c.recovering = Some(started);
        }
        Ok(c)
    }

    /// Sends the turn's decisions to the store. Returns the commit whose end the turn's
    /// orders and answers wait for: its own, or the last one submitted before (nothing of a
    /// turn may overtake an earlier one).
    pub(super) fn commit(&mut self) -> Result<u64, StoreError> {
        // Without `store.fsync` only the once-a-second flush waits for the disk.
        let sync = (std::mem::take(&mut self.sync) && self.shared.settings.store.fsync)
            || std::mem::take(&mut self.flush_due);
        let batch = Batch {
            meta: None,
            specs: std::mem::take(&mut self.new_specs),
            changes: self.core.take_changes(),
            sync,
        };
        if batch.is_empty() && !(sync && self.unsynced) {
            return Ok(self.committer.submitted());
        }
        self.unsynced = !sync;
        match self.committer.submit(batch)? {
            Submitted::Done(n) => {
                self.committed = n;
                Ok(n)
            }
            Submitted::Pending(n) => Ok(n),
        }
    }

    /// After a turn: when the restarted JobMaster has finished reconciling, say so once.
    pub(super) fn note_reconciled(&mut self) {
        let Some(started) = self.recovering else {
            return;
        };
        if self.core.reconciling() {
            return;
        }
        self.recovering = None;
        self.shared.reconciling.store(false, Ordering::Relaxed);
        let took = started.elapsed();
        self.metrics.reconciliation.observe(took.as_secs_f64());
        let (adopted, jobs) = self.adopted_totals();
        info!(took = ?took, adopted, jobs, "reconciliation over");
    }

    /// Attempts adopted over all jobs, and the jobs.
    fn adopted_totals(&self) -> (u64, usize) {
        let jobs: Vec<JobId> = self.specs.keys().copied().collect();
        let adopted = jobs
            .iter()
            .filter_map(|j| self.core.counters(*j))
            .map(|c| c.adopted)
            .sum();
        (adopted, jobs.len())
    }
}
