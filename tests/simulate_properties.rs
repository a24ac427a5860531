//! Property tests of the JobMaster core through `jmctl simulate`: random jobs, executors, run
//! times and fault timelines, checked against invariants read from the recorded timeline.
//!
//! * (a) a task never has two live attempts: an attempt is live from its `deploy` until its
//!   FINISHED / CANCELED / FAILED `task-state`;
//! * (b) nothing outside a restart set is cancelled: every `cancel` of an attempt follows a
//!   `restart-scheduled` naming its task (after that attempt's deploy), unless the job is
//!   FAILING or CANCELLING (everything stops) or already ended (stragglers are cancelled);
//! * (c) at `until` (120 s after the last fault, with short delays) the job is FINISHED, FAILED
//!   or CANCELED, or RUNNING with every task RUNNING or FINISHED — except tasks whose region
//!   still waits for a blocking/persistent input whose producer has not finished. Checked when
//!   the executors left at the end have a slot for every task; with fewer, a region may wait
//!   or time out forever, and only (a), (b) and the attempt checks apply;
//! * attempt numbers only grow, each attempt is deployed at most once, and the final attempt of
//!   a task is the highest one it ever had (the highest deployed one, or above it while CREATED).
//!
//! Deploy latency is at least 1 ms: with 0 ms, a deploy to a lost (not yet detected) executor
//! fails at the very instant of the restart, exponential-delay merges that failure into the
//! restart that just happened, and `simulate` never returns (a known bug, pinned by
//! `exponential_delay_counts_a_failure_after_the_restart_it_would_merge_into_has_happened` in
//! tests/simulate.rs).

mod sim_support;

use std::collections::{BTreeMap, BTreeSet};

use jobmaster::core::{ExecutionGraph, Regions};
use jobmaster::simulate::{SimReport, simulate};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sim_support::scenario;

const PATTERNS: [&str; 2] = ["pointwise", "all-to-all"];
const EXCHANGES: [&str; 3] = ["pipelined", "blocking", "persistent"];
const FAILOVERS: [&str; 3] = ["full", "region", "individual"];
const CLASSES: [&str; 4] = [
    "recoverable",
    "non-recoverable",
    "executor-lost",
    "partition-lost",
];

/// One injected fault; indices are reduced modulo what exists when the scenario is rendered.
#[derive(Debug, Clone)]
enum Fault {
    FailTask {
        task: usize,
        class: usize,
    },
    LoseExecutor {
        executor: usize,
    },
    /// `fresh`: a new executor id; otherwise an existing one registers again.
    AddExecutor {
        fresh: bool,
        executor: usize,
        slots: u32,
    },
    LosePartition {
        edge: usize,
        subtask: usize,
    },
}

#[derive(Debug, Clone)]
struct Case {
    parallelism: Vec<u32>,
    /// `(from, to, pattern, exchange)` with `from < to`, each pair once.
    edges: Vec<(usize, usize, usize, usize)>,
    failover: usize,
    restart: String,
    executors: Vec<u32>,
    /// Per vertex: run time in ms, `None` for forever.
    runtime: Vec<Option<u64>>,
    deploy_ms: u64,
    cancel_ms: u64,
    detection_ms: u64,
    /// Sorted by time.
    faults: Vec<(u64, Fault)>,
    seed: u64,
}

fn restart() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(r#"{ strategy = "none" }"#.to_owned()),
        3 => (0u32..=4, 0u64..=1000).prop_map(|(attempts, delay)| format!(
            r#"{{ strategy = "fixed-delay", attempts = {attempts}, delay = "{delay}ms" }}"#
        )),
        2 => (1u32..=3, 1u64..=20, 0u64..=1000).prop_map(|(max, interval, delay)| format!(
            r#"{{ strategy = "failure-rate", max-failures-per-interval = {max}, failure-rate-interval = "{interval}s", delay = "{delay}ms" }}"#
        )),
        3 => (
            10u64..=500,
            1u64..=10,
            1.0f64..3.0,
            0.0f64..1.0,
            prop::option::of(1u32..=6)
        )
            .prop_map(|(initial, factor, multiplier, jitter, attempts)| {
                let attempts = attempts
                    .map(|n| format!(", attempts-before-reset-backoff = {n}"))
                    .unwrap_or_default();
                format!(
                    r#"{{ strategy = "exponential-delay", initial-backoff = "{initial}ms", max-backoff = "{}ms", backoff-multiplier = {multiplier:.3}, jitter-factor = {jitter:.3}{attempts} }}"#,
                    initial * factor
                )
            }),
    ]
}

