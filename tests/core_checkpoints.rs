//! Checkpoints in the JobMaster core: when they trigger, what completes them, what a failover
//! aborts and what restarted tasks restore from, checkpoint failures through the restart
//! strategy, and a restored core resuming the job's checkpoints.

use std::collections::BTreeMap;

use jobmaster::core::{
    AttemptId, AttemptState, CheckpointId, Command, CoreConfig, CoreError, Event, ExecutorId,
    JobId, JobMaster, JobRecord, JobSpec, JobState, Millis, Notice, PartitionHost, PartitionId,
    StoredJob, TaskId, TaskRecord, TimerId,
};

const JOB: JobId = JobId(3);

/// Two pipelined regions `src#i → snk#i`, checkpointed every second.
fn spec(extra: &str) -> String {
    format!(
        r#"
name = "ck"
{extra}
[[vertices]]
id = "src"
parallelism = 2
command = ["x"]
[[vertices]]
id = "snk"
parallelism = 2
command = ["x"]
[[edges]]
from = "src"
to = "snk"
pattern = "pointwise"
exchange = "pipelined"
"#
    )
}

const REGION: &str = r#"failover = "region"
restart = { strategy = "fixed-delay", attempts = 5, delay = "100ms" }
checkpoint = { interval = "1s" }"#;

struct Harness {
    jm: JobMaster,
    now: Millis,
    timers: BTreeMap<(Millis, TimerId), ()>,
    /// Deployed attempts are reported RUNNING, cancels CANCELED, at once.
    auto: bool,
    log: Vec<(Millis, Command)>,
    spec: JobSpec,
    /// What a store holds.
    jobs: BTreeMap<JobId, JobRecord>,
    tasks: BTreeMap<TaskId, TaskRecord>,
    partitions: BTreeMap<PartitionId, PartitionHost>,
}

impl Harness {
    fn new(extra: &str, auto: bool) -> Harness {
        let spec = JobSpec::from_toml(&spec(extra)).expect("valid spec");
        let mut h = Harness {
            jm: JobMaster::new(CoreConfig::default()),
            now: 0,
            timers: BTreeMap::new(),
            auto,
            log: Vec::new(),
            spec: spec.clone(),
            jobs: BTreeMap::new(),
            tasks: BTreeMap::new(),
            partitions: BTreeMap::new(),
        };
        for id in ["a", "b"] {
            h.feed(Event::ExecutorRegistered {
                executor: ExecutorId::from(id),
                slots: 4,
                labels: Default::default(),
                holds: Default::default(),
            })
            .expect("register");
        }
        h.feed(Event::SubmitJob { job: JOB, spec }).expect("submit");
        h
    }

    fn feed(&mut self, event: Event) -> Result<(), CoreError> {
        let (commands, result) = match self.jm.handle(event, self.now) {
            Ok(c) => (c, Ok(())),
            Err(r) => (r.commands, Err(r.error)),
        };
        let changes = self.jm.take_changes();
        for j in changes.jobs {
            self.jobs.insert(j.id, j);
        }
        for (_, t, r) in changes.tasks {
            self.tasks.insert(t, r);
        }
        for (_, p, host) in changes.partitions {
            self.partitions.insert(p, host);
        }
        self.carry_out(commands);
        result
    }

    fn carry_out(&mut self, commands: Vec<Command>) {
        let mut follow = Vec::new();
        for c in commands {
            match &c {
                Command::SetTimer { timer, at } => {
                    self.timers.insert((*at, *timer), ());
                }
                Command::CancelTimer { timer } => self.timers.retain(|(_, t), _| t != timer),
                Command::Deploy {
                    attempt, executor, ..
                } if self.auto => follow.push(Event::TaskStateChanged {
                    executor: executor.clone(),
                    attempt: *attempt,
                    state: AttemptState::Running,
                    failure: None,
                }),
                Command::Cancel { attempt, executor } if self.auto => {
                    follow.push(Event::TaskStateChanged {
                        executor: executor.clone(),
                        attempt: *attempt,
                        state: AttemptState::Canceled,
                        failure: None,
                    })
                }
                _ => {}
            }
            self.log.push((self.now, c));
        }
        for e in follow {
            let _ = self.feed(e);
        }
    }

