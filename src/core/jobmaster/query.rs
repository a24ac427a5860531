//! Read-only queries on the JobMaster: job and task state, history, counters, partition
//! hosts, executors, and dry runs ("what would restart if ...").

use std::collections::BTreeMap;

use crate::core::attempt::AttemptState;
use crate::core::graph::{ExecutionGraph, PartitionId, TaskId};
use crate::core::history::ExceptionHistory;
use crate::core::job_state::JobState;
use crate::core::placement::PlacementPolicy;
use crate::core::quarantine::Quarantine;
use crate::core::region::Regions;
use crate::core::restart_set::RestartSet;
use crate::core::spec::FailoverStrategy;
use crate::core::{ExecutorId, JobId, Millis};

use super::{CoreConfig, Counters, JobMaster, PartitionHost, PastAttempt, TaskView};

impl JobMaster {
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn job_ids(&self) -> impl Iterator<Item = JobId> + '_ {
        self.jobs.keys().copied()
    }

    /// The job's name, or "" for an unknown job.
    pub fn job_name(&self, job: JobId) -> &str {
        self.jobs.get(&job).map_or("", |j| j.graph.name())
    }

    pub fn job_state(&self, job: JobId) -> Option<JobState> {
        self.jobs.get(&job).map(|j| j.state.state())
    }

    /// Why the job failed, when it did.
    pub fn job_cause(&self, job: JobId) -> Option<&str> {
        self.jobs.get(&job).and_then(|j| j.cause.as_deref())
    }

    pub fn job_transitions(&self, job: JobId) -> Option<&[(JobState, Millis)]> {
        self.jobs.get(&job).map(|j| j.state.transitions())
    }

    pub fn graph(&self, job: JobId) -> Option<&ExecutionGraph> {
        self.jobs.get(&job).map(|j| &j.graph)
    }

    /// The job's checkpoint coordinator; `None` for an unknown job or one without checkpoints.
    pub fn checkpoints(
        &self,
        job: JobId,
    ) -> Option<&crate::core::checkpoint::CheckpointCoordinator> {
        self.jobs
            .get(&job)
            .and_then(|j| j.checkpoints.as_ref())
            .map(|c| &c.coordinator)
    }

    pub fn regions(&self, job: JobId) -> Option<&Regions> {
        self.jobs.get(&job).map(|j| &j.regions)
    }

    pub fn failover_strategy(&self, job: JobId) -> Option<FailoverStrategy> {
        self.jobs.get(&job).map(|j| j.failover)
    }

    pub fn tasks(&self, job: JobId) -> Option<Vec<TaskView>> {
        let j = self.jobs.get(&job)?;
        Some(j.graph.tasks().map(|t| j.task_view(t)).collect())
    }

    /// A task's current attempt number and executor, without building a [`TaskView`] (for
    /// hot paths such as task descriptors).
    pub fn task_placement(&self, job: JobId, task: TaskId) -> Option<(u32, Option<&ExecutorId>)> {
        let t = self.jobs.get(&job)?.tasks.get(task.index())?;
        Some((t.attempt, t.executor.as_ref()))
    }

    /// A task's current attempt number, its state and executor, without building a
    /// [`TaskView`].
    pub fn task_status(
        &self,
        job: JobId,
        task: TaskId,
    ) -> Option<(u32, AttemptState, Option<&ExecutorId>)> {
        let t = self.jobs.get(&job)?.tasks.get(task.index())?;
        Some((t.attempt, t.log.state(), t.executor.as_ref()))
    }

    pub fn task(&self, job: JobId, task: TaskId) -> Option<TaskView> {
        let j = self.jobs.get(&job)?;
        (task.index() < j.tasks.len()).then(|| j.task_view(task))
    }

    /// Previous attempts of a task, oldest first (at most `attempt_history_size`).
    pub fn previous_attempts(&self, job: JobId, task: TaskId) -> Option<Vec<PastAttempt>> {
        let t = self.jobs.get(&job)?.tasks.get(task.index())?;
        Some(
            t.previous
                .iter()
                .map(|(attempt, log, executor)| PastAttempt {
                    attempt: *attempt,
                    transitions: log.transitions().to_vec(),
                    executor: executor.clone(),
                })
                .collect(),
        )
    }

    pub fn exception_history(&self, job: JobId) -> Option<&ExceptionHistory> {
        self.jobs.get(&job).map(|j| &j.history)
    }

    pub fn counters(&self, job: JobId) -> Option<&Counters> {
        self.jobs.get(&job).map(|j| &j.counters)
    }

    /// Per region: total downtime up to `now`, including a window still open.
    pub fn region_downtime_ms(&self, job: JobId, now: Millis) -> Option<Vec<Millis>> {
        let j = self.jobs.get(&job)?;
        Some(
            j.counters
                .region_downtime_ms
                .iter()
                .zip(&j.down_since)
                .map(|(&total, since)| total + since.map_or(0, |s| now.saturating_sub(s)))
                .collect(),
        )
    }

    /// Time the job spent RESTARTING up to `now`.
    pub fn restarting_ms(&self, job: JobId, now: Millis) -> Option<Millis> {
        self.jobs
            .get(&job)
            .map(|j| j.state.time_in(JobState::Restarting, now))
    }

    /// Is partition `p` of `job` available for consumers?
    pub fn partition_available(&self, job: JobId, p: PartitionId) -> Option<bool> {
        let j = self.jobs.get(&job)?;
        j.hosts
            .get(p.0 as usize)
            .map(|h| *h != PartitionHost::Unavailable)
    }

    /// Where partition `p` of `job` lives now.
    pub fn partition_host(&self, job: JobId, p: PartitionId) -> Option<&PartitionHost> {
        self.jobs.get(&job)?.hosts.get(p.0 as usize)
    }

    /// Dry run: the restart set if `task` failed now, from the job's live state.
    pub fn explain_task_failure(&self, job: JobId, task: TaskId) -> Option<RestartSet> {
        let j = self.jobs.get(&job)?;
        if task.index() >= j.tasks.len() {
            return None;
        }
        Some(j.restart_set(&[task], &[], &[]))
    }

    /// Dry run: the restart set if `executor` were lost now: its non-terminal attempts fail and
    /// its blocking partitions that unfinished consumers need are lost. `None` for an unknown
    /// job or executor.
    pub fn explain_executor_loss(&self, job: JobId, executor: &ExecutorId) -> Option<RestartSet> {
        self.explain_executors_loss(job, std::slice::from_ref(executor))
    }

    /// Dry run: the restart set if all of `executors` were lost at once (a failure domain):
    /// **one** failover over all their non-terminal attempts and all their blocking partitions
    /// that unfinished consumers need, as a real loss is. `None` for an unknown job or if any
    /// executor is not registered.
    pub fn explain_executors_loss(
        &self,
        job: JobId,
        executors: &[ExecutorId],
    ) -> Option<RestartSet> {
        let j = self.jobs.get(&job)?;
        let mut failed: Vec<TaskId> = Vec::new();
        let mut lost: Vec<PartitionId> = Vec::new();
        for executor in executors {
            let e = self.executors.get(executor)?;
            failed.extend(
                self.slots
                    .attempts(executor)?
                    .iter()
                    .filter(|a| a.job == job)
                    .map(|a| a.task)
                    .filter(|t| {
                        let s = j.tasks[t.index()].log.state();
                        !s.is_terminal() && s != AttemptState::Canceling
                    }),
            );
            lost.extend(
                e.partitions
                    .iter()
                    .filter(|(jid, p)| *jid == job && j.has_unfinished_consumer(*p))
                    .map(|(_, p)| *p),
            );
        }
        failed.sort_unstable();
        failed.dedup();
        lost.sort_unstable();
        lost.dedup();
        Some(j.restart_set(&failed, &lost, executors))
    }

    /// The executor's quarantine, if it is quarantined (registered or not).
    pub fn quarantine(&self, executor: &ExecutorId) -> Option<&Quarantine> {
        self.quarantines.get(executor)
    }

    /// Quarantined executors (registered or not), by id.
    pub fn quarantined_executors(&self) -> impl Iterator<Item = (&ExecutorId, &Quarantine)> + '_ {
        self.quarantines.quarantined()
    }

    /// The labels `executor` registered with, or `None` if it is not registered.
    pub fn executor_labels(&self, executor: &ExecutorId) -> Option<&BTreeMap<String, String>> {
        self.slots.labels(executor)
    }

    /// The placement policy and domain key of a job.
    pub fn job_placement(&self, job: JobId) -> Option<(PlacementPolicy, Option<&str>)> {
        let j = self.jobs.get(&job)?;
        Some((j.placement, j.placement_domain.as_deref()))
    }

    /// Registered executors with (slots, free slots, hosted partitions).
    pub fn executors(&self) -> impl Iterator<Item = (&ExecutorId, u32, u32, usize)> + '_ {
        self.slots.executors().map(|(id, slots, free)| {
            let partitions = self.executors.get(id).map_or(0, |e| e.partitions.len());
            (id, slots, free, partitions)
        })
    }
}
