//! `jmctl simulate` scenarios that pin the JobMaster's failover behaviour end to end: the real
//! core against virtual executors and a virtual clock (DESIGN §3, §4 "Placement", §7 tier 1).
//!
//! Every scenario is TOML text with an inline `[job]` table, run through
//! `Scenario::parse` + `simulate`; the assertions read the recorded timeline and the final state.
//! Two properties need a failure the simulator cannot inject (a stale report, a consumer naming
//! the partition it misses); those drive `jobmaster::core::JobMaster` directly.

mod sim_support;

use std::collections::{BTreeMap, BTreeSet};

use jobmaster::core::{
    AttemptId, AttemptState, Command, CoreConfig, CoreError, Event, ExecutorId, Failure,
    FailureClass, JobId, JobMaster, JobSpec, Millis, Notice, Rejected, SpecFormat, TaskId, TimerId,
};
use jobmaster::simulate::{Scenario, SimReport, simulate};
use sim_support::{
    cancels, deploys, events, final_attempts, final_task, name_set, names, restart_sets,
    restarted_tasks, run, scenario, timeline,
};

/// The two-city streaming job of examples/city-orders.toml (Beijing and Shanghai, each a source
/// feeding an order processor pointwise through a pipelined exchange, parallelism 2): four
/// independent regions `{city-source#i, city-orders#i}`. `restart` is the inline restart table;
/// `rest` holds the scenario's faults and anything else.
fn two_cities(restart: &str, rest: &str) -> String {
    format!(
        r#"
until = "60s"

[job]
name = "city-orders"
failover = "region"
restart = {restart}
vertices = [
  {{ id = "beijing-source", parallelism = 2, command = ["my-source", "beijing"] }},
  {{ id = "beijing-orders", parallelism = 2, command = ["my-orders", "beijing"] }},
  {{ id = "shanghai-source", parallelism = 2, command = ["my-source", "shanghai"] }},
  {{ id = "shanghai-orders", parallelism = 2, command = ["my-orders", "shanghai"] }},
]
edges = [
  {{ from = "beijing-source", to = "beijing-orders", pattern = "pointwise", exchange = "pipelined" }},
  {{ from = "shanghai-source", to = "shanghai-orders", pattern = "pointwise", exchange = "pipelined" }},
]
{executors}
# These scenarios pin the restart strategies and fail tasks on the same executor repeatedly:
# quarantine would move the retried tasks (tests/quarantine.rs covers it).
[quarantine]
max-task-failures = 0
max-losses = 0

[runtime]
default = "forever"

[latency]
deploy = "50ms"
cancel = "20ms"

{rest}
"#,
        executors = executors(&[("tm-1", 4), ("tm-2", 4)]),
    )
}

const ALL_CITY_TASKS: [&str; 8] = [
    "beijing-source#0",
    "beijing-source#1",
    "beijing-orders#0",
    "beijing-orders#1",
    "shanghai-source#0",
    "shanghai-source#1",
    "shanghai-orders#0",
    "shanghai-orders#1",
];

/// One `[[faults]]` entry: `kind` at `at`, then `fields` (TOML lines) verbatim.
fn fault(at: &str, kind: &str, fields: &str) -> String {
    format!("\n[[faults]]\nat = \"{at}\"\nkind = \"{kind}\"\n{fields}\n")
}

fn fail_task(at: &str, task: &str, class: &str) -> String {
    fault(
        at,
        "fail-task",
        &format!("task = \"{task}\"\nclass = \"{class}\""),
    )
}

/// A `fail-task` fault with the default failure class.
fn fail(at: &str, task: &str) -> String {
    fault(at, "fail-task", &format!("task = \"{task}\""))
}

fn lose_partition(at: &str, partition: &str) -> String {
    fault(
        at,
        "lose-partition",
        &format!("partition = \"{partition}\""),
    )
}

fn lose_executor(at: &str, executor: &str) -> String {
    fault(at, "lose-executor", &format!("executor = \"{executor}\""))
}

fn add_executor(at: &str, executor: &str, slots: u32) -> String {
    fault(
        at,
        "add-executor",
        &format!("executor = \"{executor}\"\nslots = {slots}"),
    )
}

/// Recoverable `fail-task` faults, one per `(at, task)`.
fn recoverable_failures(failures: &[(&str, &str)]) -> String {
    failures
        .iter()
        .map(|(at, task)| fail_task(at, task, "recoverable"))
        .collect()
}

/// The `[[executors]]` tables, one per `(id, slots)`.
fn executors(list: &[(&str, u32)]) -> String {
    list.iter()
        .map(|(id, slots)| format!("\n[[executors]]\nid = \"{id}\"\nslots = {slots}\n"))
        .collect()
}

/// `(t, delay, merged)` of every `restart-scheduled` event, in order.
fn scheduled(report: &SimReport) -> Vec<(Millis, Option<Millis>, Option<bool>)> {
    events(report, "restart-scheduled")
        .into_iter()
        .map(|e| (e.t_ms, e.delay_ms, e.merged))
        .collect()
}

/// `(t, task)` of every deploy of attempt 1, in order.
fn redeploys(report: &SimReport) -> Vec<(Millis, String)> {
    events(report, "deploy")
        .into_iter()
        .filter(|e| e.attempt == Some(1))
        .map(|e| (e.t_ms, e.task.clone().unwrap_or_default()))
        .collect()
}

/// `(t, state)` of every `job-state` event, in order.
fn job_states(report: &SimReport) -> Vec<(Millis, &str)> {
    events(report, "job-state")
        .iter()
        .map(|e| (e.t_ms, e.state.unwrap_or_default()))
        .collect()
}

/// Final `(task, attempt)` pairs as `final_attempts` returns them.
fn attempts(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
    list.iter().map(|&(t, a)| (t.to_owned(), a)).collect()
}

// ----- 1. a task failure restarts only its region ---------------------------------------------

