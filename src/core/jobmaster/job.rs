//! A job's runtime state ([`Job`], [`Task`]) and the bookkeeping on one job that needs no
//! other part of the JobMaster: job and attempt state transitions (each with its notice),
//! partition hosts and readiness, restart sets, released partitions, region downtime.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::durable::Dirty;
use super::{Counters, Executor, PartitionHost, TaskView};
use crate::core::attempt::{AttemptId, AttemptLog, AttemptState};
use crate::core::event::{Command, Notice, TimerId};
use crate::core::graph::{ExecutionGraph, PartitionId, TaskId};
use crate::core::history::ExceptionHistory;
use crate::core::job_state::{JobState, JobStateLog};
use crate::core::placement::PlacementPolicy;
use crate::core::readiness::Readiness;
use crate::core::region::{RegionId, Regions};
use crate::core::restart::RestartBackoff;
use crate::core::restart_budget::RegionRestarts;
use crate::core::restart_set::{RestartSet, compute_restart_set_live};
use crate::core::spec::FailoverStrategy;
use crate::core::{ExecutorId, JobId, Millis};

/// One task of a job: its current attempt and what the core remembers about earlier ones.
pub(crate) struct Task {
    pub(crate) attempt: u32,
    pub(crate) log: AttemptLog,
    pub(crate) executor: Option<ExecutorId>,
    /// Bumped by every restart decision that includes the task.
    pub(crate) version: u64,
    /// The executor of the task's last failure, avoided by its redeploy when possible; cleared
    /// once a new attempt runs (later placements need not avoid it any more).
    pub(crate) avoid: Option<ExecutorId>,
    /// A pending restart will replace the current attempt (even a FINISHED one).
    pub(crate) awaiting_restart: bool,
    /// The current attempt was listed in a heartbeat of its executor.
    pub(crate) seen: bool,
    /// Heartbeats of its executor that did not list the current attempt while it was
    /// initializing, running or canceling, before it was ever listed.
    pub(crate) unseen: u8,
    /// Earlier attempts: (attempt, its log, executor).
    pub(crate) previous: VecDeque<(u32, AttemptLog, Option<ExecutorId>)>,
    /// While RECONCILING: the attempt is to stop (it was being cancelled when the JobMaster
    /// stopped, or a failover or cancel came since): adopted, it is cancelled at once.
    pub(crate) reconcile_stop: bool,
}

impl Task {
    /// A task whose first attempt was CREATED at `now`.
    pub(crate) fn new(now: Millis) -> Task {
        Task {
            attempt: 0,
            log: AttemptLog::new(now),
            executor: None,
            version: 0,
            avoid: None,
            awaiting_restart: false,
            seen: false,
            unseen: 0,
            previous: VecDeque::new(),
            reconcile_stop: false,
        }
    }
}

/// A job a restarted JobMaster loaded, until reconciliation with the executors ends.
pub(crate) struct Recovery {
    /// The state the job goes back to (`None`: it was winding down and stays so).
    pub(crate) resume: Option<JobState>,
    /// Partitions recorded on executors that have not re-registered with them yet.
    pub(crate) unconfirmed: BTreeSet<PartitionId>,
    /// Tasks whose executor re-registered without them: failed, waiting for the job's one
    /// failover at the end of reconciliation.
    pub(crate) failed: Vec<(TaskId, Option<ExecutorId>)>,
    /// Partitions found gone that consumers still need.
    pub(crate) lost: Vec<PartitionId>,
}

/// A failover decision waiting for its tasks to stop and its backoff to pass.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingRestart {
    pub(crate) ready_at: Millis,
    pub(crate) tasks: Vec<(TaskId, u64)>,
}