    /// Fires every timer due up to `t`, in order, and moves the clock to `t`.
    fn advance(&mut self, t: Millis) {
        while let Some((&(at, timer), _)) = self.timers.first_key_value() {
            if at > t {
                break;
            }
            self.timers.remove(&(at, timer));
            self.now = self.now.max(at);
            let _ = self.feed(Event::TimerFired { timer });
        }
        self.now = t;
    }

    fn task(&self, name: &str) -> TaskId {
        self.jm.graph(JOB).unwrap().find_task(name).unwrap()
    }

    fn current(&self, name: &str) -> (AttemptId, ExecutorId) {
        let v = self.jm.task(JOB, self.task(name)).unwrap();
        let attempt = AttemptId {
            job: JOB,
            task: v.task,
            attempt: v.attempt,
        };
        (attempt, v.executor.expect("deployed"))
    }

    fn report(&mut self, name: &str, state: AttemptState) {
        let (attempt, executor) = self.current(name);
        self.feed(Event::TaskStateChanged {
            executor,
            attempt,
            state,
            failure: None,
        })
        .expect("report");
    }

    fn fail(&mut self, name: &str) {
        let (attempt, executor) = self.current(name);
        self.feed(Event::TaskStateChanged {
            executor,
            attempt,
            state: AttemptState::Failed,
            failure: Some(jobmaster::core::Failure::recoverable("boom")),
        })
        .expect("failure");
    }

    fn ack(&mut self, name: &str, checkpoint: u64) -> Result<(), CoreError> {
        let (attempt, _) = self.current(name);
        self.feed(Event::CheckpointAcknowledged {
            attempt,
            checkpoint: CheckpointId(checkpoint),
            size_bytes: 10,
        })
    }

    fn ack_all(&mut self, checkpoint: u64) {
        for t in ["src#0", "src#1", "snk#0", "snk#1"] {
            self.ack(t, checkpoint).expect("ack");
        }
    }

    fn persisted(&mut self, checkpoint: u64) {
        self.feed(Event::CheckpointPersisted {
            job: JOB,
            checkpoint: CheckpointId(checkpoint),
        })
        .expect("persisted");
    }

    /// Commands logged since index `from`.
    fn since(&self, from: usize) -> Vec<Command> {
        self.log[from..].iter().map(|(_, c)| c.clone()).collect()
    }

    /// Triggers so far: (time, id, attempts).
    fn triggers(&self) -> Vec<(Millis, u64, Vec<AttemptId>)> {
        self.log
            .iter()
            .filter_map(|(t, c)| match c {
                Command::TriggerCheckpoint {
                    checkpoint,
                    attempts,
                    ..
                } => Some((*t, checkpoint.0, attempts.iter().map(|(a, _)| *a).collect())),
                _ => None,
            })
            .collect()
    }

    /// Completes checkpoint `id` (acks from every task, then persisted).
    fn complete(&mut self, id: u64) {
        self.ack_all(id);
        self.persisted(id);
    }
}

fn notifications(commands: &[Command]) -> Vec<(u64, bool, usize)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::NotifyCheckpoint {
                checkpoint,
                attempts,
                complete,
                ..
            } => Some((checkpoint.0, *complete, attempts.len())),
            _ => None,
        })
        .collect()
}

fn deploys(commands: &[Command]) -> Vec<(TaskId, Option<CheckpointId>)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Deploy {
                attempt, restore, ..
            } => Some((attempt.task, *restore)),
            _ => None,
        })
        .collect()
}

#[test]
fn triggers_only_while_running_with_every_participant_running() {
    let mut h = Harness::new(REGION, false);
    // Deployed, not running: no checkpoint however long it takes.
    h.advance(5_000);
    assert!(h.triggers().is_empty());
    for t in ["src#0", "src#1", "snk#0"] {
        h.report(t, AttemptState::Running);
    }
    h.advance(8_000);
    assert!(h.triggers().is_empty(), "snk#1 is not running yet");
    h.report("snk#1", AttemptState::Running);
    // The first trigger comes an interval after every participant runs.
    h.advance(8_999);
    assert!(h.triggers().is_empty());
    h.advance(9_000);
    let triggers = h.triggers();
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0].0, 9_000);
    assert_eq!(triggers[0].1, 1);
    assert_eq!(triggers[0].2.len(), 4);
    // No decision while one is in progress (max-concurrent 1), nor without acknowledgements.
    h.advance(12_000);
    assert_eq!(h.triggers().len(), 1);
}

