//! The JobMaster core driven event by event: reconciliation, fencing of stale reports, cancel
//! timeouts, re-registration, cancellation, persistent partitions.

use jobmaster::core::{
    AttemptId, AttemptState, Command, CoreConfig, CoreError, Event, ExecutorId, Failure,
    FailureClass, JobId, JobMaster, JobSpec, JobState, Millis, TaskId,
};

const JOB: JobId = JobId(7);

struct Harness {
    jm: JobMaster,
    now: Millis,
}

impl Harness {
    fn new(executors: &[(&str, u32)]) -> Harness {
        let mut h = Harness {
            jm: JobMaster::new(CoreConfig {
                cancel_timeout_ms: 1_000,
                slot_request_timeout_ms: 5_000,
                ..CoreConfig::default()
            }),
            now: 0,
        };
        for (id, slots) in executors {
            h.ok(Event::ExecutorRegistered {
                executor: ExecutorId::from(*id),
                slots: *slots,
                labels: Default::default(),
                holds: Default::default(),
            });
        }
        h
    }

    fn ok(&mut self, event: Event) -> Vec<Command> {
        self.jm
            .handle(event, self.now)
            .unwrap_or_else(|r| panic!("event refused: {}", r.error))
    }

    fn submit(&mut self, spec: &str) -> Vec<Command> {
        let spec = JobSpec::from_toml(spec).expect("valid spec");
        self.ok(Event::SubmitJob { job: JOB, spec })
    }

    fn task(&self, name: &str) -> TaskId {
        self.jm.graph(JOB).unwrap().find_task(name).unwrap()
    }

    fn view(&self, name: &str) -> jobmaster::core::TaskView {
        self.jm.task(JOB, self.task(name)).unwrap()
    }

    fn current(&self, name: &str) -> (AttemptId, ExecutorId) {
        let v = self.view(name);
        (
            AttemptId {
                job: JOB,
                task: v.task,
                attempt: v.attempt,
            },
            v.executor.expect("deployed"),
        )
    }

    fn report(&mut self, name: &str, state: AttemptState) -> Vec<Command> {
        let (attempt, executor) = self.current(name);
        self.ok(Event::TaskStateChanged {
            executor,
            attempt,
            state,
            failure: None,
        })
    }

    /// The current attempt of `name` fails recoverably.
    fn fail(&mut self, name: &str) -> Vec<Command> {
        let (attempt, executor) = self.current(name);
        self.ok(Event::TaskStateChanged {
            executor,
            attempt,
            state: AttemptState::Failed,
            failure: Some(Failure {
                class: FailureClass::Recoverable,
                message: "boom".into(),
                partition: None,
            }),
        })
    }

    /// The current attempts of these tasks.
    fn currents(&self, names: &[&str]) -> Vec<AttemptId> {
        names.iter().map(|t| self.current(t).0).collect()
    }

    /// Reports RUNNING for every deploy in `commands`.
    fn run_all(&mut self, commands: &[Command]) -> Vec<Command> {
        let mut out = Vec::new();
        for c in commands {
            if let Command::Deploy {
                attempt, executor, ..
            } = c
            {
                out.extend(self.ok(Event::TaskStateChanged {
                    executor: executor.clone(),
                    attempt: *attempt,
                    state: AttemptState::Running,
                    failure: None,
                }));
            }
        }
        out
    }
}