/// A job's runtime state: attempts, partitions, pending restarts, exception history, counters.
pub(crate) struct Job {
    pub(crate) id: JobId,
    pub(crate) graph: ExecutionGraph,
    pub(crate) regions: Regions,
    pub(crate) failover: FailoverStrategy,
    /// How its regions are placed (the spec's, else the configured policy).
    pub(crate) placement: PlacementPolicy,
    /// The label key its regions are kept inside, if any (the spec's, else the configured).
    pub(crate) placement_domain: Option<String>,
    pub(crate) state: JobStateLog,
    pub(crate) cause: Option<String>,
    pub(crate) tasks: Vec<Task>,
    pub(crate) hosts: Vec<PartitionHost>,
    pub(crate) readiness: Readiness,
    /// Per region: tasks waiting to be scheduled (CREATED, current attempt).
    pub(crate) pending: Vec<BTreeSet<TaskId>>,
    /// Per region: ticket while queued for slots.
    pub(crate) queued: Vec<Option<(u64, TimerId)>>,
    pub(crate) backoff: RestartBackoff,
    pub(crate) restarts: BTreeMap<u64, PendingRestart>,
    pub(crate) next_restart: u64,
    pub(crate) history: ExceptionHistory,
    pub(crate) counters: Counters,
    /// Per region: when a failover stopped it, until it runs again.
    pub(crate) down_since: Vec<Option<Millis>>,
    /// Recent restarts per region, against the restart budget.
    pub(crate) region_restarts: RegionRestarts,
    /// Tasks whose current attempt finished.
    pub(crate) finished: usize,
    /// Tasks whose current attempt is not terminal.
    pub(crate) live: usize,
    /// What changed since the store last took the job's changes.
    pub(crate) dirty: Dirty,
    /// Set while a restarted JobMaster reconciles the job with its executors.
    pub(crate) recovery: Option<Recovery>,
    /// The job's checkpointing, if its spec has a `[checkpoint]` table.
    pub(crate) checkpoints: Option<super::checkpoints::JobCheckpoints>,
}

impl Job {
    /// The restart set for `failed` and `lost` under the job's strategy, with live
    /// availability; partitions on `gone` count as unavailable.
    pub(crate) fn restart_set(
        &self,
        failed: &[TaskId],
        lost: &[PartitionId],
        gone: &[ExecutorId],
    ) -> RestartSet {
        compute_restart_set_live(
            &self.graph,
            &self.regions,
            self.failover,
            failed,
            lost,
            |p| match &self.hosts[p.0 as usize] {
                PartitionHost::Unavailable => false,
                PartitionHost::Executor(e) => !gone.contains(e),
                PartitionHost::Persistent => true,
            },
            |t| self.tasks[t.index()].log.state() != AttemptState::Created,
        )
    }

    pub(crate) fn task_view(&self, t: TaskId) -> TaskView {
        let task = &self.tasks[t.index()];
        TaskView {
            task: t,
            name: self.graph.task_name(t).to_string(),
            attempt: task.attempt,
            state: task.log.state(),
            executor: task.executor.clone(),
            region: self.regions.region_of(t),
            transitions: task.log.transitions().to_vec(),
        }
    }

    /// Moves the job to `to` and tells watchers: one [`Notice::JobState`] carrying `cause`.
    ///
    /// The core only asks for transitions that are legal by construction, so an illegal one is
    /// a bug, never dropped silently: debug builds panic; release builds leave the state
    /// unchanged and report the refusal in a [`Notice::InternalError`] (the core does no
    /// logging; the shell logs it at error level, the simulator records it in its timeline).
    pub(crate) fn set_state(
        &mut self,
        to: JobState,
        now: Millis,
        cause: Option<String>,
        out: &mut Vec<Command>,
    ) {
        self.dirty.job = true;
        let from = self.state.state();
        debug_assert!(
            from.can_become(to),
            "job {}: illegal job transition {from} -> {to}",
            self.id
        );
        let notice = match self.state.transition(to, now) {
            Ok(()) => Notice::JobState {
                job: self.id,
                state: to,
                cause,
            },
            Err(illegal) => Notice::InternalError {
                job: self.id,
                message: format!("{illegal} refused; the job stays {from}"),
            },
        };
        out.push(Command::Notify(notice));
    }

    /// Applies a transition the core itself decided; they are legal by construction, and an
    /// illegal one is dropped rather than corrupting the state.
    pub(crate) fn set_attempt_state(
        &mut self,
        t: TaskId,
        state: AttemptState,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        self.dirty.tasks.insert(t);
        let task = &mut self.tasks[t.index()];
        let was_terminal = task.log.state().is_terminal();
        if task.log.transition(state, now).is_ok() {
            if !was_terminal && state.is_terminal() {
                self.live -= 1;
            }
            if state == AttemptState::Running {
                task.avoid = None;
            }
            out.push(Command::Notify(Notice::TaskState {
                attempt: AttemptId {
                    job: self.id,
                    task: t,
                    attempt: task.attempt,
                },
                state,
                executor: task.executor.clone(),
            }));
        }
    }