#[test]
fn task_failure_restarts_only_its_region_and_never_touches_the_other_city() {
    let report = run(&two_cities(
        r#"{ strategy = "fixed-delay", attempts = 3, delay = "500ms" }"#,
        &fail_task("5s", "beijing-orders#1", "recoverable"),
    ));
    let f = &report.final_state;
    assert_eq!(f.job_state, "RUNNING", "{}", timeline(&report));
    assert_eq!((f.failovers, f.restarts, f.full_restarts), (1, 1, 0));
    assert_eq!(f.tasks_restarted, 2);

    // The restart set is the failed task's pipelined region, nothing else.
    assert_eq!(
        restart_sets(&report),
        vec![names(&["beijing-source#1", "beijing-orders#1"])]
    );
    let scheduled = events(&report, "restart-scheduled");
    assert_eq!(scheduled[0].t_ms, 5_000);
    assert_eq!(scheduled[0].delay_ms, Some(500));
    assert_eq!(scheduled[0].merged, Some(false));

    // Only the failed task's region partner is cancelled (the failed task itself is FAILED).
    assert_eq!(cancels(&report), vec![("beijing-source#1".to_owned(), 0)]);

    // New attempts for that region only; every other task keeps attempt 0 and runs.
    assert_eq!(
        restarted_tasks(&report),
        name_set(&["beijing-source#1", "beijing-orders#1"])
    );
    for t in ALL_CITY_TASKS {
        let ft = final_task(&report, t);
        assert_eq!(ft.state, "RUNNING", "{t}");
        let expected = u32::from(t.ends_with("#1") && t.starts_with("beijing"));
        assert_eq!(ft.attempt, expected, "{t}");
    }
    // Shanghai's tasks were deployed exactly once and never saw anything but their first run.
    for e in &report.events {
        if let Some(t) = &e.task
            && t.starts_with("shanghai")
        {
            assert_eq!(e.attempt, Some(0), "{e:?}");
            assert!(
                !matches!(e.state, Some("CANCELING" | "CANCELED" | "FAILED")),
                "{e:?}"
            );
        }
    }
    // The redeploy happens after the backoff: 5 s + 500 ms.
    assert_eq!(
        redeploys(&report),
        vec![
            (5_500, "beijing-source#1".to_owned()),
            (5_500, "beijing-orders#1".to_owned())
        ]
    );
}

// ----- 2. an executor loss is one failover over its tasks and partitions ----------------------

/// tm-1 runs `stream#0` and hosts the blocking outputs of `a#0` (consumed by `b#0`, still
/// running on tm-2) and of `c#0` (consumed by `d#0`, already finished). tm-2 joins at 500 ms, so
/// the consumers land there.
fn executor_loss() -> String {
    let head = r#"
until = "20s"

[job]
name = "executor-loss"
failover = "region"
restart = { strategy = "fixed-delay", attempts = 5, delay = "500ms" }
vertices = [
  { id = "stream", parallelism = 1, command = ["stream"] },
  { id = "a", parallelism = 1, command = ["a"] },
  { id = "b", parallelism = 1, command = ["b"] },
  { id = "c", parallelism = 1, command = ["c"] },
  { id = "d", parallelism = 1, command = ["d"] },
]
edges = [
  { from = "a", to = "b", pattern = "pointwise", exchange = "blocking" },
  { from = "c", to = "d", pattern = "pointwise", exchange = "blocking" },
]
"#;
    let runtime = r#"
[runtime]
stream = "forever"
a = "1s"
b = "forever"
c = "1s"
d = "1s"
"#;
    [
        head,
        &executors(&[("tm-1", 3)]),
        runtime,
        &add_executor("500ms", "tm-2", 4),
        &lose_executor("5s", "tm-1"),
    ]
    .concat()
}

#[test]
fn executor_loss_restarts_its_tasks_and_producers_of_still_needed_partitions_in_one_failover() {
    let report = run(&executor_loss());
    let f = &report.final_state;
    // The placement this test relies on.
    let first: BTreeMap<String, String> = deploys(&report)
        .into_iter()
        .filter(|(_, a, _)| *a == 0)
        .map(|(t, _, e)| (t, e))
        .collect();
    assert_eq!(
        first,
        [
            ("stream#0", "tm-1"),
            ("a#0", "tm-1"),
            ("c#0", "tm-1"),
            ("b#0", "tm-2"),
            ("d#0", "tm-2"),
        ]
        .into_iter()
        .map(|(t, e)| (t.to_owned(), e.to_owned()))
        .collect(),
        "{}",
        timeline(&report)
    );
    assert_eq!(final_task(&report, "d#0").state, "FINISHED");

    // One failover: stream#0 (ran there), a#0 (its output is needed by the unfinished b#0) and
    // b#0 (consumer of the restarted a#0). c#0's output is gone too, but d#0 is done with it.
    assert_eq!(f.failovers, 1, "{}", timeline(&report));
    assert_eq!(f.restarts, 1);
    assert_eq!(
        restart_sets(&report),
        vec![names(&["stream#0", "a#0", "b#0"])]
    );
    assert_eq!(events(&report, "restart-scheduled")[0].t_ms, 5_000);
    assert_eq!(cancels(&report), vec![("b#0".to_owned(), 0)]);
    assert_eq!(
        final_attempts(&report),
        attempts(&[
            ("stream#0", 1),
            ("a#0", 1),
            ("b#0", 1),
            ("c#0", 0),
            ("d#0", 0)
        ])
    );
    assert_eq!(f.job_state, "RUNNING");
    for (t, state) in [
        ("stream#0", "RUNNING"),
        ("a#0", "FINISHED"),
        ("b#0", "RUNNING"),
        ("c#0", "FINISHED"),
        ("d#0", "FINISHED"),
    ] {
        let ft = final_task(&report, t);
        assert_eq!(ft.state, state, "{t}");
        if ft.attempt == 1 {
            assert_eq!(ft.executor.as_deref(), Some("tm-2"), "{t}");
        }
    }
}

// ----- 3. failures during the backoff -----------------------------------------------------------

#[test]
fn exponential_delay_merges_a_failure_during_the_backoff_into_the_pending_restart() {
    let report = run(&two_cities(
        r#"{ strategy = "exponential-delay", initial-backoff = "2s", max-backoff = "1min", jitter-factor = 0.0 }"#,
        &recoverable_failures(&[("5s", "beijing-orders#0"), ("5500ms", "shanghai-orders#1")]),
    ));
    let f = &report.final_state;
    assert_eq!(
        scheduled(&report),
        vec![
            (5_000, Some(2_000), Some(false)),
            // Joins the restart pending until 7 s: 1.5 s left, merged.
            (5_500, Some(1_500), Some(true)),
        ],
        "{}",
        timeline(&report)
    );
    assert_eq!(
        restart_sets(&report),
        vec![
            names(&["beijing-source#0", "beijing-orders#0"]),
            names(&["shanghai-source#1", "shanghai-orders#1"]),
        ]
    );
    assert_eq!((f.failovers, f.restarts), (2, 1));
    // Both regions come back together when the merged restart is due.
    assert_eq!(
        redeploys(&report).into_iter().collect::<BTreeSet<_>>(),
        [
            "beijing-source#0",
            "beijing-orders#0",
            "shanghai-source#1",
            "shanghai-orders#1"
        ]
        .into_iter()
        .map(|t| (7_000, t.to_owned()))
        .collect()
    );
    assert_eq!(f.job_state, "RUNNING");
    assert_eq!(
        restarted_tasks(&report),
        name_set(&[
            "beijing-source#0",
            "beijing-orders#0",
            "shanghai-source#1",
            "shanghai-orders#1"
        ])
    );
    // The exception history keeps one root failure with the merged one attached.
    assert_eq!(f.exceptions, 1);
}