fn fault() -> impl Strategy<Value = (u64, Fault)> {
    let kind = prop_oneof![
        5 => (any::<usize>(), prop_oneof![6 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize), 2 => Just(3usize)])
            .prop_map(|(task, class)| Fault::FailTask { task, class }),
        2 => any::<usize>().prop_map(|executor| Fault::LoseExecutor { executor }),
        2 => (any::<bool>(), any::<usize>(), 1u32..=6)
            .prop_map(|(fresh, executor, slots)| Fault::AddExecutor { fresh, executor, slots }),
        2 => (any::<usize>(), any::<usize>())
            .prop_map(|(edge, subtask)| Fault::LosePartition { edge, subtask }),
    ];
    // Multiples of 10 ms, so faults often coincide with deploys, reports and timers.
    ((0u64..=3000).prop_map(|t| t * 10), kind)
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=8)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(1u32..=4, n),
                prop::collection::vec((0..n, 0..n, 0..2usize, 0..3usize), 0..=2 * n),
                0..3usize,
                restart(),
                prop::collection::vec(1u32..=6, 1..=4),
                prop::collection::vec(
                    prop_oneof![1 => Just(None), 2 => (1u64..=100).prop_map(|t| Some(t * 100))],
                    n,
                ),
                // Deploy latency from 1 ms: see the module comment.
                (1u64..=100, 0u64..=100, 0u64..=2000),
                prop::collection::vec(fault(), 0..=6),
                any::<u64>(),
            )
        })
        .prop_map(
            |(
                parallelism,
                raw_edges,
                failover,
                restart,
                executors,
                runtime,
                (deploy_ms, cancel_ms, detection_ms),
                mut faults,
                seed,
            )| {
                let mut pairs = BTreeSet::new();
                let edges = raw_edges
                    .into_iter()
                    .filter(|(a, b, _, _)| a != b)
                    .map(|(a, b, p, x)| (a.min(b), a.max(b), p, x))
                    .filter(|(a, b, _, _)| pairs.insert((*a, *b)))
                    .collect();
                faults.sort_by_key(|(t, _)| *t);
                Case {
                    parallelism,
                    edges,
                    failover,
                    restart,
                    executors,
                    runtime,
                    deploy_ms,
                    cancel_ms,
                    detection_ms,
                    faults,
                    seed,
                }
            },
        )
}

impl Case {
    fn task_names(&self) -> Vec<String> {
        self.parallelism
            .iter()
            .enumerate()
            .flat_map(|(v, &p)| (0..p).map(move |i| format!("v{v}#{i}")))
            .collect()
    }

    fn until_ms(&self) -> u64 {
        self.faults.last().map_or(0, |(t, _)| *t) + 120_000
    }

