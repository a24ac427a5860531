//! Quarantine of flapping executors and per-region restart budgets, driven event by event on
//! the core with a virtual clock.

use std::collections::BTreeMap;

use jobmaster::core::{
    AttemptId, AttemptState, Command, CoreConfig, CoreError, Event, ExecutorId, Failure,
    FailureClass, JobId, JobMaster, JobSpec, JobState, Millis, Notice, QuarantineConfig,
    RestartBudgetConfig, TimerId,
};

const JOB: JobId = JobId(3);

/// Two independent tasks (two regions), restarted at once up to 100 times.
const TWO: &str = r#"
name = "two"
restart = { strategy = "fixed-delay", attempts = 100, delay = "0s" }
[[vertices]]
id = "work"
parallelism = 2
command = ["x"]
"#;

struct Harness {
    jm: JobMaster,
    now: Millis,
    timers: BTreeMap<TimerId, Millis>,
    notices: Vec<Notice>,
}

impl Harness {
    fn new(config: CoreConfig, executors: &[(&str, u32)]) -> Harness {
        let mut h = Harness {
            jm: JobMaster::new(config),
            now: 0,
            timers: BTreeMap::new(),
            notices: Vec::new(),
        };
        for (id, slots) in executors {
            h.register(id, *slots);
        }
        h
    }

    /// Quarantine after 2 failures or 2 losses within 1h, for 10s; no region budget.
    fn quarantining(executors: &[(&str, u32)]) -> Harness {
        Harness::new(
            CoreConfig {
                quarantine: QuarantineConfig {
                    duration_ms: 10_000,
                    ..QuarantineConfig::default()
                },
                region_restart_budget: RestartBudgetConfig::OFF,
                ..CoreConfig::default()
            },
            executors,
        )
    }

    fn track(&mut self, commands: &[Command]) {
        for c in commands {
            match c {
                Command::SetTimer { timer, at } => {
                    self.timers.insert(*timer, *at);
                }
                Command::CancelTimer { timer } => {
                    self.timers.remove(timer);
                }
                Command::Notify(n) => self.notices.push(n.clone()),
                _ => {}
            }
        }
    }

    fn handle(&mut self, event: Event) -> Result<Vec<Command>, CoreError> {
        match self.jm.handle(event, self.now) {
            Ok(commands) => {
                self.track(&commands);
                Ok(commands)
            }
            Err(rejected) => {
                self.track(&rejected.commands);
                Err(rejected.error)
            }
        }
    }

    fn ok(&mut self, event: Event) -> Vec<Command> {
        self.handle(event)
            .unwrap_or_else(|e| panic!("event refused: {e}"))
    }

    fn register(&mut self, id: &str, slots: u32) {
        self.ok(Event::ExecutorRegistered {
            executor: id.into(),
            slots,
            labels: Default::default(),
            holds: Default::default(),
        });
    }

