//! The simulation engine: the real JobMaster core driven by virtual executors and a virtual
//! clock, every step ordered by (time, sequence number).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::report::{
    CheckpointReport, FailureReplay, FinalRegion, FinalState, FinalTask, SimEvent, SimReport,
};
use super::scenario::{FaultKind, RunTime, Scenario};
use crate::core::{
    AttemptId, AttemptState, CheckpointId, Command, Event, ExecutorId, Failure, JobId, JobMaster,
    Labels, Millis, Notice, TaskId, TimerId,
};

#[derive(Debug, Clone)]
enum Item {
    Fault(usize),
    Timer(TimerId),
    /// A virtual executor reports on an attempt it runs.
    Report {
        executor: ExecutorId,
        attempt: AttemptId,
        state: AttemptState,
    },
    /// A virtual executor finishes cancelling an attempt.
    CancelDone {
        executor: ExecutorId,
        attempt: AttemptId,
    },
    /// The deploy RPC to a dead executor fails.
    DeployFailed {
        executor: ExecutorId,
        attempt: AttemptId,
    },
    /// The JobMaster notices a dead executor (this incarnation of it).
    Detect(ExecutorId, u64),
    /// A virtual executor acknowledges a checkpoint trigger for an attempt it runs.
    CheckpointAck {
        executor: ExecutorId,
        attempt: AttemptId,
        checkpoint: CheckpointId,
    },
    /// The virtual store wrote a checkpoint's metadata.
    CheckpointPersisted(CheckpointId),
}

/// A failover whose restarted tasks' replay is being measured, as they are redeployed.
struct Replay {
    t_ms: Millis,
    cause: String,
    tasks: usize,
    restored_from: Option<CheckpointId>,
    replay_ms: Millis,
}

struct VirtualExecutor {
    alive: bool,
    running: BTreeSet<AttemptId>,
    /// Bumped when the id registers again: a late detection of an earlier incarnation's death
    /// must not take the new one down (the new registration already fenced the old session).
    incarnation: u64,
    /// Its failure-domain labels (the core has them too, for placement), for `lose-domain`.
    labels: Labels,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    core: JobMaster,
    job: JobId,
    queue: BTreeMap<(Millis, u64), Item>,
    seq: u64,
    /// Where each set timer sits in `queue`, so a cancelled one can be taken out.
    timers: HashMap<TimerId, (Millis, u64)>,
    executors: BTreeMap<ExecutorId, VirtualExecutor>,
    events: Vec<SimEvent>,
    record: bool,
    /// Trigger time of every checkpoint triggered.
    triggered: BTreeMap<CheckpointId, Millis>,
    completed: u64,
    aborted: u64,
    /// Per failover, in order.
    replays: Vec<Replay>,
    /// Tasks restarted and not redeployed yet: the failover (index in `replays`) they belong to.
    awaiting_redeploy: HashMap<TaskId, usize>,
}

/// Runs a scenario. With `record_events` false only the final state is kept (for big runs).
pub fn simulate(scenario: &Scenario, record_events: bool) -> SimReport {
    let mut sim = Sim {
        scenario,
        core: JobMaster::new(scenario.core.clone()),
        job: JobId(1),
        queue: BTreeMap::new(),
        seq: 0,
        timers: HashMap::new(),
        executors: BTreeMap::new(),
        events: Vec::new(),
        record: record_events,
        triggered: BTreeMap::new(),
        completed: 0,
        aborted: 0,
        replays: Vec::new(),
        awaiting_redeploy: HashMap::new(),
    };
    for (id, slots, labels) in &scenario.executors {
        sim.executors.insert(
            id.clone(),
            VirtualExecutor {
                alive: true,
                running: BTreeSet::new(),
                incarnation: 0,
                labels: labels.clone(),
            },
        );
        sim.feed(
            Event::ExecutorRegistered {
                executor: id.clone(),
                slots: *slots,
                labels: labels.clone(),
                holds: Default::default(),
            },
            0,
        );
    }
    sim.feed(
        Event::SubmitJob {
            job: sim.job,
            spec: scenario.spec.clone(),
        },
        0,
    );
    for (i, f) in scenario.faults.iter().enumerate() {
        sim.push(f.at, Item::Fault(i));
    }
    while let Some(entry) = sim.queue.first_entry() {
        let (now, _) = *entry.key();
        if now > scenario.until {
            break;
        }
        let item = entry.remove();
        sim.step(item, now);
    }
    let final_state = sim.final_state();
    let checkpoints = sim.checkpoint_report();
    SimReport {
        events: sim.events,
        final_state,
        checkpoints,
    }
}