fn deploys(commands: &[Command]) -> Vec<AttemptId> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Deploy { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

fn cancels(commands: &[Command]) -> Vec<AttemptId> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Cancel { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

const STREAM: &str = r#"
name = "stream"
restart = { strategy = "fixed-delay", attempts = 10, delay = "0s" }
[[vertices]]
id = "src"
parallelism = 2
command = ["x"]
[[vertices]]
id = "sink"
parallelism = 2
command = ["x"]
[[edges]]
from = "src"
to = "sink"
pattern = "pointwise"
exchange = "pipelined"
"#;

#[test]
fn submitted_job_deploys_every_source_region_spread_over_executors() {
    let mut h = Harness::new(&[("a", 2), ("b", 2)]);
    let commands = h.submit(STREAM);
    assert_eq!(deploys(&commands).len(), 4);
    let on_a = ["src#0", "src#1", "sink#0", "sink#1"]
        .iter()
        .filter(|n| h.view(n).executor == Some(ExecutorId::from("a")))
        .count();
    assert_eq!(on_a, 2, "placement spreads tasks");
    h.run_all(&commands);
    assert_eq!(h.view("sink#1").state, AttemptState::Running);
    let states: Vec<AttemptState> = h.view("sink#1").transitions.iter().map(|t| t.0).collect();
    assert_eq!(
        states,
        vec![
            AttemptState::Created,
            AttemptState::Scheduled,
            AttemptState::Deploying,
            AttemptState::Initializing,
            AttemptState::Running
        ]
    );
}

#[test]
fn heartbeat_cancels_unknown_attempts_and_fails_missing_ones() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(STREAM);
    h.run_all(&c);
    let (src0, _) = h.current("src#0");
    let stranger = AttemptId {
        job: JOB,
        task: h.task("sink#1"),
        attempt: 5,
    };
    // A first heartbeat lists all four attempts.
    let all = vec![
        src0,
        h.current("src#1").0,
        h.current("sink#0").0,
        h.current("sink#1").0,
    ];
    let out = h.ok(Event::Heartbeat {
        executor: "a".into(),
        attempts: all,
    });
    assert!(cancels(&out).is_empty(), "every attempt is expected there");
    // Then the executor holds src#0, src#1, sink#0 and an attempt we never deployed, but no
    // longer sink#1.
    let attempts = vec![src0, h.current("src#1").0, h.current("sink#0").0, stranger];
    let out = h.ok(Event::Heartbeat {
        executor: "a".into(),
        attempts,
    });
    assert!(
        cancels(&out).contains(&stranger),
        "unknown attempt is cancelled"
    );
    assert_eq!(
        h.view("sink#1").state,
        AttemptState::Failed,
        "the missing attempt failed"
    );
    assert!(
        cancels(&out).contains(&h.current("src#1").0),
        "its region partner stops"
    );
    h.report("src#1", AttemptState::Canceled);
    assert_eq!(h.view("sink#1").attempt, 1, "then both restart");
    assert_eq!(h.view("src#1").attempt, 1);
    assert_eq!(h.view("src#0").attempt, 0, "the other region is untouched");
    let history = h.jm.exception_history(JOB).unwrap();
    let root = &history.entries().last().unwrap().root;
    assert!(
        root.message.contains("no longer running"),
        "{}",
        root.message
    );
}

#[test]
fn attempt_deployed_after_a_heartbeat_snapshot_is_not_failed_by_that_heartbeat() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(STREAM);
    h.run_all(&c);
    let listed = h.currents(&["src#0", "src#1", "sink#0"]);
    // sink#1 runs (its reports arrived) but the heartbeat was taken before it was deployed.
    assert_eq!(h.view("sink#1").state, AttemptState::Running);
    let out = h.ok(Event::Heartbeat {
        executor: "a".into(),
        attempts: listed.clone(),
    });
    assert!(cancels(&out).is_empty(), "{out:?}");
    assert_eq!(
        h.view("sink#1").state,
        AttemptState::Running,
        "one heartbeat without a never-listed attempt is not evidence of its loss"
    );
    // The next heartbeat lists it: from now on one omission is enough.
    let mut all = listed.clone();
    all.push(h.current("sink#1").0);
    h.ok(Event::Heartbeat {
        executor: "a".into(),
        attempts: all,
    });
    h.ok(Event::Heartbeat {
        executor: "a".into(),
        attempts: listed,
    });
    assert_eq!(h.view("sink#1").state, AttemptState::Failed);
}