    /// Fires every timer due by `to`, in time order, then sets the clock to `to`.
    fn advance(&mut self, to: Millis) {
        loop {
            let due = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= to)
                .min_by_key(|(id, at)| (**at, **id))
                .map(|(id, at)| (*id, *at));
            let Some((timer, at)) = due else { break };
            self.timers.remove(&timer);
            self.now = self.now.max(at);
            self.ok(Event::TimerFired { timer });
        }
        self.now = to;
    }

    fn submit(&mut self, spec: &str) {
        let spec = JobSpec::from_toml(spec).expect("valid spec");
        let c = self.ok(Event::SubmitJob { job: JOB, spec });
        self.run_all(&c);
    }

    fn run_all(&mut self, commands: &[Command]) {
        for c in commands {
            if let Command::Deploy {
                attempt, executor, ..
            } = c
            {
                self.ok(Event::TaskStateChanged {
                    executor: executor.clone(),
                    attempt: *attempt,
                    state: AttemptState::Running,
                    failure: None,
                });
            }
        }
    }

    fn current(&self, name: &str) -> (AttemptId, Option<ExecutorId>) {
        let task = self.jm.graph(JOB).unwrap().find_task(name).unwrap();
        let v = self.jm.task(JOB, task).unwrap();
        (
            AttemptId {
                job: JOB,
                task,
                attempt: v.attempt,
            },
            v.executor,
        )
    }

    fn executor_of(&self, name: &str) -> Option<String> {
        self.current(name).1.map(|e| e.0)
    }

    /// The task's current attempt reports FAILED with `class`; its redeploys start running.
    fn fail(&mut self, name: &str, class: FailureClass) {
        let (attempt, executor) = self.current(name);
        let c = self.ok(Event::TaskStateChanged {
            executor: executor.expect("deployed"),
            attempt,
            state: AttemptState::Failed,
            failure: Some(Failure::new(class, "boom")),
        });
        self.run_all(&c);
    }

    fn quarantined(&self, id: &str) -> Option<String> {
        self.jm
            .quarantine(&ExecutorId::from(id))
            .map(|q| q.reason.clone())
    }

    /// Submits TWO again as job 4; how many of its deploys go to `executor`, and the commands.
    fn second_job_deploys_on(&mut self, executor: &str) -> (usize, Vec<Command>) {
        let spec = JobSpec::from_toml(TWO).unwrap();
        let c = self.ok(Event::SubmitJob {
            job: JobId(4),
            spec,
        });
        let on = c
            .iter()
            .filter(|c| matches!(c, Command::Deploy { executor: e, .. } if e.0 == executor))
            .count();
        (on, c)
    }

    fn notices_of(&self, kind: &str) -> Vec<&Notice> {
        self.notices.iter().filter(|n| n.kind() == kind).collect()
    }
}

#[test]
fn two_task_failures_within_the_window_quarantine_the_executor_and_restarts_avoid_it() {
    let mut h = Harness::quarantining(&[("a", 3), ("b", 2)]);
    h.submit(TWO);
    assert_eq!(h.executor_of("work#0").as_deref(), Some("a"));
    assert_eq!(h.executor_of("work#1").as_deref(), Some("a"));
    h.fail("work#0", FailureClass::Recoverable);
    assert_eq!(h.executor_of("work#0").as_deref(), Some("b"));
    assert_eq!(h.quarantined("a"), None, "one failure is not enough");
    h.now = 1_000;
    h.fail("work#1", FailureClass::Recoverable);
    assert_eq!(
        h.quarantined("a").as_deref(),
        Some("2 task failures within 1h")
    );
    assert_eq!(
        h.notices_of("executor-quarantined").first(),
        Some(&&Notice::ExecutorQuarantined {
            executor: "a".into(),
            until: 11_000,
            reason: "2 task failures within 1h".into()
        })
    );
    assert_eq!(h.executor_of("work#1").as_deref(), Some("b"));
    // work#1 now fails on b: a restart would prefer a (the task avoids b), but a is
    // quarantined, so it goes to b again.
    h.fail("work#1", FailureClass::Recoverable);
    assert_eq!(h.executor_of("work#1").as_deref(), Some("b"));
    assert_eq!(h.quarantined("b"), None, "b failed once");
    let free: Vec<(String, u32)> =
        h.jm.executors()
            .map(|(id, _, free, _)| (id.0.clone(), free))
            .collect();
    assert_eq!(free, vec![("a".into(), 3), ("b".into(), 0)]);
}

#[test]
fn partition_lost_and_executor_lost_failures_do_not_count() {
    let mut h = Harness::quarantining(&[("a", 2), ("b", 2), ("c", 2)]);
    h.submit(TWO);
    for _ in 0..3 {
        h.fail("work#0", FailureClass::PartitionLost);
        h.fail("work#1", FailureClass::ExecutorLost);
    }
    for e in ["a", "b", "c"] {
        assert_eq!(h.quarantined(e), None, "{e}");
    }
}