#[test]
fn fixed_delay_counts_a_failure_during_the_backoff_as_a_second_restart() {
    let report = run(&two_cities(
        r#"{ strategy = "fixed-delay", attempts = 5, delay = "2s" }"#,
        &recoverable_failures(&[("5s", "beijing-orders#0"), ("5500ms", "shanghai-orders#1")]),
    ));
    let f = &report.final_state;
    assert_eq!(
        scheduled(&report),
        vec![
            (5_000, Some(2_000), Some(false)),
            (5_500, Some(2_000), Some(false)),
        ],
        "{}",
        timeline(&report)
    );
    assert_eq!((f.failovers, f.restarts), (2, 2));
    assert_eq!(f.exceptions, 2);
    // Each region comes back after its own delay.
    assert_eq!(
        redeploys(&report).into_iter().collect::<BTreeSet<_>>(),
        [
            (7_000, "beijing-source#0"),
            (7_000, "beijing-orders#0"),
            (7_500, "shanghai-source#1"),
            (7_500, "shanghai-orders#1"),
        ]
        .into_iter()
        .map(|(t, n)| (t, n.to_owned()))
        .collect()
    );
    assert_eq!(f.job_state, "RUNNING");
}

// ----- 4. fixed-delay gives up after its attempts ------------------------------------------------

#[test]
fn fixed_delay_with_three_attempts_fails_the_job_at_the_fourth_failure() {
    let faults = ["5s", "10s", "15s", "20s"].map(|at| (at, "beijing-orders#0"));
    let report = run(&two_cities(
        r#"{ strategy = "fixed-delay", attempts = 3, delay = "500ms" }"#,
        &recoverable_failures(&faults),
    ));
    let f = &report.final_state;
    // Three restarts, each of the failed region, then the job fails.
    assert_eq!(
        events(&report, "restart-scheduled")
            .iter()
            .map(|e| e.t_ms)
            .collect::<Vec<_>>(),
        vec![5_000, 10_000, 15_000],
        "{}",
        timeline(&report)
    );
    assert_eq!((f.failovers, f.restarts), (3, 3));
    assert_eq!(final_task(&report, "beijing-orders#0").attempt, 3);
    assert_eq!(f.job_state, "FAILED");
    let cause = f.cause.as_deref().unwrap_or_default();
    assert!(cause.contains("fixed-delay"), "{cause}");
    assert!(cause.contains("3 restart attempts"), "{cause}");
    // FAILING at the fourth failure, FAILED once every task stopped.
    let failing: Vec<(Millis, &str)> = job_states(&report)
        .into_iter()
        .filter(|(_, s)| matches!(*s, "FAILING" | "FAILED"))
        .collect();
    assert_eq!(failing, vec![(20_000, "FAILING"), (20_020, "FAILED")]);
    for t in &f.tasks {
        assert!(matches!(t.state, "CANCELED" | "FAILED"), "{t:?}");
    }
    assert_eq!(final_task(&report, "beijing-orders#0").state, "FAILED");
}

// ----- 5. failure-rate ------------------------------------------------------------------------

/// The two cities under a failure-rate strategy of two failures per 10 s, with the given
/// recoverable failures.
fn failure_rate_run(failures: &[(&str, &str)]) -> SimReport {
    run(&two_cities(
        r#"{ strategy = "failure-rate", max-failures-per-interval = 2, failure-rate-interval = "10s", delay = "100ms" }"#,
        &recoverable_failures(failures),
    ))
}

#[test]
fn failure_rate_refuses_one_failure_too_many_inside_the_interval() {
    let report = failure_rate_run(&[
        ("1s", "beijing-orders#0"),
        ("2s", "shanghai-orders#0"),
        ("3s", "beijing-orders#1"),
    ]);
    let f = &report.final_state;
    assert_eq!(restart_sets(&report).len(), 2, "{}", timeline(&report));
    assert_eq!((f.failovers, f.restarts), (2, 2));
    assert_eq!(f.job_state, "FAILED");
    let cause = f.cause.as_deref().unwrap_or_default();
    assert!(cause.contains("failure-rate"), "{cause}");
    let failing = events(&report, "job-state")
        .into_iter()
        .find(|e| e.state == Some("FAILING"))
        .expect("the job fails");
    assert_eq!(failing.t_ms, 3_000);
}

#[test]
fn failure_rate_allows_the_same_failure_once_the_interval_has_passed() {
    let report = failure_rate_run(&[
        ("1s", "beijing-orders#0"),
        ("2s", "shanghai-orders#0"),
        ("12s", "beijing-orders#1"),
    ]);
    let f = &report.final_state;
    assert_eq!(
        restart_sets(&report),
        vec![
            names(&["beijing-source#0", "beijing-orders#0"]),
            names(&["shanghai-source#0", "shanghai-orders#0"]),
            names(&["beijing-source#1", "beijing-orders#1"]),
        ],
        "{}",
        timeline(&report)
    );
    assert_eq!((f.failovers, f.restarts), (3, 3));
    assert_eq!(f.job_state, "RUNNING");
    assert_eq!(f.cause, None);
    for t in &f.tasks {
        assert_eq!(t.state, "RUNNING", "{t:?}");
        assert_eq!(
            t.attempt,
            u32::from(
                !t.task.starts_with("shanghai-source#1")
                    && !t.task.starts_with("shanghai-orders#1")
            ),
            "{t:?}"
        );
    }
}

// ----- 6. non-recoverable ---------------------------------------------------------------------