    /// The scenario as TOML text, and the slots of each executor registered at the end.
    fn render(&self, strict: bool) -> (String, BTreeMap<String, u32>) {
        let mut text = format!(
            "until = \"{}ms\"\nseed = {}\nslot-request-timeout = \"20s\"\n\n[job]\nname = \"random\"\nfailover = \"{}\"\nrestart = {}\nvertices = [\n",
            self.until_ms(),
            self.seed,
            FAILOVERS[self.failover],
            self.restart
        );
        for (v, p) in self.parallelism.iter().enumerate() {
            text += &format!("  {{ id = \"v{v}\", parallelism = {p}, command = [\"v{v}\"] }},\n");
        }
        text += "]\nedges = [\n";
        for &(from, to, p, x) in &self.edges {
            text += &format!(
                "  {{ from = \"v{from}\", to = \"v{to}\", pattern = \"{}\", exchange = \"{}\" }},\n",
                PATTERNS[p], EXCHANGES[x]
            );
        }
        text += "]\n";
        // Executors known so far (declared or added), and those alive at the end with slots.
        let mut known: Vec<String> = Vec::new();
        // Executors lost at a time whose detection is still pending, by id.
        let mut detected_at: BTreeMap<String, u64> = BTreeMap::new();
        let mut alive: BTreeMap<String, u32> = BTreeMap::new();
        for (i, slots) in self.executors.iter().enumerate() {
            let id = format!("tm-{i}");
            text += &format!("\n[[executors]]\nid = \"{id}\"\nslots = {slots}\n");
            known.push(id.clone());
            alive.insert(id, *slots);
        }
        text += "\n[runtime]\n";
        for (v, r) in self.runtime.iter().enumerate() {
            match r {
                Some(ms) => text += &format!("v{v} = \"{ms}ms\"\n"),
                None => text += &format!("v{v} = \"forever\"\n"),
            }
        }
        text += &format!(
            "\n[latency]\ndeploy = \"{}ms\"\ncancel = \"{}ms\"\ndetection = \"{}ms\"\n",
            self.deploy_ms, self.cancel_ms, self.detection_ms
        );
        let tasks = self.task_names();
        let mut added = 0;
        for (at, fault) in &self.faults {
            text += &format!("\n[[faults]]\nat = \"{at}ms\"\n");
            match fault {
                Fault::FailTask { task, class } => {
                    text += &format!(
                        "kind = \"fail-task\"\ntask = \"{}\"\nclass = \"{}\"\n",
                        tasks[task % tasks.len()],
                        CLASSES[*class]
                    );
                }
                Fault::LoseExecutor { executor } => {
                    let id = &known[executor % known.len()];
                    text += &format!("kind = \"lose-executor\"\nexecutor = \"{id}\"\n");
                    if alive.remove(id).is_some() {
                        detected_at.insert(id.clone(), at + self.detection_ms);
                    }
                }
                Fault::AddExecutor {
                    fresh,
                    executor,
                    slots,
                } => {
                    let reuse = known[executor % known.len()].clone();
                    // Registering again an id whose loss is not detected yet hits a known bug
                    // (the late detection kills the new session): outside the strict test,
                    // such a re-registration uses a fresh id.
                    let stale = detected_at.get(&reuse).is_some_and(|&d| d >= *at);
                    let id = if *fresh || (stale && !strict) {
                        added += 1;
                        let id = format!("tm-new-{added}");
                        known.push(id.clone());
                        id
                    } else {
                        reuse
                    };
                    text +=
                        &format!("kind = \"add-executor\"\nexecutor = \"{id}\"\nslots = {slots}\n");
                    alive.insert(id, *slots);
                }
                Fault::LosePartition { edge, subtask } => {
                    if self.edges.is_empty() {
                        // No partition to lose: fail a task instead.
                        text += &format!(
                            "kind = \"fail-task\"\ntask = \"{}\"\n",
                            tasks[subtask % tasks.len()]
                        );
                    } else {
                        let (from, to, _, _) = self.edges[edge % self.edges.len()];
                        let i = subtask % self.parallelism[from] as usize;
                        text += &format!(
                            "kind = \"lose-partition\"\npartition = \"v{from}#{i}->v{to}\"\n"
                        );
                    }
                }
            }
        }
        (text, alive)
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "FINISHED" | "CANCELED" | "FAILED")
}