#[test]
fn the_cool_down_timer_ends_the_quarantine() {
    let mut h = Harness::quarantining(&[("a", 3), ("b", 2)]);
    h.submit(TWO);
    h.fail("work#0", FailureClass::Recoverable);
    h.fail("work#1", FailureClass::Recoverable);
    assert!(h.quarantined("a").is_some());
    h.advance(9_999);
    assert!(h.quarantined("a").is_some(), "still cooling down");
    h.advance(10_000);
    assert_eq!(h.quarantined("a"), None);
    assert_eq!(
        h.notices_of("executor-released"),
        vec![&Notice::ExecutorReleased {
            executor: "a".into(),
            reason: "cool-down of 10s ended".into()
        }]
    );
    // a takes placements again: its 3 slots are free for a new job.
    let (_, slots, free, _) = h.jm.executors().next().unwrap();
    assert_eq!((slots, free), (3, 3));
    let (on_a, _) = h.second_job_deploys_on("a");
    assert_eq!(on_a, 2);
}

#[test]
fn release_executor_ends_the_quarantine_early_and_unknown_ids_are_refused() {
    let mut h = Harness::quarantining(&[("a", 3), ("b", 2)]);
    h.submit(TWO);
    h.fail("work#0", FailureClass::Recoverable);
    h.fail("work#1", FailureClass::Recoverable);
    assert!(h.quarantined("a").is_some());
    let c = h.ok(Event::ReleaseExecutor {
        executor: "a".into(),
    });
    assert_eq!(h.quarantined("a"), None);
    assert!(
        c.iter().any(|c| matches!(c, Command::CancelTimer { .. })),
        "the cool-down timer is cancelled: {c:?}"
    );
    assert_eq!(
        h.notices_of("executor-released"),
        vec![&Notice::ExecutorReleased {
            executor: "a".into(),
            reason: "released by an operator".into()
        }]
    );
    assert!(
        h.timers.values().all(|&at| at < 10_000),
        "no cool-down timer left: {:?}",
        h.timers
    );
    // Its failures were forgiven: one more does not quarantine it again.
    h.fail("work#0", FailureClass::Recoverable);
    assert_eq!(h.quarantined("a"), None);
    // Releasing an executor that is not quarantined is fine; an unknown one is not.
    h.ok(Event::ReleaseExecutor {
        executor: "b".into(),
    });
    assert_eq!(
        h.handle(Event::ReleaseExecutor {
            executor: "nobody".into()
        }),
        Err(CoreError::UnknownExecutor("nobody".into()))
    );
}

#[test]
fn losses_count_and_a_lost_executor_stays_quarantined_when_it_registers_again() {
    let mut h = Harness::quarantining(&[("a", 2), ("b", 3)]);
    h.submit(TWO);
    let lose = |h: &mut Harness, at: Millis| {
        h.now = at;
        let c = h.ok(Event::ExecutorLost {
            executor: "a".into(),
            reason: "heartbeat timeout".into(),
        });
        h.run_all(&c);
    };
    lose(&mut h, 100);
    assert_eq!(h.quarantined("a"), None);
    h.register("a", 2);
    lose(&mut h, 200);
    assert_eq!(
        h.quarantined("a").as_deref(),
        Some("lost 2 times within 1h")
    );
    h.register("a", 2);
    assert!(h.quarantined("a").is_some(), "still quarantined");
    // A new job goes to b only.
    let c = h.ok(Event::SubmitJob {
        job: JobId(4),
        spec: JobSpec::from_toml(
            "name = \"one\"\n[[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"x\"]\n",
        )
        .unwrap(),
    });
    let targets: Vec<&str> = c
        .iter()
        .filter_map(|c| match c {
            Command::Deploy { executor, .. } => Some(executor.0.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, vec!["b"]);
    // The cool-down counts from the second loss.
    h.advance(10_200);
    assert_eq!(h.quarantined("a"), None);
}

#[test]
fn the_last_usable_executor_is_never_quarantined() {
    let mut h = Harness::quarantining(&[("a", 2)]);
    h.submit(TWO);
    h.fail("work#0", FailureClass::Recoverable);
    h.fail("work#1", FailureClass::Recoverable);
    assert_eq!(h.quarantined("a"), None);
    let skipped = h.notices_of("quarantine-skipped");
    assert_eq!(skipped.len(), 1);
    assert!(
        matches!(skipped[0], Notice::QuarantineSkipped { executor, reason }
            if executor.0 == "a" && reason.contains("2 task failures within 1h")
                && reason.contains("no other executor")),
        "{skipped:?}"
    );
    assert_eq!(
        h.executor_of("work#1").as_deref(),
        Some("a"),
        "still placed on a"
    );
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Running));
}