#[test]
fn non_recoverable_failure_fails_the_job_at_once_without_a_restart() {
    let report = run(&two_cities(
        r#"{ strategy = "fixed-delay", attempts = 10, delay = "100ms" }"#,
        &fail_task("5s", "shanghai-orders#0", "non-recoverable"),
    ));
    let f = &report.final_state;
    assert!(
        events(&report, "restart-scheduled").is_empty(),
        "{}",
        timeline(&report)
    );
    assert_eq!((f.failovers, f.restarts), (0, 0));
    assert_eq!(f.job_state, "FAILED");
    let cause = f.cause.as_deref().unwrap_or_default();
    assert!(cause.contains("non-recoverable"), "{cause}");
    assert_eq!(
        job_states(&report),
        vec![(0, "RUNNING"), (5_000, "FAILING"), (5_020, "FAILED")]
    );
    // The failed task is FAILED; the seven others were cancelled, each once, at attempt 0.
    let cancelled: BTreeSet<String> = cancels(&report).into_iter().map(|(t, _)| t).collect();
    let mut others = name_set(&ALL_CITY_TASKS);
    others.remove("shanghai-orders#0");
    assert_eq!(cancelled, others);
    assert_eq!(cancels(&report).len(), 7);
    for t in &f.tasks {
        let expected = if t.task == "shanghai-orders#0" {
            "FAILED"
        } else {
            "CANCELED"
        };
        assert_eq!((t.state, t.attempt), (expected, 0), "{t:?}");
    }
    // Nothing is deployed after the failure.
    assert!(events(&report, "deploy").iter().all(|e| e.t_ms == 0));
}

// ----- driving the core directly ------------------------------------------------------------------

/// The core with a virtual clock and the timers it asked for.
struct Core {
    jm: JobMaster,
    now: Millis,
    timers: Vec<(Millis, TimerId)>,
}

const JOB: JobId = JobId(7);

impl Core {
    fn new(spec_toml: &str, executors: &[(&str, u32)]) -> Core {
        let spec = JobSpec::parse(spec_toml, SpecFormat::Toml).expect("test spec is valid");
        let mut core = Core {
            jm: JobMaster::new(CoreConfig::default()),
            now: 0,
            timers: Vec::new(),
        };
        for (id, slots) in executors {
            core.ok(Event::ExecutorRegistered {
                executor: ExecutorId::from(*id),
                slots: *slots,
                labels: Default::default(),
                holds: Default::default(),
            });
        }
        core.ok(Event::SubmitJob { job: JOB, spec });
        core
    }

    fn handle(&mut self, event: Event) -> Result<Vec<Command>, Rejected> {
        let result = self.jm.handle(event, self.now);
        let commands = match &result {
            Ok(c) => c,
            Err(r) => &r.commands,
        };
        for c in commands {
            if let Command::SetTimer { timer, at } = c {
                self.timers.push((*at, *timer));
            }
        }
        result
    }

    fn ok(&mut self, event: Event) -> Vec<Command> {
        let e = format!("{event:?}");
        self.handle(event)
            .unwrap_or_else(|r| panic!("{e} was rejected: {r:?}"))
    }

    /// Advances the clock to `t`, firing every timer due by then.
    fn advance(&mut self, t: Millis) -> Vec<Command> {
        let mut out = Vec::new();
        loop {
            self.timers.sort();
            match self.timers.first() {
                Some(&(at, timer)) if at <= t => {
                    self.timers.remove(0);
                    self.now = self.now.max(at);
                    out.extend(self.ok(Event::TimerFired { timer }));
                }
                _ => break,
            }
        }
        self.now = t;
        out
    }

    fn task(&self, name: &str) -> TaskId {
        self.jm
            .graph(JOB)
            .and_then(|g| g.find_task(name))
            .unwrap_or_else(|| panic!("no task {name}"))
    }

    fn name(&self, t: TaskId) -> String {
        self.jm.graph(JOB).expect("job").task_name(t).to_string()
    }

    fn attempt(&self, name: &str) -> AttemptId {
        let t = self.task(name);
        let view = self.jm.task(JOB, t).expect("task");
        AttemptId {
            job: JOB,
            task: t,
            attempt: view.attempt,
        }
    }

    fn executor_of(&self, name: &str) -> ExecutorId {
        self.jm
            .task(JOB, self.task(name))
            .and_then(|v| v.executor)
            .unwrap_or_else(|| panic!("{name} has no executor"))
    }

    fn state(&self, name: &str) -> AttemptState {
        self.jm.task(JOB, self.task(name)).expect("task").state
    }

    /// The current attempt of `name` reports `state` from its executor.
    fn report(
        &mut self,
        name: &str,
        state: AttemptState,
        failure: Option<Failure>,
    ) -> Vec<Command> {
        let attempt = self.attempt(name);
        let executor = self.executor_of(name);
        self.ok(Event::TaskStateChanged {
            executor,
            attempt,
            state,
            failure,
        })
    }

    /// Task names of the `RestartScheduled` notices among `commands`.
    fn restart_sets(&self, commands: &[Command]) -> Vec<Vec<String>> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Notify(Notice::RestartScheduled { tasks, .. }) => {
                    Some(tasks.iter().map(|&t| self.name(t)).collect())
                }
                _ => None,
            })
            .collect()
    }

    /// Task names of the `Deploy` commands among `commands`.
    fn deployed(&self, commands: &[Command]) -> Vec<String> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Deploy { attempt, .. } => Some(self.name(attempt.task)),
                _ => None,
            })
            .collect()
    }
}

// ----- 7. stale attempts --------------------------------------------------------------------------