#[test]
fn completion_needs_every_current_attempt_and_is_notified_only_after_persisted() {
    let mut h = Harness::new(REGION, true);
    h.advance(1_000);
    assert_eq!(h.triggers().len(), 1);
    let mark = h.log.len();
    for t in ["src#0", "src#1", "snk#0"] {
        h.ack(t, 1).expect("ack");
    }
    // A stale attempt's acknowledgement is refused and changes nothing.
    let (mut stale, _) = h.current("snk#1");
    stale.attempt += 1;
    let refused = h.feed(Event::CheckpointAcknowledged {
        attempt: stale,
        checkpoint: CheckpointId(1),
        size_bytes: 1,
    });
    assert!(matches!(refused, Err(CoreError::StaleAttempt { .. })));
    assert!(
        !h.since(mark)
            .iter()
            .any(|c| matches!(c, Command::PersistCheckpoint { .. }))
    );
    h.ack("snk#1", 1).expect("ack");
    let persist: Vec<Command> = h
        .since(mark)
        .into_iter()
        .filter(|c| matches!(c, Command::PersistCheckpoint { .. }))
        .collect();
    assert_eq!(persist.len(), 1);
    if let Command::PersistCheckpoint { checkpoint, .. } = &persist[0] {
        assert_eq!(checkpoint.id, CheckpointId(1));
        assert_eq!(checkpoint.size_bytes, 40);
        assert_eq!(checkpoint.tasks.len(), 4);
    }
    assert!(
        notifications(&h.since(mark)).is_empty(),
        "not before persisted"
    );
    let mark = h.log.len();
    h.persisted(1);
    assert_eq!(notifications(&h.since(mark)), vec![(1, true, 4)]);
    // The record holds the completed checkpoint, in the same turn.
    let record = &h.jobs[&JOB];
    assert_eq!(record.checkpoints.len(), 1);
    assert_eq!(record.checkpoints[0].id, CheckpointId(1));
    assert_eq!(record.next_checkpoint, 2);
}

#[test]
fn a_finished_task_does_not_take_part() {
    let mut h = Harness::new(REGION, true);
    h.report("src#0", AttemptState::Finished);
    h.advance(1_000);
    let triggers = h.triggers();
    assert_eq!(triggers.len(), 1);
    let src0 = h.task("src#0");
    assert_eq!(triggers[0].2.len(), 3);
    assert!(triggers[0].2.iter().all(|a| a.task != src0));
    for t in ["src#1", "snk#0", "snk#1"] {
        h.ack(t, 1).expect("ack");
    }
    let mark = h.log.len();
    h.persisted(1);
    assert_eq!(notifications(&h.since(mark)), vec![(1, true, 3)]);
}

#[test]
fn a_regional_failover_aborts_pending_and_restores_only_the_restarted_tasks() {
    let mut h = Harness::new(REGION, true);
    h.advance(1_000);
    h.complete(1);
    h.advance(2_000);
    assert_eq!(h.triggers().len(), 2);
    h.ack("src#0", 2).expect("ack");
    let mark = h.log.len();
    h.fail("snk#0");
    h.advance(2_500);
    let after = h.since(mark);
    assert_eq!(notifications(&after), vec![(2, false, 3)]);
    let d = deploys(&after);
    let region0 = [h.task("src#0"), h.task("snk#0")];
    assert_eq!(d.len(), 2, "{d:?}");
    for (t, restore) in &d {
        assert!(region0.contains(t));
        assert_eq!(*restore, Some(CheckpointId(1)));
    }
    // The other region was not touched.
    for name in ["src#1", "snk#1"] {
        assert_eq!(h.current(name).0.attempt, 0);
    }
    assert!(!after.iter().any(|c| matches!(c,
        Command::Cancel { attempt, .. } if attempt.task == h.task("src#1") || attempt.task == h.task("snk#1"))));
    // The late persist of the aborted checkpoint changes nothing; the next ones go on.
    h.advance(4_000);
    let t = h.triggers();
    assert_eq!(t.last().map(|t| t.1), Some(3));
}