#[test]
fn losing_the_last_executor_out_of_quarantine_releases_the_quarantined_ones() {
    let mut h = Harness::quarantining(&[("a", 3), ("b", 2)]);
    h.submit(TWO);
    h.fail("work#0", FailureClass::Recoverable);
    h.fail("work#1", FailureClass::Recoverable);
    assert!(h.quarantined("a").is_some());
    let c = h.ok(Event::ExecutorLost {
        executor: "b".into(),
        reason: "gone".into(),
    });
    assert_eq!(h.quarantined("a"), None);
    assert!(
        h.notices_of("executor-released").iter().any(
            |n| matches!(n, Notice::ExecutorReleased { executor, reason }
                if executor.0 == "a" && reason.contains("no other registered executor"))
        ),
        "{:?}",
        h.notices
    );
    // The tasks b ran are redeployed on a.
    let on_a = c
        .iter()
        .filter(|c| matches!(c, Command::Deploy { executor, .. } if executor.0 == "a"))
        .count();
    assert_eq!(on_a, 2);
}

#[test]
fn quarantine_off_never_quarantines() {
    let mut h = Harness::new(
        CoreConfig {
            quarantine: QuarantineConfig::OFF,
            region_restart_budget: RestartBudgetConfig::OFF,
            ..CoreConfig::default()
        },
        &[("a", 3), ("b", 2)],
    );
    h.submit(TWO);
    for _ in 0..5 {
        h.fail("work#0", FailureClass::Recoverable);
        h.fail("work#1", FailureClass::Recoverable);
    }
    assert!(h.jm.quarantined_executors().next().is_none());
}

#[test]
fn a_region_over_its_restart_budget_fails_the_job_with_the_cause() {
    let mut h = Harness::new(
        CoreConfig {
            quarantine: QuarantineConfig::OFF,
            region_restart_budget: RestartBudgetConfig {
                max_restarts: 3,
                window_ms: 60_000,
            },
            ..CoreConfig::default()
        },
        &[("a", 2), ("b", 2)],
    );
    h.submit(TWO);
    for i in 0..3 {
        h.now = i * 1_000;
        h.fail("work#0", FailureClass::Recoverable);
        assert_eq!(h.jm.job_state(JOB), Some(JobState::Running), "restart {i}");
    }
    // Restarts older than the window no longer count: a fourth one a minute later is fine.
    h.now = 60_000;
    h.fail("work#0", FailureClass::Recoverable);
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Running));
    h.now = 60_500;
    h.fail("work#0", FailureClass::Recoverable);
    // The strategy allows 100 attempts, the budget only 3 within a minute.
    let cause = h.jm.job_cause(JOB).expect("failed with a cause").to_owned();
    assert!(
        matches!(
            h.jm.job_state(JOB),
            Some(JobState::Failing | JobState::Failed)
        ),
        "{:?}",
        h.jm.job_state(JOB)
    );
    assert_eq!(
        cause,
        "region 0 restarted 4 times within 1m, more than its budget of 3 \
         (scheduler.region-restart-budget.max-restarts); last failure: boom"
    );
    // The other region never restarted: it is cancelled with the job, not over a budget.
    assert_eq!(h.jm.counters(JOB).unwrap().region_restarts, vec![4, 0]);
}