#[test]
fn stale_attempt_report_is_rejected_with_a_cancel_and_changes_nothing() {
    let mut core = Core::new(
        r#"
name = "one"
restart = { strategy = "fixed-delay", attempts = 3, delay = "1s" }
[[vertices]]
id = "v"
parallelism = 1
command = ["v"]
"#,
        &[("tm-1", 2)],
    );
    core.now = 10;
    core.report("v#0", AttemptState::Running, None);
    let old = core.attempt("v#0");
    assert_eq!(old.attempt, 0);
    core.now = 1_000;
    let commands = core.report(
        "v#0",
        AttemptState::Failed,
        Some(Failure::recoverable("boom")),
    );
    assert_eq!(core.restart_sets(&commands), vec![names(&["v#0"])]);
    let commands = core.advance(2_000);
    assert_eq!(core.deployed(&commands), names(&["v#0"]));
    core.now = 2_010;
    core.report("v#0", AttemptState::Running, None);
    let current = core.attempt("v#0");
    assert_eq!(current.attempt, 1);

    let before_view = core.jm.task(JOB, current.task);
    let before_counters = core.jm.counters(JOB).cloned();
    let before_job = core.jm.job_state(JOB);
    let before_executors: Vec<(ExecutorId, u32, u32, usize)> = core
        .jm
        .executors()
        .map(|(e, s, f, p)| (e.clone(), s, f, p))
        .collect();

    // A late RUNNING report of attempt 0: refused, and the executor is told to cancel it.
    core.now = 3_000;
    let stale = core.handle(Event::TaskStateChanged {
        executor: ExecutorId::from("tm-1"),
        attempt: old,
        state: AttemptState::Running,
        failure: None,
    });
    assert_eq!(
        stale,
        Err(Rejected {
            error: CoreError::StaleAttempt {
                task: "v#0".into(),
                attempt: 0,
                current: 1,
            },
            commands: vec![Command::Cancel {
                attempt: old,
                executor: ExecutorId::from("tm-1"),
            }],
        })
    );

    // A late FAILED report of attempt 0: refused too, and it starts no failover.
    let stale = core.handle(Event::TaskStateChanged {
        executor: ExecutorId::from("tm-1"),
        attempt: old,
        state: AttemptState::Failed,
        failure: Some(Failure::recoverable("late news")),
    });
    let Err(Rejected { error, commands }) = stale else {
        panic!("a stale FAILED report was accepted: {stale:?}");
    };
    assert_eq!(
        error,
        CoreError::StaleAttempt {
            task: "v#0".into(),
            attempt: 0,
            current: 1,
        }
    );
    assert!(
        commands.iter().all(|c| !matches!(
            c,
            Command::Deploy { .. } | Command::Notify(Notice::RestartScheduled { .. })
        )),
        "{commands:?}"
    );

    // Nothing changed: the task still runs attempt 1 on tm-1.
    assert_eq!(core.jm.task(JOB, current.task), before_view);
    assert_eq!(core.state("v#0"), AttemptState::Running);
    assert_eq!(core.attempt("v#0"), current);
    assert_eq!(core.jm.counters(JOB).cloned(), before_counters);
    assert_eq!(core.jm.job_state(JOB), before_job);
    let after_executors: Vec<(ExecutorId, u32, u32, usize)> = core
        .jm
        .executors()
        .map(|(e, s, f, p)| (e.clone(), s, f, p))
        .collect();
    assert_eq!(after_executors, before_executors);
}

// ----- 8. lost partitions nobody needs ------------------------------------------------------------

/// `a → b` (blocking) is a small batch; `stream` runs forever beside it. With two executors of
/// two slots, `stream#0` lands on tm-1 and `a#0`, `b#0` on tm-2.
fn batch_beside_stream(faults: &str) -> String {
    format!(
        r#"
until = "30s"

[job]
name = "batch-beside-stream"
failover = "region"
restart = {{ strategy = "fixed-delay", attempts = 5, delay = "500ms" }}
vertices = [
  {{ id = "stream", parallelism = 1, command = ["stream"] }},
  {{ id = "a", parallelism = 1, command = ["a"] }},
  {{ id = "b", parallelism = 1, command = ["b"] }},
]
edges = [
  {{ from = "a", to = "b", pattern = "pointwise", exchange = "blocking" }},
]
{executors}
[runtime]
stream = "forever"
a = "1s"
b = "1s"

{faults}
"#,
        executors = executors(&[("tm-1", 2), ("tm-2", 2)]),
    )
}

#[test]
fn lost_partition_whose_consumers_all_finished_restarts_nothing() {
    let report = run(&batch_beside_stream(
        &(lose_partition("5s", "a#0->b") + &lose_executor("6s", "tm-2")),
    ));
    let f = &report.final_state;
    assert_eq!(
        deploys(&report),
        vec![
            ("stream#0".to_owned(), 0, "tm-1".to_owned()),
            ("a#0".to_owned(), 0, "tm-2".to_owned()),
            ("b#0".to_owned(), 0, "tm-2".to_owned()),
        ],
        "{}",
        timeline(&report)
    );
    assert_eq!(final_task(&report, "b#0").state, "FINISHED");
    assert!(events(&report, "restart-scheduled").is_empty());
    assert!(events(&report, "cancel").is_empty());
    assert_eq!((f.failovers, f.restarts, f.exceptions), (0, 0, 0));
    assert_eq!(events(&report, "executor-lost").len(), 1);
    assert_eq!(f.job_state, "RUNNING");
    for (t, state) in [
        ("stream#0", "RUNNING"),
        ("a#0", "FINISHED"),
        ("b#0", "FINISHED"),
    ] {
        assert_eq!(
            (final_task(&report, t).state, final_task(&report, t).attempt),
            (state, 0)
        );
    }
}

#[test]
fn lost_partition_with_a_running_consumer_restarts_producer_and_consumer() {
    // The control for the test above: the same loss while b#0 still reads a#0's output.
    let report = run(&batch_beside_stream(&lose_partition("1500ms", "a#0->b")));
    let f = &report.final_state;
    assert_eq!(
        restart_sets(&report),
        vec![names(&["a#0", "b#0"])],
        "{}",
        timeline(&report)
    );
    assert_eq!((f.failovers, f.restarts), (1, 1));
    assert_eq!(cancels(&report), vec![("b#0".to_owned(), 0)]);
    assert_eq!(
        final_attempts(&report),
        attempts(&[("stream#0", 0), ("a#0", 1), ("b#0", 1)])
    );
    assert_eq!(f.job_state, "RUNNING");
    assert_eq!(final_task(&report, "b#0").state, "FINISHED");
}