    /// Can the waiting tasks of region `r` start? When the whole region waits, its external
    /// inputs must all be available (the counters say so in O(1)). When only some of its tasks
    /// wait (the `individual` strategy restarts single tasks), only *their* external inputs
    /// count: a finished region-mate's lost input must not hold them back.
    pub(crate) fn pending_ready(&self, r: RegionId) -> bool {
        if self.readiness.is_ready(r) {
            return true;
        }
        let pending = &self.pending[r.index()];
        if pending.len() == self.regions.tasks(r).len() {
            return false;
        }
        pending.iter().all(|&t| {
            self.graph.consumed_groups(t).all(|g| {
                let group = self.graph.group(g);
                !group.exchange.is_reconsumable()
                    || group.partitions_with_producers().all(|(p, producer)| {
                        self.regions.region_of(producer) == r
                            || self.hosts[p.0 as usize] != PartitionHost::Unavailable
                    })
            })
        })
    }

    /// Does any consumer of `p` still need it (not finished, or about to run again)?
    pub(crate) fn has_unfinished_consumer(&self, p: PartitionId) -> bool {
        let producer = self.graph.producer_of(p);
        let edge = self.graph.edge_of_partition(p);
        self.graph
            .produced_groups(producer)
            .map(|g| self.graph.group(g))
            .filter(|g| g.edge == edge)
            .any(|g| {
                g.consumer_tasks().any(|c| {
                    let t = &self.tasks[c.index()];
                    t.awaiting_restart || t.log.state() != AttemptState::Finished
                })
            })
    }

    /// Records where partition `p` lives and returns regions whose inputs just became ready.
    pub(crate) fn set_host(&mut self, p: PartitionId, host: PartitionHost) -> Vec<RegionId> {
        self.dirty.partitions.insert(p);
        let was = self.hosts[p.0 as usize] != PartitionHost::Unavailable;
        let now_available = host != PartitionHost::Unavailable;
        self.hosts[p.0 as usize] = host;
        if was == now_available || !self.graph.exchange_of(p).is_reconsumable() {
            return Vec::new();
        }
        self.readiness
            .partition_changed(&self.graph, &self.regions, p, now_available)
    }

    /// A region's tasks all run (or finished) again: close its downtime window.
    pub(crate) fn note_region_up(&mut self, r: RegionId, now: Millis) {
        let Some(since) = self.down_since[r.index()] else {
            return;
        };
        let up = self.regions.tasks(r).iter().all(|t| {
            matches!(
                self.tasks[t.index()].log.state(),
                AttemptState::Running | AttemptState::Finished
            )
        });
        if up {
            self.dirty.job = true;
            self.counters.region_downtime_ms[r.index()] += now.saturating_sub(since);
            self.down_since[r.index()] = None;
        }
    }

    /// Tells the shell to delete every partition the job still has (it reached a terminal
    /// state) and forgets where they were.
    pub(crate) fn release_all_partitions(
        &mut self,
        executors: &mut BTreeMap<ExecutorId, Executor>,
        out: &mut Vec<Command>,
    ) {
        let mut by_host: BTreeMap<Option<ExecutorId>, Vec<PartitionId>> = BTreeMap::new();
        for (i, host) in self.hosts.iter_mut().enumerate() {
            if *host != PartitionHost::Unavailable {
                self.dirty.partitions.insert(PartitionId(i as u32));
            }
            match std::mem::replace(host, PartitionHost::Unavailable) {
                PartitionHost::Unavailable => {}
                PartitionHost::Executor(e) => by_host
                    .entry(Some(e))
                    .or_default()
                    .push(PartitionId(i as u32)),
                PartitionHost::Persistent => {
                    by_host.entry(None).or_default().push(PartitionId(i as u32))
                }
            }
        }
        self.release(by_host, executors, out);
    }