/// Checks every invariant; `Err` describes the first violation.
fn check(text: &str, report: &SimReport, slots_at_end: u32, strict: bool) -> Result<(), String> {
    let scenario = scenario(text);
    let graph = ExecutionGraph::build(&scenario.spec);
    let regions = Regions::compute(&graph);
    let task_count = graph.task_count();

    let mut job_state = "CREATED";
    // Per task: live attempts, highest attempt seen, highest deployed attempt.
    let mut live: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut highest: BTreeMap<String, u32> = BTreeMap::new();
    let mut highest_deployed: BTreeMap<String, u32> = BTreeMap::new();
    let mut deployed_at: BTreeMap<(String, u32), usize> = BTreeMap::new();
    // Per task: index of the latest restart-scheduled event naming it.
    let mut restart_at: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_t = 0;

    for (i, e) in report.events.iter().enumerate() {
        let at = format!(
            "event {i} at {} ms ({} {:?} {:?})",
            e.t_ms, e.kind, e.task, e.attempt
        );
        if e.t_ms < last_t {
            return Err(format!("{at}: time goes backwards"));
        }
        last_t = e.t_ms;
        match e.kind {
            "job-state" => job_state = e.state.unwrap_or_default(),
            "restart-scheduled" => {
                // A regional restart leaves the job RUNNING; a full one makes it RESTARTING.
                if !matches!(job_state, "RUNNING" | "RESTARTING") {
                    return Err(format!(
                        "{at}: restart scheduled while the job is {job_state}"
                    ));
                }
                for t in e.tasks.iter().flatten() {
                    restart_at.insert(t.clone(), i);
                }
            }
            "deploy" | "task-state" | "cancel" => {
                let task = e.task.clone().ok_or(format!("{at}: no task"))?;
                let attempt = e.attempt.ok_or(format!("{at}: no attempt"))?;
                let top = highest.entry(task.clone()).or_insert(0);
                if attempt < *top && e.kind != "cancel" {
                    return Err(format!(
                        "{at}: attempt {attempt} after attempt {top} of {task}"
                    ));
                }
                *top = (*top).max(attempt);
                match e.kind {
                    "deploy" => {
                        if deployed_at.insert((task.clone(), attempt), i).is_some() {
                            return Err(format!("{at}: {task} attempt {attempt} deployed twice"));
                        }
                        if !matches!(job_state, "RUNNING" | "RESTARTING") {
                            return Err(format!("{at}: deploy while the job is {job_state}"));
                        }
                        let l = live.entry(task.clone()).or_default();
                        if !l.is_empty() {
                            return Err(format!(
                                "{at}: {task} attempt {attempt} deployed while attempts {l:?} are live"
                            ));
                        }
                        l.insert(attempt);
                        highest_deployed.insert(task, attempt);
                    }
                    "task-state" => {
                        if is_terminal(e.state.unwrap_or_default()) {
                            live.entry(task).or_default().remove(&attempt);
                        }
                    }
                    _ => {
                        // cancel
                        if matches!(
                            job_state,
                            "FAILING" | "CANCELLING" | "FAILED" | "CANCELED" | "FINISHED"
                        ) {
                            continue;
                        }
                        let Some(&deployed) = deployed_at.get(&(task.clone(), attempt)) else {
                            return Err(format!("{at}: cancel of an attempt never deployed"));
                        };
                        match restart_at.get(&task) {
                            Some(&r) if r > deployed => {}
                            _ => {
                                return Err(format!(
                                    "{at}: {task} attempt {attempt} cancelled while the job is \
                                     {job_state}, but no restart set since its deploy names it"
                                ));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    let f = &report.final_state;
    if f.job_state != job_state && !(job_state == "CREATED" && f.job_state == "UNKNOWN") {
        return Err(format!(
            "final job state {} but the timeline ends in {job_state}",
            f.job_state
        ));
    }
    if f.tasks.len() != task_count {
        return Err(format!(
            "{} tasks in the final state, {task_count} in the job",
            f.tasks.len()
        ));
    }

    // Attempt numbers of the final state.
    for t in &f.tasks {
        let top = highest.get(&t.task).copied().unwrap_or(0);
        if t.attempt != top {
            return Err(format!(
                "{}: final attempt {} but the highest attempt seen is {top}",
                t.task, t.attempt
            ));
        }
        let deployed = highest_deployed.get(&t.task).copied();
        let on_executor = matches!(
            t.state,
            "DEPLOYING" | "INITIALIZING" | "RUNNING" | "FINISHED" | "CANCELING"
        );
        if t.state == "CREATED" && deployed.is_some_and(|d| t.attempt <= d) {
            return Err(format!(
                "{}: CREATED at attempt {} although attempt {deployed:?} was deployed",
                t.task, t.attempt
            ));
        }
        if on_executor && deployed != Some(t.attempt) {
            return Err(format!(
                "{}: {} at attempt {} but the highest deployed attempt is {deployed:?}",
                t.task, t.state, t.attempt
            ));
        }
        // The final state agrees with the live set of the timeline.
        let is_live = live.get(&t.task).is_some_and(|l| l.contains(&t.attempt));
        let should_be_live = matches!(
            t.state,
            "DEPLOYING" | "INITIALIZING" | "RUNNING" | "CANCELING"
        );
        if is_live != should_be_live {
            return Err(format!(
                "{}: final state {} attempt {}, but the timeline says live = {is_live}",
                t.task, t.state, t.attempt
            ));
        }
    }

    // (c) the end state.
    match f.job_state {
        "FINISHED" => {
            if let Some(t) = f.tasks.iter().find(|t| t.state != "FINISHED") {
                return Err(format!("job FINISHED but {} is {}", t.task, t.state));
            }
        }
        "FAILED" | "CANCELED" => {
            if let Some(t) = f.tasks.iter().find(|t| !is_terminal(t.state)) {
                return Err(format!("job {} but {} is {}", f.job_state, t.task, t.state));
            }
            if f.job_state == "FAILED" && f.cause.is_none() {
                return Err("job FAILED without a cause".into());
            }
        }
        _ if slots_at_end < task_count as u32 => {}
        "RUNNING" => {
            let state: BTreeMap<&str, &str> =
                f.tasks.iter().map(|t| (t.task.as_str(), t.state)).collect();
            for t in &f.tasks {
                match t.state {
                    "RUNNING" | "FINISHED" => continue,
                    "CREATED" => {}
                    other => {
                        return Err(format!("job RUNNING at the end but {} is {other}", t.task));
                    }
                }
                // A CREATED task must be waiting for an unfinished producer outside its region.
                let task = graph.find_task(&t.task).expect("task of the job");
                let region = regions.region_of(task);
                let waits = regions.tasks(region).iter().any(|&member| {
                    graph.consumed_groups(member).any(|g| {
                        let group = graph.group(g);
                        group.exchange.is_reconsumable()
                            && group.producer_tasks().any(|p| {
                                regions.region_of(p) != region
                                    && (!strict
                                        || state[graph.task_name(p).to_string().as_str()]
                                            != "FINISHED")
                            })
                    })
                });
                if !waits {
                    return Err(format!(
                        "job RUNNING at the end, {} is CREATED and waits for no unfinished producer",
                        t.task
                    ));
                }
            }
        }
        other => {
            return Err(format!(
                "job {other} at the end although every task has a slot"
            ));
        }
    }
    Ok(())
}

fn run_case(case: &Case, strict: bool) -> Result<(), TestCaseError> {
    let (text, alive) = case.render(strict);
    let report = simulate(&scenario(&text), true);
    let slots: u32 = alive.values().sum();
    if let Err(violation) = check(&text, &report, slots, strict) {
        return Err(TestCaseError::fail(format!(
            "{violation}\n\n--- scenario ---\n{text}\n--- timeline ---\n{}",
            report.to_table(false)
        )));
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    })]

    /// Every invariant, strictly, on fresh random cases each run.
    #[test]
    fn random_jobs_and_faults_keep_the_failover_invariants(case in case()) {
        run_case(&case, true)?;
    }
}

/// The same from a fixed seed with more cases: the races it once caught (a late loss detection
/// taking down a re-registered executor, a region waiting for a lost input of a finished task,
/// a failure merged into a restart that had already happened) need rare timings to show.
#[test]
fn random_jobs_and_faults_keep_the_failover_invariants_strictly() {
    let config = Config {
        cases: 3_000,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    if let Err(e) = runner.run(&case(), |case| run_case(&case, true)) {
        panic!("{e}");
    }
}