impl Sim<'_> {
    fn push(&mut self, at: Millis, item: Item) {
        self.queue.insert((at, self.seq), item);
        self.seq += 1;
    }

    fn log(&mut self, event: SimEvent) {
        if self.record {
            self.events.push(event);
        }
    }

    fn task_name(&self, t: TaskId) -> String {
        self.core
            .graph(self.job)
            .map(|g| g.task_name(t).to_string())
            .unwrap_or_default()
    }

    fn feed(&mut self, event: Event, now: Millis) {
        match self.core.handle(event, now) {
            Ok(commands) => self.carry_out(commands, now),
            Err(rejected) => {
                let mut e = SimEvent::new(now, "rejected");
                e.detail = Some(rejected.error.to_string());
                self.log(e);
                self.carry_out(rejected.commands, now);
            }
        }
    }

    fn carry_out(&mut self, commands: Vec<Command>, now: Millis) {
        for command in commands {
            match command {
                Command::SetTimer { timer, at } => {
                    let key = (at.max(now), self.seq);
                    self.timers.insert(timer, key);
                    self.push(key.0, Item::Timer(timer));
                }
                Command::CancelTimer { timer } => {
                    if let Some(key) = self.timers.remove(&timer) {
                        self.queue.remove(&key);
                    }
                }
                Command::Deploy {
                    attempt,
                    executor,
                    restore,
                } => {
                    let mut e = SimEvent::new(now, "deploy");
                    e.task = Some(self.task_name(attempt.task));
                    e.attempt = Some(attempt.attempt);
                    e.executor = Some(executor.0.clone());
                    if let Some(id) = restore {
                        e.detail = Some(format!("restores {id}"));
                    }
                    self.log(e);
                    self.redeployed(attempt.task, restore);
                    let vertex = self
                        .core
                        .graph(self.job)
                        .map(|g| g.vertex_of(attempt.task).0 as usize)
                        .unwrap_or(0);
                    let runtime = self.scenario.runtime[vertex];
                    let deploy = self.scenario.deploy_latency;
                    match self.executors.get_mut(&executor) {
                        Some(vx) if vx.alive => {
                            vx.running.insert(attempt);
                            self.push(
                                now + deploy,
                                Item::Report {
                                    executor: executor.clone(),
                                    attempt,
                                    state: AttemptState::Running,
                                },
                            );
                            if let RunTime::For(ms) = runtime {
                                self.push(
                                    now + deploy + ms,
                                    Item::Report {
                                        executor,
                                        attempt,
                                        state: AttemptState::Finished,
                                    },
                                );
                            }
                        }
                        _ => self.push(now + deploy, Item::DeployFailed { executor, attempt }),
                    }
                }
                Command::Cancel { attempt, executor } => {
                    let mut e = SimEvent::new(now, "cancel");
                    e.task = Some(self.task_name(attempt.task));
                    e.attempt = Some(attempt.attempt);
                    e.executor = Some(executor.0.clone());
                    self.log(e);
                    if self.executors.get(&executor).is_some_and(|vx| vx.alive) {
                        self.push(
                            now + self.scenario.cancel_latency,
                            Item::CancelDone { executor, attempt },
                        );
                    }
                }
                Command::ReleasePartitions {
                    executor,
                    partitions,
                    ..
                } => {
                    let mut e = SimEvent::new(now, "release-partitions");
                    e.executor = executor.map(|x| x.0);
                    if let Some(g) = self.core.graph(self.job) {
                        e.partitions =
                            Some(partitions.iter().map(|p| g.partition_name(*p)).collect());
                    }
                    self.log(e);
                }
                Command::TriggerCheckpoint {
                    checkpoint,
                    attempts,
                    ..
                } => {
                    self.triggered.insert(checkpoint, now);
                    let mut e = SimEvent::new(now, "checkpoint-triggered");
                    e.detail = Some(format!("{checkpoint}: {} tasks", attempts.len()));
                    self.log(e);
                    for (attempt, executor) in attempts {
                        let vertex = self
                            .core
                            .graph(self.job)
                            .map(|g| g.vertex_of(attempt.task).0 as usize)
                            .unwrap_or(0);
                        let latency = self.scenario.checkpoint_ack.get(vertex).copied();
                        self.push(
                            now + latency.unwrap_or(0),
                            Item::CheckpointAck {
                                executor,
                                attempt,
                                checkpoint,
                            },
                        );
                    }
                }
                Command::PersistCheckpoint { checkpoint, .. } => {
                    self.push(now, Item::CheckpointPersisted(checkpoint.id));
                }
                Command::NotifyCheckpoint {
                    checkpoint,
                    complete,
                    ..
                } => {
                    let kind = if complete {
                        self.completed += 1;
                        "checkpoint-completed"
                    } else {
                        self.aborted += 1;
                        "checkpoint-aborted"
                    };
                    let mut e = SimEvent::new(now, kind);
                    e.detail = Some(checkpoint.to_string());
                    self.log(e);
                }
                Command::DiscardCheckpoints { .. } => {}
                Command::Notify(notice) => {
                    if let Notice::RestartScheduled { tasks, cause, .. } = &notice {
                        self.restart_scheduled(tasks, cause, now);
                    }
                    self.notice(notice, now)
                }
            }
        }
    }

    /// A failover restarts `tasks`: their replay is measured when they are redeployed.
    fn restart_scheduled(&mut self, tasks: &[TaskId], cause: &str, now: Millis) {
        if self.scenario.spec.checkpoint.is_none() {
            return;
        }
        let index = self.replays.len();
        self.replays.push(Replay {
            t_ms: now,
            cause: cause.to_owned(),
            tasks: 0,
            restored_from: None,
            replay_ms: 0,
        });
        for &t in tasks {
            self.awaiting_redeploy.insert(t, index);
        }
    }

    /// A restarted task is deployed again, restoring from `restore`.
    fn redeployed(&mut self, task: TaskId, restore: Option<CheckpointId>) {
        let Some(index) = self.awaiting_redeploy.remove(&task) else {
            return;
        };
        let since = restore
            .and_then(|id| self.triggered.get(&id).copied())
            .unwrap_or(0);
        if let Some(r) = self.replays.get_mut(index) {
            let replay = r.t_ms.saturating_sub(since);
            if r.tasks == 0 || replay > r.replay_ms {
                r.replay_ms = replay;
                r.restored_from = restore;
            }
            r.tasks += 1;
        }
    }

    fn checkpoint_report(&self) -> Option<CheckpointReport> {
        let config = self.scenario.spec.checkpoint.as_ref()?;
        let failures: Vec<FailureReplay> = self
            .replays
            .iter()
            .filter(|r| r.tasks > 0)
            .map(|r| FailureReplay {
                t_ms: r.t_ms,
                cause: r.cause.clone(),
                tasks: r.tasks,
                restored_from: r.restored_from.map(|id| id.0),
                replay_ms: r.replay_ms,
            })
            .collect();
        let total: Millis = failures.iter().map(|f| f.replay_ms).sum();
        let mean = total.checked_div(failures.len() as Millis).unwrap_or(0);
        let max = failures.iter().map(|f| f.replay_ms).max().unwrap_or(0);
        Some(CheckpointReport {
            interval_ms: u64::try_from(config.interval.as_millis()).unwrap_or(u64::MAX),
            triggered: self.triggered.len() as u64,
            completed: self.completed,
            aborted: self.aborted,
            failures,
            mean_replay_ms: mean,
            max_replay_ms: max,
        })
    }

    fn notice(&mut self, notice: Notice, now: Millis) {
        if !self.record {
            return;
        }
        let mut e = SimEvent::new(now, notice.kind());
        match notice {
            Notice::JobState { state, cause, .. } => {
                e.state = Some(state.name());
                e.detail = cause;
            }
            Notice::TaskState {
                attempt,
                state,
                executor,
            } => {
                e.task = Some(self.task_name(attempt.task));
                e.attempt = Some(attempt.attempt);
                e.state = Some(state.name());
                e.executor = executor.map(|x| x.0);
            }
            Notice::RestartScheduled {
                tasks,
                delay_ms,
                merged,
                cause,
                ..
            } => {
                e.tasks = Some(tasks.iter().map(|t| self.task_name(*t)).collect());
                e.delay_ms = Some(delay_ms);
                e.merged = Some(merged);
                e.detail = Some(cause);
            }
            Notice::ExecutorRegistered { executor, slots } => {
                e.executor = Some(executor.0);
                e.slots = Some(slots);
            }
            Notice::ExecutorLost { executor, reason } => {
                e.executor = Some(executor.0);
                e.detail = Some(reason);
            }
            Notice::ExecutorQuarantined {
                executor,
                until,
                reason,
            } => {
                e.executor = Some(executor.0);
                e.detail = Some(format!("{reason}; until t={until}ms"));
            }
            Notice::ExecutorReleased { executor, reason }
            | Notice::QuarantineSkipped { executor, reason } => {
                e.executor = Some(executor.0);
                e.detail = Some(reason);
            }
            Notice::InternalError { message, .. } => e.detail = Some(message),
        }
        self.events.push(e);
    }

    fn step(&mut self, item: Item, now: Millis) {
        match item {
            Item::Timer(timer) => {
                self.timers.remove(&timer);
                self.feed(Event::TimerFired { timer }, now)
            }
            Item::Report {
                executor,
                attempt,
                state,
            } => {
                let running = self
                    .executors
                    .get_mut(&executor)
                    .filter(|vx| vx.alive)
                    .map(|vx| {
                        if state.is_terminal() {
                            vx.running.remove(&attempt)
                        } else {
                            vx.running.contains(&attempt)
                        }
                    })
                    .unwrap_or(false);
                if running {
                    self.feed(
                        Event::TaskStateChanged {
                            executor,
                            attempt,
                            state,
                            failure: None,
                        },
                        now,
                    );
                }
            }
            Item::CancelDone { executor, attempt } => {
                let was_running = self
                    .executors
                    .get_mut(&executor)
                    .filter(|vx| vx.alive)
                    .is_some_and(|vx| vx.running.remove(&attempt));
                if was_running {
                    self.feed(
                        Event::TaskStateChanged {
                            executor,
                            attempt,
                            state: AttemptState::Canceled,
                            failure: None,
                        },
                        now,
                    );
                }
            }
            Item::DeployFailed { executor, attempt } => self.feed(
                Event::TaskStateChanged {
                    failure: Some(Failure::recoverable(format!(
                        "deploy to executor {executor} failed: unreachable"
                    ))),
                    executor,
                    attempt,
                    state: AttemptState::Failed,
                },
                now,
            ),
            Item::Detect(executor, incarnation) => {
                let current = self
                    .executors
                    .get(&executor)
                    .is_some_and(|vx| vx.incarnation == incarnation);
                if current {
                    self.feed(
                        Event::ExecutorLost {
                            executor,
                            reason: "lost in the scenario".into(),
                        },
                        now,
                    );
                }
            }
            Item::Fault(i) => self.fault(i, now),
            Item::CheckpointAck {
                executor,
                attempt,
                checkpoint,
            } => {
                let running = self
                    .executors
                    .get(&executor)
                    .is_some_and(|vx| vx.alive && vx.running.contains(&attempt));
                if running {
                    self.feed(
                        Event::CheckpointAcknowledged {
                            attempt,
                            checkpoint,
                            size_bytes: 0,
                        },
                        now,
                    );
                }
            }
            Item::CheckpointPersisted(checkpoint) => self.feed(
                Event::CheckpointPersisted {
                    job: self.job,
                    checkpoint,
                },
                now,
            ),
        }
    }

    fn fault(&mut self, i: usize, now: Millis) {
        let fault = self.scenario.faults[i].clone();
        let mut e = SimEvent::new(now, "fault");
        match fault.kind {
            FaultKind::FailTask { task, failure } => {
                e.detail = Some(format!("fail-task ({})", failure.class));
                e.task = Some(self.task_name(task));
                let view = self.core.task(self.job, task);
                let running_on = view.as_ref().and_then(|v| {
                    let executor = v.executor.clone()?;
                    let attempt = AttemptId {
                        job: self.job,
                        task,
                        attempt: v.attempt,
                    };
                    let vx = self.executors.get_mut(&executor)?;
                    (vx.alive && vx.running.remove(&attempt)).then_some((executor, attempt))
                });
                match running_on {
                    Some((executor, attempt)) => {
                        e.attempt = Some(attempt.attempt);
                        e.executor = Some(executor.0.clone());
                        self.log(e);
                        self.feed(
                            Event::TaskStateChanged {
                                executor,
                                attempt,
                                state: AttemptState::Failed,
                                failure: Some(failure),
                            },
                            now,
                        );
                    }
                    None => {
                        e.detail = Some(format!(
                            "fail-task skipped: the task is {}",
                            view.map_or("unknown", |v| v.state.name())
                        ));
                        self.log(e);
                    }
                }
            }
            FaultKind::LoseExecutor { executor } => {
                e.detail = Some("lose-executor".into());
                e.executor = Some(executor.0.clone());
                self.log(e);
                self.kill(executor, now);
            }
            FaultKind::LoseDomain { domain } => {
                // Every executor labelled with the domain *now* dies at this instant; the
                // JobMaster hears of each one on its own (one loss event per executor).
                let members: Vec<ExecutorId> = self
                    .executors
                    .iter()
                    .filter(|(_, vx)| vx.alive && domain.contains(&vx.labels))
                    .map(|(id, _)| id.clone())
                    .collect();
                e.detail = Some(format!(
                    "lose-domain {domain}: {}",
                    if members.is_empty() {
                        "no live executor".to_owned()
                    } else {
                        members
                            .iter()
                            .map(|m| m.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
                self.log(e);
                for executor in members {
                    self.kill(executor, now);
                }
            }
            FaultKind::AddExecutor {
                executor,
                slots,
                labels,
            } => {
                e.detail = Some("add-executor".into());
                e.executor = Some(executor.0.clone());
                e.slots = Some(slots);
                self.log(e);
                let incarnation = self
                    .executors
                    .get(&executor)
                    .map_or(0, |vx| vx.incarnation + 1);
                self.executors.insert(
                    executor.clone(),
                    VirtualExecutor {
                        alive: true,
                        running: BTreeSet::new(),
                        incarnation,
                        labels: labels.clone(),
                    },
                );
                self.feed(
                    Event::ExecutorRegistered {
                        executor,
                        slots,
                        labels,
                        holds: Default::default(),
                    },
                    now,
                );
            }
            FaultKind::LosePartition { partition } => {
                e.detail = Some("lose-partition".into());
                if let Some(g) = self.core.graph(self.job) {
                    e.partitions = Some(vec![g.partition_name(partition)]);
                }
                self.log(e);
                self.feed(
                    Event::PartitionLost {
                        job: self.job,
                        partition,
                    },
                    now,
                );
            }
        }
    }

    /// The executor dies: its attempts die with it; the JobMaster learns after the
    /// detection latency.
    fn kill(&mut self, executor: ExecutorId, now: Millis) {
        if let Some(vx) = self.executors.get_mut(&executor)
            && vx.alive
        {
            vx.alive = false;
            vx.running.clear();
            let incarnation = vx.incarnation;
            self.push(
                now + self.scenario.detection_latency,
                Item::Detect(executor, incarnation),
            );
        }
    }

    fn final_state(&self) -> FinalState {
        let now = self.scenario.until;
        let job = self.job;
        let core = &self.core;
        let counters = core.counters(job).cloned().unwrap_or_default();
        let regions = core.regions(job);
        let downtime = core.region_downtime_ms(job, now).unwrap_or_default();
        FinalState {
            t_ms: now,
            job_state: core.job_state(job).map_or("UNKNOWN", |s| s.name()),
            cause: core.job_cause(job).map(str::to_owned),
            restarts: counters.restarts,
            failovers: counters.failovers,
            full_restarts: counters.full_restarts,
            tasks_restarted: counters.tasks_restarted,
            restarting_ms: core.restarting_ms(job, now).unwrap_or(0),
            exceptions: core.exception_history(job).map_or(0, |h| h.len()),
            tasks: core
                .tasks(job)
                .unwrap_or_default()
                .into_iter()
                .map(|v| FinalTask {
                    task: v.name,
                    attempt: v.attempt,
                    state: v.state.name(),
                    executor: v.executor.map(|e| e.0),
                    region: v.region.0,
                })
                .collect(),
            regions: regions
                .map(|rs| {
                    rs.ids()
                        .map(|r| FinalRegion {
                            region: r.0,
                            tasks: rs.tasks(r).len(),
                            restarts: counters
                                .region_restarts
                                .get(r.index())
                                .copied()
                                .unwrap_or(0),
                            downtime_ms: downtime.get(r.index()).copied().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}