#[test]
fn attempt_never_listed_fails_once_heartbeats_leave_it_out_past_the_grace_period() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(STREAM);
    h.run_all(&c);
    let listed = h.currents(&["src#0", "src#1", "sink#0"]);
    let grace = h.jm.config().unseen_grace_ms;
    let heartbeat = |h: &mut Harness, at: Millis| {
        h.now = at;
        h.ok(Event::Heartbeat {
            executor: "a".into(),
            attempts: listed.clone(),
        });
        h.view("sink#1").state
    };
    // Late heartbeats taken before it arrived: many of them, but within the grace period.
    for n in 0..5 {
        assert_eq!(
            heartbeat(&mut h, n * 10),
            AttemptState::Running,
            "heartbeat {n}"
        );
    }
    // Past the grace period, still never listed: it is gone.
    assert_eq!(heartbeat(&mut h, grace), AttemptState::Failed);
}

#[test]
fn one_late_heartbeat_past_the_grace_period_is_not_enough_for_a_never_listed_attempt() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(STREAM);
    h.run_all(&c);
    let listed = h.currents(&["src#0", "src#1", "sink#0"]);
    h.now = h.jm.config().unseen_grace_ms * 2;
    for n in 1..=jobmaster::core::UNSEEN_HEARTBEATS {
        h.ok(Event::Heartbeat {
            executor: "a".into(),
            attempts: listed.clone(),
        });
        let expected = if n < jobmaster::core::UNSEEN_HEARTBEATS {
            AttemptState::Running
        } else {
            AttemptState::Failed
        };
        assert_eq!(h.view("sink#1").state, expected, "after {n} heartbeats");
    }
}

#[test]
fn stale_and_misplaced_reports_are_refused_and_change_nothing() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(STREAM);
    h.run_all(&c);
    let (attempt, executor) = h.current("src#0");
    let before = h.view("src#0");
    let wrong = Event::TaskStateChanged {
        executor: "elsewhere".into(),
        attempt,
        state: AttemptState::Failed,
        failure: None,
    };
    let r = h.jm.handle(wrong, h.now).unwrap_err();
    assert!(
        matches!(r.error, CoreError::WrongExecutor { .. }),
        "{}",
        r.error
    );
    let illegal = Event::TaskStateChanged {
        executor,
        attempt,
        state: AttemptState::Scheduled,
        failure: None,
    };
    let r = h.jm.handle(illegal, h.now).unwrap_err();
    assert!(
        matches!(r.error, CoreError::IllegalReport { .. }),
        "{}",
        r.error
    );
    assert_eq!(h.view("src#0"), before);
    // A repeated report is harmless.
    h.report("src#0", AttemptState::Running);
    assert_eq!(h.view("src#0"), before);
}

#[test]
fn cancel_that_times_out_declares_the_executor_lost() {
    let mut h = Harness::new(&[("a", 2), ("b", 2)]);
    let c = h.submit(STREAM);
    h.run_all(&c);
    // Fail src#0; its region partner sink#0 must be cancelled.
    let out = h.report("src#0", AttemptState::Failed);
    let (sink0, sink0_on) = h.current("sink#0");
    assert_eq!(cancels(&out), vec![sink0]);
    let timer = out
        .iter()
        .find_map(|c| match c {
            Command::SetTimer { timer, at } if *at == 1_000 => Some(*timer),
            _ => None,
        })
        .expect("a cancel timeout is set");
    h.now = 1_000;
    let out = h.ok(Event::TimerFired { timer });
    assert!(
        out.iter().any(|c| matches!(
            c,
            Command::Notify(jobmaster::core::Notice::ExecutorLost { executor, .. }) if *executor == sink0_on
        )),
        "{out:?}"
    );
    assert!(h.jm.executors().all(|(id, ..)| *id != sink0_on));
}