    /// Forgets where released partitions were hosted and tells the shell to delete them.
    pub(crate) fn release(
        &self,
        by_host: BTreeMap<Option<ExecutorId>, Vec<PartitionId>>,
        executors: &mut BTreeMap<ExecutorId, Executor>,
        out: &mut Vec<Command>,
    ) {
        for (executor, partitions) in by_host {
            if let Some(e) = executor.as_ref().and_then(|e| executors.get_mut(e)) {
                for p in &partitions {
                    e.partitions.remove(&(self.id, *p));
                }
            }
            let attempts = partitions
                .iter()
                .map(|&p| self.tasks[self.graph.producer_of(p).index()].attempt)
                .collect();
            out.push(Command::ReleasePartitions {
                job: self.id,
                executor,
                partitions,
                attempts,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use crate::core::JobId;
    use crate::core::event::{Command, Event, Notice};
    use crate::core::job_state::JobState;
    use crate::core::jobmaster::{CoreConfig, JobMaster};
    use crate::core::spec::JobSpec;

    const JOB: JobId = JobId(1);

    fn one_task_spec() -> JobSpec {
        JobSpec::from_toml(
            r#"
name = "one"
[[vertices]]
id = "src"
parallelism = 1
command = ["x"]
"#,
        )
        .expect("valid spec")
    }

    /// A JobMaster with one submitted, hence RUNNING, job.
    fn running_job() -> JobMaster {
        let mut jm = JobMaster::new(CoreConfig::default());
        jm.handle(
            Event::SubmitJob {
                job: JOB,
                spec: one_task_spec(),
            },
            0,
        )
        .expect("submitted");
        jm
    }

    fn job_state_notices(out: &[Command]) -> Vec<&Notice> {
        out.iter()
            .filter_map(|c| match c {
                Command::Notify(n @ Notice::JobState { .. }) => Some(n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn submitting_a_job_emits_exactly_one_running_notice() {
        let spec = one_task_spec();
        let mut jm = JobMaster::new(CoreConfig::default());
        let out = jm
            .handle(Event::SubmitJob { job: JOB, spec }, 3)
            .expect("submitted");
        assert_eq!(
            job_state_notices(&out),
            [&Notice::JobState {
                job: JOB,
                state: JobState::Running,
                cause: None,
            }]
        );
        assert_eq!(
            jm.job_transitions(JOB),
            Some(&[(JobState::Created, 3), (JobState::Running, 3)][..])
        );
    }

    #[test]
    fn set_state_moves_the_job_and_emits_exactly_one_job_state_notice() {
        let mut jm = running_job();
        let job = jm.jobs.get_mut(&JOB).expect("submitted");
        let mut out = Vec::new();
        job.set_state(
            JobState::Cancelling,
            5,
            Some("operator".to_string()),
            &mut out,
        );
        assert_eq!(job.state.state(), JobState::Cancelling);
        assert_eq!(
            job.state.transitions().last(),
            Some(&(JobState::Cancelling, 5))
        );
        assert_eq!(
            out,
            [Command::Notify(Notice::JobState {
                job: JOB,
                state: JobState::Cancelling,
                cause: Some("operator".to_string()),
            })]
        );
    }

    /// Debug builds panic; release builds keep the state and say so in a notice. Either way
    /// the illegal transition is neither applied nor dropped silently.
    #[test]
    fn set_state_refuses_an_illegal_transition_loudly() {
        let mut jm = running_job();
        let job = jm.jobs.get_mut(&JOB).expect("submitted");
        let before = job.state.clone();
        let mut out = Vec::new();
        let result = catch_unwind(AssertUnwindSafe(|| {
            job.set_state(JobState::Canceled, 5, None, &mut out)
        }));
        assert_eq!(job.state, before, "state and transitions are unchanged");
        if cfg!(debug_assertions) {
            let panic = result.expect_err("debug builds panic");
            let message = panic.downcast_ref::<String>().expect("formatted message");
            assert!(
                message.contains("illegal job transition RUNNING -> CANCELED"),
                "{message}"
            );
            assert!(out.is_empty());
        } else {
            result.expect("release builds do not panic");
            assert_eq!(
                out,
                [Command::Notify(Notice::InternalError {
                    job: JOB,
                    message: "illegal job transition RUNNING -> CANCELED refused; \
                              the job stays RUNNING"
                        .to_string(),
                })]
            );
        }
    }
}
