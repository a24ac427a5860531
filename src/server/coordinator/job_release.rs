//! Telling executors that a job ended, so they remove its folders (attempt logs, descriptors,
//! blocking partitions): one `ReleaseJob` to every registered executor once the core reports
//! a terminal job state, queued after the job's last partition releases.
//!
//! Every registered executor, not only those the core remembers running the job: the core
//! keeps a bounded attempt history, and after a JobMaster restart it did not deploy adopted
//! attempts itself. An executor without the job's folders does nothing; one that is not
//! registered now (lost, restarting) keeps them.

use super::Coordinator;
use crate::core::{JobId, Notice};
use crate::server::dispatcher::Order;

impl Coordinator {
    /// The job a notice says ended, if it does.
    pub(super) fn ended_job(notice: &Notice) -> Option<JobId> {
        match notice {
            Notice::JobState { job, state, .. } if state.is_terminal() => Some(*job),
            _ => None,
        }
    }

    /// Queues a `ReleaseJob` of `job` for every registered executor.
    pub(super) fn release_job(&mut self, job: JobId) {
        let executors: Vec<_> = self.dispatchers.keys().cloned().collect();
        // A job that checkpointed: its checkpoints go too (nothing restarts from them).
        let checkpoints = self.checkpoint_storage(job);
        for executor in executors {
            self.order(
                &executor,
                Order::ReleaseJob {
                    job: job.to_string(),
                    checkpoints: checkpoints.clone(),
                },
            );
        }
    }
}