#[test]
fn lost_partition_or_executor_after_the_job_finished_restarts_nothing() {
    let job = r#"
until = "30s"

[job]
name = "batch"
failover = "region"
restart = { strategy = "fixed-delay", attempts = 5, delay = "500ms" }
vertices = [
  { id = "a", parallelism = 2, command = ["a"] },
  { id = "b", parallelism = 1, command = ["b"] },
]
edges = [
  { from = "a", to = "b", pattern = "all-to-all", exchange = "blocking" },
]
"#;
    let report = run(&[
        job,
        &executors(&[("tm-1", 2), ("tm-2", 2)]),
        "\n[runtime]\na = \"1s\"\nb = \"1s\"\n",
        &lose_partition("5s", "a#0->b"),
        &lose_executor("6s", "tm-1"),
        &lose_executor("7s", "tm-2"),
    ]
    .concat());
    let f = &report.final_state;
    let finished = events(&report, "job-state")
        .into_iter()
        .find(|e| e.state == Some("FINISHED"))
        .unwrap_or_else(|| panic!("the job never finished\n{}", timeline(&report)));
    assert_eq!(finished.t_ms, 2_020);
    assert_eq!(f.job_state, "FINISHED");
    assert!(events(&report, "restart-scheduled").is_empty());
    assert!(events(&report, "cancel").is_empty());
    assert_eq!((f.failovers, f.restarts, f.exceptions), (0, 0, 0));
    // Nothing happens to the job after it finished, apart from the executors going away.
    assert!(
        report
            .events
            .iter()
            .filter(|e| e.t_ms > finished.t_ms)
            .all(|e| matches!(e.kind, "fault" | "executor-lost")),
        "{}",
        timeline(&report)
    );
    for t in &f.tasks {
        assert_eq!((t.state, t.attempt), ("FINISHED", 0), "{t:?}");
    }
}

// ----- 9. a consumer reports a missing partition --------------------------------------------------

const READ_SUM: &str = r#"
name = "read-sum"
restart = { strategy = "fixed-delay", attempts = 3, delay = "1s" }
[[vertices]]
id = "read"
parallelism = 2
command = ["read"]
[[vertices]]
id = "sum"
parallelism = 1
command = ["sum"]
[[edges]]
from = "read"
to = "sum"
pattern = "all-to-all"
exchange = "blocking"
"#;

/// `read#0`, `read#1` finished; `sum#0` runs, reading both outputs.
fn read_sum_running() -> Core {
    let mut core = Core::new(READ_SUM, &[("tm-1", 2), ("tm-2", 2)]);
    core.now = 10;
    core.report("read#0", AttemptState::Running, None);
    core.report("read#1", AttemptState::Running, None);
    core.now = 1_000;
    core.report("read#0", AttemptState::Finished, None);
    let commands = core.report("read#1", AttemptState::Finished, None);
    assert_eq!(core.deployed(&commands), names(&["sum#0"]));
    core.now = 1_010;
    core.report("sum#0", AttemptState::Running, None);
    core
}

#[test]
fn consumer_missing_a_partition_puts_its_producer_region_into_the_failover() {
    let mut core = read_sum_running();
    let read1 = core.task("read#1");
    let partition = core
        .jm
        .graph(JOB)
        .expect("job")
        .produced_partitions(read1)
        .next()
        .expect("read#1 produces a partition");
    assert_eq!(core.jm.partition_available(JOB, partition), Some(true));

    core.now = 2_000;
    let commands = core.report(
        "sum#0",
        AttemptState::Failed,
        Some(Failure {
            class: FailureClass::PartitionLost,
            message: "cannot fetch read#1->sum".into(),
            partition: Some(partition),
        }),
    );
    assert_eq!(
        core.restart_sets(&commands),
        vec![names(&["read#1", "sum#0"])]
    );
    assert_eq!(core.jm.partition_available(JOB, partition), Some(false));
    assert_eq!(core.jm.counters(JOB).map(|c| c.failovers), Some(1));

    // After the backoff read#1 runs again; sum#0 waits for its output, read#0 is left alone.
    let commands = core.advance(3_000);
    assert_eq!(core.deployed(&commands), names(&["read#1"]));
    assert_eq!(core.attempt("read#0").attempt, 0);
    assert_eq!(core.state("read#0"), AttemptState::Finished);
    assert_eq!(core.attempt("read#1").attempt, 1);
    assert_eq!(core.attempt("sum#0").attempt, 1);
    assert_eq!(core.state("sum#0"), AttemptState::Created);
    core.now = 3_010;
    core.report("read#1", AttemptState::Running, None);
    core.now = 4_000;
    let commands = core.report("read#1", AttemptState::Finished, None);
    assert_eq!(core.deployed(&commands), names(&["sum#0"]));
}

#[test]
fn consumer_failure_without_a_missing_partition_restarts_the_consumer_alone() {
    // The control: the same failure as recoverable restarts only sum#0.
    let mut core = read_sum_running();
    core.now = 2_000;
    let commands = core.report(
        "sum#0",
        AttemptState::Failed,
        Some(Failure::recoverable("sum crashed")),
    );
    assert_eq!(core.restart_sets(&commands), vec![names(&["sum#0"])]);
    let commands = core.advance(3_000);
    assert_eq!(core.deployed(&commands), names(&["sum#0"]));
    assert_eq!(core.attempt("read#0").attempt, 0);
    assert_eq!(core.attempt("read#1").attempt, 0);
}

// ----- 10. placement avoids the executor that just failed ----------------------------------------

/// One task per vertex (each `vertices` id its own command) on tm-1 and tm-2 of `slots` each;
/// `v#0` fails at 5 s and restarts after 500 ms.
fn v_fails_on_two_executors(name: &str, vertices: &[&str], slots: u32) -> String {
    let vertices: String = vertices
        .iter()
        .map(|id| format!("  {{ id = \"{id}\", parallelism = 1, command = [\"{id}\"] }},\n"))
        .collect();
    format!(
        r#"
until = "20s"

[job]
name = "{name}"
restart = {{ strategy = "fixed-delay", attempts = 3, delay = "500ms" }}
vertices = [
{vertices}]
{executors}{fault}"#,
        executors = executors(&[("tm-1", slots), ("tm-2", slots)]),
        fault = fail("5s", "v#0"),
    )
}

#[test]
fn redeploy_avoids_the_executor_that_just_failed_when_another_has_a_free_slot() {
    let report = run(&v_fails_on_two_executors("one-task", &["v"], 2));
    // Both executors are empty at the redeploy, and ties go to tm-1: only the avoidance rule
    // sends attempt 1 to tm-2.
    assert_eq!(
        deploys(&report),
        vec![
            ("v#0".to_owned(), 0, "tm-1".to_owned()),
            ("v#0".to_owned(), 1, "tm-2".to_owned()),
        ],
        "{}",
        timeline(&report)
    );
    let v = final_task(&report, "v#0");
    assert_eq!(
        (v.state, v.attempt, v.executor.as_deref()),
        ("RUNNING", 1, Some("tm-2"))
    );
}