#[test]
fn executor_registering_again_is_a_new_session_and_its_old_tasks_fail_over() {
    let mut h = Harness::new(&[("a", 2), ("b", 2)]);
    // Spread: each region has a task on the other executor too, whose cancel holds the
    // restart back (pack-regions would put a whole region on `a` and restart it at once).
    let c = h.submit(&STREAM.replacen(
        "name = \"stream\"",
        "name = \"stream\"\nplacement = \"spread\"",
        1,
    ));
    h.run_all(&c);
    let on_a: Vec<String> = ["src#0", "src#1", "sink#0", "sink#1"]
        .iter()
        .filter(|n| h.view(n).executor == Some(ExecutorId::from("a")))
        .map(|n| n.to_string())
        .collect();
    assert!(!on_a.is_empty());
    h.ok(Event::ExecutorRegistered {
        executor: "a".into(),
        slots: 2,
        labels: Default::default(),
        holds: Default::default(),
    });
    for n in &on_a {
        assert_eq!(
            h.view(n).attempt,
            0,
            "attempt replaced only once the restart fires"
        );
        assert_ne!(h.view(n).state, AttemptState::Running);
    }
    assert_eq!(h.jm.counters(JOB).unwrap().failovers, 1);
}

#[test]
fn cancel_job_cancels_every_attempt_and_ends_canceled() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(STREAM);
    h.run_all(&c);
    let out = h.ok(Event::CancelJob { job: JOB });
    assert_eq!(cancels(&out).len(), 4);
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Cancelling));
    // Cancelling again is idempotent: no error, nothing sent twice.
    let again = h.ok(Event::CancelJob { job: JOB });
    assert!(cancels(&again).is_empty(), "{again:?}");
    for n in ["src#0", "src#1", "sink#0", "sink#1"] {
        h.report(n, AttemptState::Canceled);
    }
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Canceled));
    let again = h.ok(Event::CancelJob { job: JOB });
    assert!(again.is_empty() || cancels(&again).is_empty());
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Canceled));
}

#[test]
fn only_an_ended_job_is_dropped_and_a_dropped_job_is_forgotten_with_its_slots() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(STREAM);
    h.run_all(&c);
    let refused = h.jm.handle(Event::DropJob { job: JOB }, h.now).unwrap_err();
    assert!(
        matches!(
            refused.error,
            CoreError::JobNotEnded {
                state: JobState::Running,
                ..
            }
        ),
        "{}",
        refused.error
    );
    h.ok(Event::CancelJob { job: JOB });
    for n in ["src#0", "src#1", "sink#0", "sink#1"] {
        h.report(n, AttemptState::Canceled);
    }
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Canceled));
    h.ok(Event::DropJob { job: JOB });
    assert_eq!(h.jm.job_state(JOB), None);
    assert_eq!(h.jm.job_ids().count(), 0);
    // Every slot is free again, and the same id can hold a new job.
    let free: Vec<u32> = h.jm.executors().map(|(_, _, free, _)| free).collect();
    assert_eq!(free, vec![4]);
    let again = h.jm.handle(Event::DropJob { job: JOB }, h.now).unwrap_err();
    assert!(matches!(again.error, CoreError::UnknownJob(_)));
    let c = h.submit(STREAM);
    assert_eq!(
        deploys(&c).len(),
        4,
        "the new job is placed on the freed slots"
    );
}

#[test]
fn a_finished_job_cannot_be_cancelled() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(STREAM);
    h.run_all(&c);
    for n in ["src#0", "src#1", "sink#0", "sink#1"] {
        h.report(n, AttemptState::Finished);
    }
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Finished));
    let refused =
        h.jm.handle(Event::CancelJob { job: JOB }, h.now)
            .unwrap_err();
    assert!(matches!(refused.error, CoreError::JobNotActive { .. }));
}