#[test]
fn a_first_deploy_restores_nothing() {
    let h = Harness::new(REGION, true);
    assert!(deploys(&h.since(0)).iter().all(|(_, r)| r.is_none()));
}

#[test]
fn a_full_restart_restores_every_task() {
    let extra = REGION.replace("failover = \"region\"", "failover = \"full\"");
    let mut h = Harness::new(&extra, true);
    h.advance(1_000);
    h.complete(1);
    let mark = h.log.len();
    h.fail("src#1");
    h.advance(1_500);
    let d = deploys(&h.since(mark));
    assert_eq!(d.len(), 4);
    assert!(d.iter().all(|(_, r)| *r == Some(CheckpointId(1))));
}

/// `snk#1`'s current attempt declines checkpoint `id` (`task_gone`: because it no longer runs).
fn decline_snk1(h: &mut Harness, id: u64, reason: &str, task_gone: bool) {
    let (attempt, _) = h.current("snk#1");
    h.feed(Event::CheckpointDeclined {
        attempt,
        checkpoint: CheckpointId(id),
        reason: reason.into(),
        task_gone,
    })
    .expect("decline");
}

#[test]
fn a_participant_that_is_gone_aborts_the_checkpoint_without_counting_a_failure() {
    // A task dying (or its executor lost) while a checkpoint waits for it: with no tolerance
    // for checkpoint failures, that must not turn one task's failure into a full restart.
    let extra = r#"failover = "region"
restart = { strategy = "fixed-delay", attempts = 1, delay = "100ms" }
checkpoint = { interval = "1s", tolerable-failures = 0 }"#;
    let mut h = Harness::new(extra, true);
    h.advance(1_000);
    let mark = h.log.len();
    decline_snk1(
        &mut h,
        1,
        "the task closed its control connection before answering",
        true,
    );
    let after = h.since(mark);
    assert!(
        !after
            .iter()
            .any(|c| matches!(c, Command::Notify(Notice::RestartScheduled { .. }))),
        "no failover: {after:?}"
    );
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Running));
    let k = h.jm.checkpoints(JOB).expect("checkpoints");
    assert_eq!((k.stats().failed, k.stats().aborted), (0, 1));
    assert_eq!(k.pending().len(), 0, "checkpoint 1 aborted");
}

#[test]
fn checkpoint_failures_beyond_the_tolerance_fail_over_through_the_restart_strategy() {
    let extra = r#"failover = "region"
restart = { strategy = "fixed-delay", attempts = 1, delay = "100ms" }
checkpoint = { interval = "1s", tolerable-failures = 0 }"#;
    let mut h = Harness::new(extra, true);
    h.advance(1_000);
    let mark = h.log.len();
    decline_snk1(&mut h, 1, "disk full", false);
    let after = h.since(mark);
    let restart = after.iter().find_map(|c| match c {
        Command::Notify(Notice::RestartScheduled { tasks, cause, .. }) => Some((tasks, cause)),
        _ => None,
    });
    let (tasks, cause) = restart.expect("a global failover");
    assert_eq!(tasks.len(), 4, "every task restarts");
    assert!(cause.contains("tolerable-failures"), "{cause}");
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Restarting));
    h.advance(1_200);
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Running));
    // A second one: the restart strategy (1 attempt) gives up.
    h.advance(2_200);
    let id = h.triggers().last().map(|t| t.1).expect("triggered again");
    decline_snk1(&mut h, id, "disk full", false);
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Failed));
    assert!(
        h.jm.job_cause(JOB)
            .is_some_and(|c| c.contains("checkpoint"))
    );
}

#[test]
fn cancelling_aborts_pending_checkpoints() {
    let mut h = Harness::new(REGION, true);
    h.advance(1_000);
    let mark = h.log.len();
    h.feed(Event::CancelJob { job: JOB }).expect("cancel");
    assert_eq!(notifications(&h.since(mark)), vec![(1, false, 4)]);
    h.advance(10_000);
    assert_eq!(h.triggers().len(), 1);
}