#[test]
fn the_simulator_shows_quarantine_and_release_in_its_timeline() {
    let text = r#"
until = "30s"

[job]
name = "sim"
restart = { strategy = "fixed-delay", attempts = 100, delay = "0s" }
vertices = [{ id = "work", parallelism = 2, command = ["x"] }]

[[executors]]
id = "tm-1"
slots = 3

[[executors]]
id = "tm-2"
slots = 2

[quarantine]
max-task-failures = 2
duration = "10s"

[region-restart-budget]
max-restarts = 0

[[faults]]
at = "1s"
kind = "fail-task"
task = "work#0"

[[faults]]
at = "2s"
kind = "fail-task"
task = "work#1"
"#;
    let scenario =
        jobmaster::simulate::Scenario::parse(text, jobmaster::core::SpecFormat::Toml, |p| {
            Err(format!("no files ({p})"))
        })
        .expect("scenario parses");
    assert_eq!(scenario.core.quarantine.duration_ms, 10_000);
    assert_eq!(scenario.core.region_restart_budget.max_restarts, 0);
    let report = jobmaster::simulate::simulate(&scenario, true);
    let shown: Vec<(Millis, &str, Option<&str>, Option<&str>)> = report
        .events
        .iter()
        .filter(|e| e.kind.starts_with("executor-quarantined") || e.kind == "executor-released")
        .map(|e| (e.t_ms, e.kind, e.executor.as_deref(), e.detail.as_deref()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                2_000,
                "executor-quarantined",
                Some("tm-1"),
                Some("2 task failures within 1h; until t=12000ms")
            ),
            (
                12_000,
                "executor-released",
                Some("tm-1"),
                Some("cool-down of 10s ended")
            ),
        ]
    );
}

#[test]
fn a_region_that_fits_only_with_a_quarantined_executor_releases_it_instead_of_waiting() {
    let mut h = Harness::quarantining(&[("a", 3), ("b", 2)]);
    h.submit(TWO);
    h.fail("work#0", FailureClass::Recoverable);
    h.fail("work#1", FailureClass::Recoverable);
    assert!(h.quarantined("a").is_some());
    // b is full with the first job; a second job fits only on a.
    let (on_a, c) = h.second_job_deploys_on("a");
    assert_eq!(on_a, 2, "the new job runs at once on a: {c:?}");
    assert_eq!(h.quarantined("a"), None);
    assert_eq!(
        h.notices_of("executor-released"),
        vec![&Notice::ExecutorReleased {
            executor: "a".into(),
            reason: "released early: a region waiting for slots fits only with its slots".into()
        }]
    );
}

#[test]
fn one_task_that_always_fails_does_not_quarantine_the_executors_it_tries() {
    let mut h = Harness::quarantining(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    h.submit(
        r#"
name = "broken"
restart = { strategy = "fixed-delay", attempts = 100, delay = "0s" }
[[vertices]]
id = "work"
parallelism = 1
command = ["x"]
"#,
    );
    for _ in 0..12 {
        h.fail("work#0", FailureClass::Recoverable);
    }
    for e in ["a", "b", "c", "d"] {
        assert_eq!(h.quarantined(e), None, "{e}");
    }
    assert!(h.notices_of("executor-quarantined").is_empty());
}

#[test]
fn non_recoverable_failures_do_not_count() {
    // One failure would be enough here, were it counted.
    let one_strike = CoreConfig {
        quarantine: QuarantineConfig {
            max_task_failures: 1,
            ..QuarantineConfig::default()
        },
        ..CoreConfig::default()
    };
    let mut h = Harness::new(one_strike.clone(), &[("a", 3), ("b", 2)]);
    h.submit(TWO);
    h.fail("work#0", FailureClass::NonRecoverable);
    assert_eq!(h.quarantined("a"), None);
    let mut h = Harness::new(one_strike, &[("a", 3), ("b", 2)]);
    h.submit(TWO);
    h.fail("work#0", FailureClass::Recoverable);
    assert!(h.quarantined("a").is_some(), "a recoverable one counts");
}