#[test]
fn unknown_and_duplicate_jobs_are_refused() {
    let mut h = Harness::new(&[("a", 4)]);
    h.submit(STREAM);
    let spec = JobSpec::from_toml(STREAM).unwrap();
    let r =
        h.jm.handle(Event::SubmitJob { job: JOB, spec }, 0)
            .unwrap_err();
    assert_eq!(r.error, CoreError::DuplicateJob(JOB));
    let r =
        h.jm.handle(Event::CancelJob { job: JobId(99) }, 0)
            .unwrap_err();
    assert_eq!(r.error, CoreError::UnknownJob(JobId(99)));
    let r =
        h.jm.handle(
            Event::InjectFailure {
                job: JOB,
                task: TaskId(1_000),
                failure: Failure::recoverable("x"),
            },
            0,
        )
        .unwrap_err();
    assert!(matches!(r.error, CoreError::UnknownTask { .. }));
    let r =
        h.jm.handle(
            Event::ExecutorRegistered {
                executor: "z".into(),
                slots: 0,
                labels: Default::default(),
                holds: Default::default(),
            },
            0,
        )
        .unwrap_err();
    assert_eq!(r.error, CoreError::NoSlots);
}

const PERSISTENT: &str = r#"
name = "persist"
restart = { strategy = "fixed-delay", attempts = 10, delay = "0s" }
[[vertices]]
id = "p"
parallelism = 1
command = ["x"]
[[vertices]]
id = "q"
parallelism = 1
command = ["x"]
[[vertices]]
id = "c"
parallelism = 1
command = ["x"]
[[edges]]
from = "p"
to = "c"
pattern = "all-to-all"
exchange = "persistent"
[[edges]]
from = "q"
to = "c"
pattern = "all-to-all"
exchange = "blocking"
"#;

#[test]
fn persistent_partition_survives_its_executor_but_a_blocking_one_does_not() {
    let mut h = Harness::new(&[("a", 1), ("b", 1), ("c", 1)]);
    let c = h.submit(PERSISTENT);
    h.run_all(&c);
    let p_on = h.view("p#0").executor.unwrap();
    let q_on = h.view("q#0").executor.unwrap();
    assert_ne!(p_on, q_on);
    h.report("p#0", AttemptState::Finished);
    // Losing p's executor: its output is on persistent storage, so nothing restarts.
    h.ok(Event::ExecutorLost {
        executor: p_on,
        reason: "gone".into(),
    });
    assert_eq!(h.jm.counters(JOB).unwrap().failovers, 0);
    assert_eq!(h.view("p#0").attempt, 0);
    assert_eq!(h.view("p#0").state, AttemptState::Finished);

    let out = h.report("q#0", AttemptState::Finished);
    assert_eq!(deploys(&out).len(), 1, "c starts once both inputs exist");
    h.run_all(&out);
    assert_eq!(h.view("c#0").state, AttemptState::Running);

    // Losing q's executor while c still runs: q must run again, and so must c (it consumes
    // q's new output), in one failover.
    h.ok(Event::ExecutorLost {
        executor: q_on,
        reason: "gone".into(),
    });
    let counters = h.jm.counters(JOB).unwrap();
    assert_eq!(counters.failovers, 1);
    let restarted = &h
        .jm
        .exception_history(JOB)
        .unwrap()
        .entries()
        .last()
        .unwrap()
        .restarted;
    assert_eq!(restarted, &vec![h.task("q#0"), h.task("c#0")]);
}

#[test]
fn partition_lost_report_pulls_in_the_producer() {
    let mut h = Harness::new(&[("a", 2), ("b", 2)]);
    let c = h.submit(PERSISTENT);
    h.run_all(&c);
    h.report("p#0", AttemptState::Finished);
    let out = h.report("q#0", AttemptState::Finished);
    h.run_all(&out);
    let (c0, on) = h.current("c#0");
    let partition =
        h.jm.graph(JOB)
            .unwrap()
            .produced_partitions(h.task("q#0"))
            .next()
            .unwrap();
    h.ok(Event::TaskStateChanged {
        executor: on,
        attempt: c0,
        state: AttemptState::Failed,
        failure: Some(Failure {
            class: FailureClass::PartitionLost,
            message: "q#0->c missing".into(),
            partition: Some(partition),
        }),
    });
    let restarted = &h
        .jm
        .exception_history(JOB)
        .unwrap()
        .entries()
        .last()
        .unwrap()
        .restarted;
    assert_eq!(
        restarted,
        &vec![h.task("q#0"), h.task("c#0")],
        "p's persistent output is kept"
    );
    assert_eq!(h.jm.partition_available(JOB, partition), Some(false));
}