#[test]
fn a_restored_core_resumes_ids_and_restores_from_the_latest_completed_checkpoint() {
    let mut h = Harness::new(REGION, true);
    h.advance(1_000);
    h.complete(1);
    h.advance(2_000);
    h.complete(2);
    h.advance(3_000);
    assert_eq!(h.triggers().len(), 3); // chk-3 in progress when the JobMaster stops
    let stored = StoredJob {
        spec: h.spec.clone(),
        record: h.jobs[&JOB].clone(),
        tasks: h.tasks.iter().map(|(t, r)| (*t, r.clone())).collect(),
        partitions: h
            .partitions
            .iter()
            .filter(|(_, host)| **host != PartitionHost::Unavailable)
            .map(|(p, host)| (*p, host.clone()))
            .collect(),
    };
    let (jm, commands) =
        JobMaster::restore(CoreConfig::default(), vec![stored], 3_000, 1_000).expect("restore");
    h.jm = jm;
    h.timers.clear();
    h.log.clear();
    h.carry_out(commands);
    // Nobody re-registers: at the reconcile timeout every task fails over and restores chk-2.
    h.feed(Event::ExecutorRegistered {
        executor: ExecutorId::from("c"),
        slots: 8,
        labels: Default::default(),
        holds: Default::default(),
    })
    .expect("register");
    h.advance(5_000);
    let d = deploys(&h.since(0));
    assert_eq!(d.len(), 4, "{d:?}");
    assert!(d.iter().all(|(_, r)| *r == Some(CheckpointId(2))), "{d:?}");
    // Ids go on after the one in progress at the takeover.
    h.advance(7_000);
    let first = h.triggers().first().map(|t| t.1);
    assert_eq!(first, Some(4));
}

#[test]
fn a_job_record_of_an_older_store_without_checkpoints_still_loads() {
    let mut h = Harness::new(REGION, true);
    h.advance(1_000);
    h.complete(1);
    let record = h.jobs[&JOB].clone();
    let mut json: serde_json::Value = serde_json::to_value(&record).expect("serializes");
    let object = json.as_object_mut().expect("an object");
    assert!(object.remove("checkpoints").is_some());
    assert!(object.remove("next_checkpoint").is_some());
    let old: JobRecord = serde_json::from_value(json).expect("an old record loads");
    assert!(old.checkpoints.is_empty());
    assert_eq!(old.next_checkpoint, 0);
    // And the round trip keeps them.
    let back: JobRecord =
        serde_json::from_str(&serde_json::to_string(&record).expect("json")).expect("loads");
    assert_eq!(back.checkpoints, record.checkpoints);
    assert_eq!(back.next_checkpoint, 2);
}

#[test]
fn a_global_failover_without_delay_redeploys_in_the_same_turn() {
    let extra = r#"failover = "region"
restart = { strategy = "fixed-delay", attempts = 3, delay = "0ms" }
checkpoint = { interval = "1s", timeout = "500ms" }"#;
    let mut h = Harness::new(extra, false);
    for t in ["src#0", "src#1", "snk#0", "snk#1"] {
        h.report(t, AttemptState::Running);
    }
    h.advance(1_000);
    assert_eq!(h.triggers().len(), 1);
    // Nobody acknowledges: the timeout is a checkpoint failure beyond the tolerance (0).
    let mark = h.log.len();
    h.advance(1_500);
    let after = h.since(mark);
    assert_eq!(notifications(&after), vec![(1, false, 4)]);
    assert!(
        after
            .iter()
            .any(|c| matches!(c, Command::Notify(Notice::RestartScheduled { .. })))
    );
    // The cancels are confirmed; the redeploys follow in the turn of the last confirmation.
    let cancels: Vec<(AttemptId, ExecutorId)> = after
        .iter()
        .filter_map(|c| match c {
            Command::Cancel { attempt, executor } => Some((*attempt, executor.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(cancels.len(), 4);
    let mark = h.log.len();
    for (attempt, executor) in cancels {
        h.feed(Event::TaskStateChanged {
            executor,
            attempt,
            state: AttemptState::Canceled,
            failure: None,
        })
        .expect("canceled");
    }
    let d = deploys(&h.since(mark));
    assert_eq!(d.len(), 4, "{d:?}");
    assert!(
        d.iter().all(|(_, r)| r.is_none()),
        "no completed checkpoint yet"
    );
}