#[test]
fn redeploy_returns_to_the_failed_executor_when_no_other_has_a_free_slot() {
    let report = run(&v_fails_on_two_executors("two-tasks", &["v", "w"], 1));
    assert_eq!(
        deploys(&report),
        vec![
            ("v#0".to_owned(), 0, "tm-1".to_owned()),
            ("w#0".to_owned(), 0, "tm-2".to_owned()),
            ("v#0".to_owned(), 1, "tm-1".to_owned()),
        ],
        "{}",
        timeline(&report)
    );
    assert_eq!(report.final_state.job_state, "RUNNING");
}

// ----- 11. slot request timeout -------------------------------------------------------------------

/// One pipelined all-to-all region of four tasks, on executors with three slots in all.
fn too_big_region(restart: &str, faults: &str) -> String {
    format!(
        r#"
until = "30s"
slot-request-timeout = "5s"

[job]
name = "too-big"
restart = {restart}
vertices = [
  {{ id = "src", parallelism = 2, command = ["src"] }},
  {{ id = "dst", parallelism = 2, command = ["dst"] }},
]
edges = [
  {{ from = "src", to = "dst", pattern = "all-to-all", exchange = "pipelined" }},
]
{executors}
{faults}
"#,
        executors = executors(&[("tm-1", 2), ("tm-2", 1)]),
    )
}