#[test]
fn slot_timeout_of_a_placed_region_is_cancelled_and_one_of_a_waiting_region_is_not() {
    // Two regions of two tasks each, one slot free: the first region waits for slots.
    let mut h = Harness::new(&[("a", 1)]);
    let out = h.submit(STREAM);
    let set: Vec<_> = out
        .iter()
        .filter_map(|c| match c {
            Command::SetTimer { timer, at } => Some((*timer, *at)),
            _ => None,
        })
        .collect();
    assert_eq!(set.len(), 2, "one slot timeout per queued region: {out:?}");
    assert!(set.iter().all(|(_, at)| *at == 5_000));
    assert!(deploys(&out).is_empty(), "no region fits in one slot");
    // Two more slots: one region is placed, its slot timeout cancelled; the other still waits.
    let out = h.ok(Event::ExecutorRegistered {
        executor: "b".into(),
        slots: 2,
        labels: Default::default(),
        holds: Default::default(),
    });
    assert_eq!(deploys(&out).len(), 2);
    let cancelled: Vec<_> = out
        .iter()
        .filter_map(|c| match c {
            Command::CancelTimer { timer } => Some(*timer),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled.len(), 1, "{out:?}");
    assert!(set.iter().any(|(t, _)| *t == cancelled[0]));
}

#[test]
fn placement_prefers_the_most_free_slots_and_avoids_the_last_failed_executor() {
    let mut h = Harness::new(&[("a", 2), ("b", 4), ("c", 4)]);
    let out = h.submit(STREAM);
    // Four tasks: b and c tie at 4 free (b first by id), then they alternate.
    let mut on: Vec<(String, String)> = out
        .iter()
        .filter_map(|c| match c {
            Command::Deploy {
                attempt, executor, ..
            } => Some((
                h.jm.graph(JOB).unwrap().task_name(attempt.task).to_string(),
                executor.0.clone(),
            )),
            _ => None,
        })
        .collect();
    on.sort();
    let executors: Vec<&str> = on.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(executors.iter().filter(|e| **e == "b").count(), 2, "{on:?}");
    assert_eq!(executors.iter().filter(|e| **e == "c").count(), 2, "{on:?}");
    h.run_all(&out);
    // src#0 fails on its executor: free slots are a 2, b 2, c 2 then; its region (src#0,
    // sink#0) is redeployed, and src#0 avoids the executor it failed on.
    let (attempt, failed_on) = h.current("src#0");
    let out = h.ok(Event::TaskStateChanged {
        executor: failed_on.clone(),
        attempt,
        state: AttemptState::Failed,
        failure: Some(Failure::recoverable("boom")),
    });
    let out = [out, h.report("sink#0", AttemptState::Canceled)].concat();
    assert_eq!(deploys(&out).len(), 2, "{out:?}");
    let (_, now_on) = h.current("src#0");
    assert_ne!(now_on, failed_on, "the redeploy avoids the failed executor");
}

#[test]
fn released_partitions_name_the_attempt_that_wrote_them_even_when_the_producer_restarts_at_once() {
    const BATCH: &str = r#"
name = "batch"
failover = "full"
restart = { strategy = "fixed-delay", attempts = 10, delay = "0s" }
[[vertices]]
id = "src"
parallelism = 1
command = ["x"]
[[vertices]]
id = "sink"
parallelism = 1
command = ["x"]
[[edges]]
from = "src"
to = "sink"
pattern = "pointwise"
exchange = "blocking"
"#;
    let mut h = Harness::new(&[("a", 2)]);
    let c = h.submit(BATCH);
    h.run_all(&c);
    h.report("src#0", AttemptState::Finished);
    assert_eq!(h.view("sink#0").state, AttemptState::Deploying);
    h.report("sink#0", AttemptState::Running);
    // Every task is stopped when the sink fails: the full restart happens in the same step,
    // and src#0 moves to attempt 1 before the shell deletes attempt 0's output.
    let (attempt, executor) = h.current("sink#0");
    let out = h.ok(Event::TaskStateChanged {
        executor,
        attempt,
        state: AttemptState::Failed,
        failure: Some(Failure::recoverable("boom")),
    });
    assert_eq!(h.view("src#0").attempt, 1, "{out:?}");
    let released: Vec<(Vec<u32>, Option<ExecutorId>)> = out
        .iter()
        .filter_map(|c| match c {
            Command::ReleasePartitions {
                attempts, executor, ..
            } => Some((attempts.clone(), executor.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(released, vec![(vec![0], Some(ExecutorId::from("a")))]);
}

#[test]
fn a_partition_lost_failure_naming_a_partition_the_task_does_not_read_marks_nothing_lost() {
    let mut h = Harness::new(&[("a", 2), ("b", 2)]);
    let c = h.submit(PERSISTENT);
    h.run_all(&c);
    h.report("p#0", AttemptState::Finished);
    let p_out =
        h.jm.graph(JOB)
            .unwrap()
            .produced_partitions(h.task("p#0"))
            .next()
            .unwrap();
    // q reads nothing; its executor claims p's output is missing.
    let (q0, on) = h.current("q#0");
    h.ok(Event::TaskStateChanged {
        executor: on,
        attempt: q0,
        state: AttemptState::Failed,
        failure: Some(Failure {
            class: FailureClass::PartitionLost,
            message: "p#0->c missing".into(),
            partition: Some(p_out),
        }),
    });
    assert_eq!(
        h.jm.partition_available(JOB, p_out),
        Some(true),
        "p's output stays available"
    );
}

/// STREAM with an exponential backoff, so a second failure merges into the pending restart.
fn stream_backoff() -> String {
    STREAM.replace(
        r#"restart = { strategy = "fixed-delay", attempts = 10, delay = "0s" }"#,
        r#"restart = { strategy = "exponential-delay", initial-backoff = "1s", max-backoff = "1s", jitter-factor = 0.0 }"#,
    )
}

#[test]
fn the_exception_history_tells_a_merged_restart_with_its_final_task_count() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(&stream_backoff());
    h.run_all(&c);
    h.fail("src#0");
    let first =
        h.jm.exception_history(JOB)
            .unwrap()
            .entries()
            .last()
            .unwrap()
            .outcome
            .clone();
    assert_eq!(first, "restart 2 tasks after 1000 ms");
    // The other region fails while the restart is pending: it joins it.
    h.fail("src#1");
    let entries = h.jm.exception_history(JOB).unwrap().entries();
    let latest = entries.last().unwrap();
    assert_eq!(latest.restarted.len(), 4);
    assert!(
        latest.outcome.starts_with("restart 4 tasks after "),
        "{}",
        latest.outcome
    );
}

#[test]
fn a_regional_failover_leaves_the_job_running_and_a_full_restart_makes_it_restarting() {
    let mut h = Harness::new(&[("a", 4)]);
    let c = h.submit(&stream_backoff());
    h.run_all(&c);
    h.fail("src#0");
    assert_eq!(
        h.jm.job_state(JOB),
        Some(JobState::Running),
        "one region of two"
    );

    let mut h = Harness::new(&[("a", 4)]);
    let full = stream_backoff().replace(
        "name = \"stream\"",
        "name = \"stream\"\nfailover = \"full\"",
    );
    let c = h.submit(&full);
    h.run_all(&c);
    h.fail("src#0");
    assert_eq!(
        h.jm.job_state(JOB),
        Some(JobState::Restarting),
        "every task restarts"
    );
}