#[test]
fn region_without_slots_within_the_timeout_fails_the_job_when_no_restart_is_allowed() {
    let report = run(&too_big_region(r#"{ strategy = "none" }"#, ""));
    let f = &report.final_state;
    assert!(
        events(&report, "deploy").is_empty(),
        "{}",
        timeline(&report)
    );
    assert!(events(&report, "restart-scheduled").is_empty());
    assert_eq!(f.job_state, "FAILED");
    let cause = f.cause.as_deref().unwrap_or_default();
    assert!(cause.contains("slots"), "{cause}");
    assert!(cause.contains("none"), "{cause}");
    assert_eq!(
        job_states(&report),
        vec![(0, "RUNNING"), (5_000, "FAILING"), (5_000, "FAILED")]
    );
    for t in &f.tasks {
        assert!(matches!(t.state, "FAILED" | "CANCELED"), "{t:?}");
        assert_eq!(t.attempt, 0, "{t:?}");
    }
}

#[test]
fn region_without_slots_within_the_timeout_fails_recoverably_and_runs_once_slots_come() {
    let report = run(&too_big_region(
        r#"{ strategy = "fixed-delay", attempts = 1, delay = "1s" }"#,
        &add_executor("8s", "tm-3", 1),
    ));
    let f = &report.final_state;
    let scheduled = events(&report, "restart-scheduled");
    assert_eq!(scheduled.len(), 1, "{}", timeline(&report));
    assert_eq!(scheduled[0].t_ms, 5_000);
    assert_eq!(
        scheduled[0].tasks.clone().unwrap_or_default(),
        names(&["src#0", "src#1", "dst#0", "dst#1"])
    );
    let detail = scheduled[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("no free slots"), "{detail}");
    // Attempt 1 waits from 6 s; the fourth slot arrives at 8 s.
    assert!(events(&report, "deploy").iter().all(|e| e.t_ms == 8_000));
    assert_eq!(events(&report, "deploy").len(), 4);
    assert_eq!(f.job_state, "RUNNING");
    for t in &f.tasks {
        assert_eq!((t.state, t.attempt), ("RUNNING", 1), "{t:?}");
    }
}

// ----- 12. determinism ----------------------------------------------------------------------------

#[test]
fn same_scenario_gives_the_same_bytes() {
    let job = r#"
until = "2min"
seed = 42

[job]
name = "busy"
failover = "region"
restart = { strategy = "exponential-delay", initial-backoff = "200ms", max-backoff = "5s", jitter-factor = 0.5 }
vertices = [
  { id = "src", parallelism = 3, command = ["src"] },
  { id = "map", parallelism = 3, command = ["map"] },
  { id = "agg", parallelism = 2, command = ["agg"] },
  { id = "sink", parallelism = 1, command = ["sink"] },
]
edges = [
  { from = "src", to = "map", pattern = "pointwise", exchange = "pipelined" },
  { from = "map", to = "agg", pattern = "all-to-all", exchange = "blocking" },
  { from = "agg", to = "sink", pattern = "all-to-all", exchange = "persistent" },
]
"#;
    let runtime = r#"
[runtime]
src = "3s"
map = "3s"
agg = "forever"
sink = "forever"

[latency]
deploy = "30ms"
cancel = "15ms"
detection = "700ms"
"#;
    let text = &[
        job,
        &executors(&[("tm-1", 3), ("tm-2", 3)]),
        runtime,
        &fail("1s", "map#1"),
        &fail("1100ms", "src#2"),
        &lose_executor("4s", "tm-1"),
        &add_executor("5s", "tm-3", 4),
        &lose_partition("12s", "agg#0->sink"),
        &fail("15s", "agg#1"),
    ]
    .concat();
    let first = simulate(&scenario(text), true);
    let second = simulate(&scenario(text), true);
    assert!(first.events.len() > 50, "{}", timeline(&first));
    assert!(first.final_state.failovers >= 3, "{}", timeline(&first));
    assert_eq!(first.to_json(), second.to_json());
    assert_eq!(first.to_table(false), second.to_table(false));
    // Without recording, the final state is the same too.
    let quiet = simulate(&scenario(text), false);
    assert!(quiet.events.is_empty());
    assert_eq!(quiet.final_state, first.final_state);
}

// ----- 13. the batch word count example ---------------------------------------------------------

#[test]
fn wordcount_example_finishes_and_reruns_only_read_1_and_the_counts() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let text = std::fs::read_to_string(examples.join("sim-wordcount.toml")).expect("example");
    let load = |path: &str| {
        std::fs::read_to_string(examples.join(path)).map_err(|e| format!("{path}: {e}"))
    };
    let scenario = Scenario::parse(&text, SpecFormat::Toml, load).expect("example parses");
    let report = simulate(&scenario, true);
    let f = &report.final_state;
    assert_eq!(f.job_state, "FINISHED", "{}", timeline(&report));
    assert_eq!(f.cause, None);
    assert_eq!((f.failovers, f.restarts, f.full_restarts), (1, 1, 0));
    assert_eq!(
        restart_sets(&report),
        vec![names(&["read#1", "count#0", "count#1"])]
    );
    assert_eq!(
        restarted_tasks(&report),
        name_set(&["read#1", "count#0", "count#1"])
    );
    assert_eq!(
        final_attempts(&report),
        attempts(&[
            ("read#0", 0),
            ("read#1", 1),
            ("read#2", 0),
            ("read#3", 0),
            ("count#0", 1),
            ("count#1", 1),
            ("write#0", 0),
        ])
    );
    for t in &f.tasks {
        assert_eq!(t.state, "FINISHED", "{t:?}");
    }
    // Only those three were deployed twice; write ran once, after the second counts.
    let mut runs: BTreeMap<String, u32> = BTreeMap::new();
    for (t, _, _) in deploys(&report) {
        *runs.entry(t).or_default() += 1;
    }
    assert_eq!(runs.values().filter(|&&n| n == 2).count(), 3);
    assert_eq!(runs.values().sum::<u32>(), 10);
}

// ----- bugs found by these tests (ignored until fixed) --------------------------------------------

/// `a#0` (1 s) and `b#0` (forever) feed `c#0` (1 s) on one executor: `a → c` blocking, `b → c`
/// pipelined, so `b#0` and `c#0` share a region. Fixed-delay restarts, three attempts.
fn a_and_b_into_c(name: &str, failover: &str, delay: &str, faults: &str) -> String {
    format!(
        r#"
until = "60s"

[job]
name = "{name}"
failover = "{failover}"
restart = {{ strategy = "fixed-delay", attempts = 3, delay = "{delay}" }}
vertices = [
  {{ id = "a", parallelism = 1, command = ["a"] }},
  {{ id = "b", parallelism = 1, command = ["b"] }},
  {{ id = "c", parallelism = 1, command = ["c"] }},
]
edges = [
  {{ from = "a", to = "c", pattern = "pointwise", exchange = "blocking" }},
  {{ from = "b", to = "c", pattern = "pointwise", exchange = "pipelined" }},
]
{executors}
[runtime]
a = "1s"
b = "forever"
c = "1s"
{faults}"#,
        executors = executors(&[("tm-1", 3)]),
    )
}

#[test]
fn individual_restart_is_not_blocked_by_a_lost_input_of_a_finished_region_mate() {
    // b#0 and c#0 share a pipelined region; c#0 also reads a#0's blocking output. c#0 finishes,
    // a#0's output is lost (no unfinished consumer: correctly, nothing restarts), then b#0 fails.
    // `individual` restarts b#0 alone; b#0 reads nothing, so it must run again.
    let report = run(&a_and_b_into_c(
        "individual-stuck",
        "individual",
        "100ms",
        &(lose_partition("5s", "a#0->c") + &fail("6s", "b#0")),
    ));
    assert_eq!(restart_sets(&report), vec![names(&["b#0"])]);
    let b = final_task(&report, "b#0");
    assert_eq!(
        (b.state, b.attempt),
        ("RUNNING", 1),
        "{}",
        timeline(&report)
    );
}

#[test]
fn partition_lost_during_the_backoff_of_its_finished_consumer_restarts_the_producer() {
    // b#0 fails at 5 s: its region {b#0, c#0} (c#0 already FINISHED) restarts at 6 s. At 5.5 s
    // c#0's blocking input a#0->c is lost: c#0 will need it again, so a#0 must run again.
    let report = run(&a_and_b_into_c(
        "lost-during-backoff",
        "region",
        "1s",
        &(fail("5s", "b#0") + &lose_partition("5500ms", "a#0->c")),
    ));
    assert_eq!(restart_sets(&report).first(), Some(&names(&["b#0", "c#0"])));
    assert_eq!(
        final_attempts(&report),
        attempts(&[("a#0", 1), ("b#0", 1), ("c#0", 1)]),
        "{}",
        timeline(&report)
    );
    for (t, state) in [("a#0", "FINISHED"), ("b#0", "RUNNING"), ("c#0", "FINISHED")] {
        assert_eq!(
            final_task(&report, t).state,
            state,
            "{t}\n{}",
            timeline(&report)
        );
    }
}

#[test]
fn exponential_delay_counts_a_failure_after_the_restart_it_would_merge_into_has_happened() {
    let mut core = Core::new(
        r#"
name = "one"
restart = { strategy = "exponential-delay", initial-backoff = "100ms", backoff-multiplier = 2.0, jitter-factor = 0.0 }
[[vertices]]
id = "v"
parallelism = 1
command = ["v"]
"#,
        &[("tm-1", 1)],
    );
    core.now = 10;
    core.report("v#0", AttemptState::Running, None);
    core.now = 1_000;
    core.report(
        "v#0",
        AttemptState::Failed,
        Some(Failure::recoverable("first")),
    );
    // The restart is due at 1 100 ms and happens then: attempt 1 is deployed.
    let commands = core.advance(1_100);
    assert_eq!(core.deployed(&commands), names(&["v#0"]));
    assert_eq!(core.attempt("v#0").attempt, 1);
    // Attempt 1 fails at that same millisecond (e.g. its deploy RPC was refused at once).
    let commands = core.report(
        "v#0",
        AttemptState::Failed,
        Some(Failure::recoverable("second")),
    );
    let scheduled: Vec<(Millis, bool)> = commands
        .iter()
        .filter_map(|c| match c {
            Command::Notify(Notice::RestartScheduled {
                delay_ms, merged, ..
            }) => Some((*delay_ms, *merged)),
            _ => None,
        })
        .collect();
    // A new restart, the second one, after initial · multiplier = 200 ms.
    assert_eq!(scheduled, vec![(200, false)]);
    assert_eq!(core.jm.counters(JOB).map(|c| c.restarts), Some(2));
}

#[test]
fn late_loss_detection_does_not_kill_the_new_session_of_a_re_registered_executor() {
    let job = r#"
until = "30s"

[job]
name = "re-register"
restart = { strategy = "fixed-delay", attempts = 5, delay = "100ms" }
vertices = [{ id = "v", parallelism = 1, command = ["v"] }]
"#;
    let report = run(&[
        job,
        &executors(&[("tm-1", 1)]),
        "\n[latency]\ndetection = \"2s\"\n",
        &lose_executor("5s", "tm-1"),
        &add_executor("6s", "tm-1", 1),
    ]
    .concat());
    // Registering again ends the old session (one failover); the new session then runs v#0.
    let f = &report.final_state;
    assert_eq!(f.failovers, 1, "{}", timeline(&report));
    let v = final_task(&report, "v#0");
    assert_eq!(
        (v.state, v.attempt, v.executor.as_deref()),
        ("RUNNING", 1, Some("tm-1")),
        "{}",
        timeline(&report)
    );
}
