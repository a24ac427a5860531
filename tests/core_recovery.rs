//! A JobMaster core restarted from what it made durable (DESIGN §3 RECONCILING, §4
//! Persistence): adoption of the attempts executors still run, stale ones cancelled, finished
//! producers' surviving partitions kept, one failover per job for what nobody reported, ended
//! jobs never resurrected.

use std::collections::BTreeMap;

use jobmaster::core::{
    AttemptId, AttemptState, Changes, Command, CoreConfig, Event, ExecutorId, Holdings, JobId,
    JobMaster, JobRecord, JobSpec, JobState, Millis, PartitionHost, PartitionId, StoredJob, TaskId,
    TaskRecord,
};

const JOB: JobId = JobId(7);
const TIMEOUT: Millis = 10_000;

/// Two independent pipelined regions: a#0 -> b#0 and a#1 -> b#1.
const STREAMING: &str = r#"
name = "s"
[[vertices]]
id = "a"
parallelism = 2
command = ["x"]
[[vertices]]
id = "b"
parallelism = 2
command = ["x"]
[[edges]]
from = "a"
to = "b"
pattern = "pointwise"
exchange = "pipelined"
"#;

/// A batch job: p (2 tasks) -> c (1 task) over a blocking all-to-all exchange.
const BATCH: &str = r#"
name = "b"
[[vertices]]
id = "p"
parallelism = 2
command = ["x"]
[[vertices]]
id = "c"
parallelism = 1
command = ["x"]
[[edges]]
from = "p"
to = "c"
pattern = "all-to-all"
exchange = "blocking"
"#;

/// What a store would hold: the latest record of everything committed.
#[derive(Default)]
struct Stored {
    spec: Option<JobSpec>,
    jobs: BTreeMap<JobId, JobRecord>,
    tasks: BTreeMap<(JobId, TaskId), TaskRecord>,
    partitions: BTreeMap<(JobId, PartitionId), PartitionHost>,
}

impl Stored {
    fn apply(&mut self, c: Changes) {
        for j in c.jobs {
            self.jobs.insert(j.id, j);
        }
        for (j, t, r) in c.tasks {
            self.tasks.insert((j, t), r);
        }
        for (j, p, h) in c.partitions {
            if h == PartitionHost::Unavailable {
                self.partitions.remove(&(j, p));
            } else {
                self.partitions.insert((j, p), h);
            }
        }
    }

    fn jobs(&self) -> Vec<StoredJob> {
        self.jobs
            .values()
            .map(|r| StoredJob {
                spec: self.spec.clone().expect("a spec"),
                record: r.clone(),
                tasks: self
                    .tasks
                    .iter()
                    .filter(|((j, _), _)| *j == r.id)
                    .map(|((_, t), rec)| (*t, rec.clone()))
                    .collect(),
                partitions: self
                    .partitions
                    .iter()
                    .filter(|((j, _), _)| *j == r.id)
                    .map(|((_, p), h)| (*p, h.clone()))
                    .collect(),
            })
            .collect()
    }
}

struct Harness {
    jm: JobMaster,
    now: Millis,
    stored: Stored,
    /// Commands of the restored core's start.
    restored: Vec<Command>,
}

fn config() -> CoreConfig {
    CoreConfig {
        cancel_timeout_ms: 1_000,
        ..CoreConfig::default()
    }
}

impl Harness {
    fn new(executors: &[(&str, u32)], spec: &str) -> Harness {
        let mut h = Harness {
            jm: JobMaster::new(config()),
            now: 0,
            stored: Stored::default(),
            restored: Vec::new(),
        };
        for (id, slots) in executors {
            h.register(id, *slots, Holdings::default());
        }
        let spec = JobSpec::from_toml(spec).expect("valid spec");
        h.stored.spec = Some(spec.clone());
        h.ok(Event::SubmitJob { job: JOB, spec });
        h
    }

    /// Handles `event` and commits its changes, as the daemon does every turn.
    fn ok(&mut self, event: Event) -> Vec<Command> {
        let out = self
            .jm
            .handle(event, self.now)
            .unwrap_or_else(|r| panic!("event refused: {}", r.error));
        let changes = self.jm.take_changes();
        self.stored.apply(changes);
        out
    }

    fn register(&mut self, id: &str, slots: u32, holds: Holdings) -> Vec<Command> {
        self.ok(Event::ExecutorRegistered {
            executor: ExecutorId::from(id),
            slots,
            labels: Default::default(),
            holds,
        })
    }

    fn task(&self, name: &str) -> TaskId {
        self.jm.graph(JOB).unwrap().find_task(name).unwrap()
    }

    fn view(&self, name: &str) -> jobmaster::core::TaskView {
        self.jm.task(JOB, self.task(name)).unwrap()
    }

    fn attempt(&self, name: &str) -> AttemptId {
        AttemptId {
            job: JOB,
            task: self.task(name),
            attempt: self.view(name).attempt,
        }
    }

    fn report(&mut self, name: &str, state: AttemptState) -> Vec<Command> {
        let v = self.view(name);
        let executor = v.executor.clone().expect("placed");
        let attempt = self.attempt(name);
        self.ok(Event::TaskStateChanged {
            executor,
            attempt,
            state,
            failure: None,
        })
    }

    /// The JobMaster process dies and a new one starts on the store at `now + gap`.
    fn restart(&mut self, gap: Millis) {
        self.now += gap;
        let (jm, commands) =
            JobMaster::restore(config(), self.stored.jobs(), self.now, TIMEOUT).expect("restore");
        self.jm = jm;
        self.restored = commands;
    }

    /// What executor `id` holds: its attempts (in `state`) and partitions.
    fn holds(&self, tasks: &[(&str, AttemptState)], partitions: &[(&str, u32)]) -> Holdings {
        let graph = self.jm.graph(JOB).unwrap();
        Holdings {
            attempts: tasks.iter().map(|(n, s)| (self.attempt(n), *s)).collect(),
            partitions: partitions
                .iter()
                .map(|(producer, attempt)| {
                    let t = graph.find_task(producer).unwrap();
                    let c = graph.find_vertex("c").unwrap();
                    (JOB, graph.partition_to(t, c).unwrap(), *attempt)
                })
                .collect(),
        }
    }

    fn fire_reconcile_timeout(&mut self) -> Vec<Command> {
        let timer = self
            .restored
            .iter()
            .filter_map(|c| match c {
                Command::SetTimer { timer, at } if *at == self.now + TIMEOUT => Some(*timer),
                _ => None,
            })
            .next_back()
            .expect("a reconcile timer");
        self.now += TIMEOUT;
        self.ok(Event::TimerFired { timer })
    }
}

fn deploys(out: &[Command]) -> usize {
    out.iter()
        .filter(|c| matches!(c, Command::Deploy { .. }))
        .count()
}

fn cancels(out: &[Command]) -> Vec<AttemptId> {
    out.iter()
        .filter_map(|c| match c {
            Command::Cancel { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

/// A streaming job whose four tasks run on e1 (a#0, b#0) and e2 (a#1, b#1).
fn running_streaming() -> Harness {
    let mut h = Harness::new(&[("e1", 2), ("e2", 2)], STREAMING);
    for t in ["a#0", "b#0", "a#1", "b#1"] {
        h.report(t, AttemptState::Running);
    }
    h
}

fn on(h: &Harness, name: &str) -> String {
    h.view(name).executor.expect("placed").0
}

/// The streaming job's tasks the store placed on executor `e`.
fn tasks_on<'a>(h: &Harness, e: &str) -> Vec<&'a str> {
    ["a#0", "b#0", "a#1", "b#1"]
        .into_iter()
        .filter(|t| on(h, t) == e)
        .collect()
}

/// What executor `e` tells a restarted core: `tasks` RUNNING, no partitions.
fn running(h: &Harness, tasks: &[&str]) -> Holdings {
    let held: Vec<(&str, AttemptState)> =
        tasks.iter().map(|t| (*t, AttemptState::Running)).collect();
    h.holds(&held, &[])
}

#[test]
fn a_restarted_core_adopts_every_reported_attempt_and_restarts_nothing() {
    let mut h = running_streaming();
    let before: Vec<u32> = ["a#0", "b#0", "a#1", "b#1"]
        .iter()
        .map(|t| h.view(t).attempt)
        .collect();
    h.restart(500);
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Reconciling));
    assert_eq!(h.view("a#0").state, AttemptState::Reconciling);
    let e1 = tasks_on(&h, "e1");
    let e2 = tasks_on(&h, "e2");
    let holds = running(&h, &e1);
    let out = h.register("e1", 2, holds);
    assert_eq!(deploys(&out), 0);
    assert!(cancels(&out).is_empty());
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Reconciling));
    let holds = running(&h, &e2);
    let out = h.register("e2", 2, holds);
    assert_eq!(deploys(&out), 0, "{out:?}");
    assert!(cancels(&out).is_empty(), "{out:?}");
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Running));
    let after: Vec<u32> = ["a#0", "b#0", "a#1", "b#1"]
        .iter()
        .map(|t| h.view(t).attempt)
        .collect();
    assert_eq!(after, before, "attempt numbers are unchanged");
    for t in ["a#0", "b#0", "a#1", "b#1"] {
        assert_eq!(h.view(t).state, AttemptState::Running, "{t}");
    }
    let counters = h.jm.counters(JOB).unwrap();
    assert_eq!(counters.adopted, 4);
    assert_eq!(counters.tasks_restarted, 0);
    assert_eq!(counters.recoveries, 1);
    // The adopted attempts hold their slots: nothing else fits.
    let out = h.ok(Event::Heartbeat {
        executor: ExecutorId::from("e1"),
        attempts: e1.iter().map(|t| h.attempt(t)).collect(),
    });
    assert!(cancels(&out).is_empty());
}

#[test]
fn what_nobody_reported_fails_over_at_the_timeout_as_one_failover_of_its_regions_only() {
    let mut h = running_streaming();
    h.restart(500);
    let e1 = tasks_on(&h, "e1");
    let holds = running(&h, &e1);
    h.register("e1", 2, holds);
    h.register("e3", 2, Holdings::default());
    // e2 never comes back.
    h.fire_reconcile_timeout();
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Running));
    let counters = h.jm.counters(JOB).unwrap().clone();
    assert_eq!(counters.failovers, 1, "one failover for the job");
    assert_eq!(counters.tasks_restarted, 2, "only e2's region");
    for t in e1 {
        assert_eq!(h.view(t).state, AttemptState::Running, "{t} untouched");
        assert_eq!(h.view(t).attempt, 0);
    }
}

#[test]
fn an_executor_back_without_an_attempt_fails_it_over_without_waiting_for_the_timeout() {
    let mut h = running_streaming();
    h.restart(500);
    let e1 = tasks_on(&h, "e1");
    let e2 = tasks_on(&h, "e2");
    let holds = h.holds(&[(e1[0], AttemptState::Running)], &[]);
    h.register("e1", 2, holds);
    let holds = running(&h, &e2);
    h.register("e2", 2, holds);
    // Nothing left unreported: reconciliation is over, one failover for e1's missing task.
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Running));
    let counters = h.jm.counters(JOB).unwrap();
    assert_eq!(counters.failovers, 1);
    assert_eq!(counters.tasks_restarted, 2);
    assert_eq!(counters.adopted, 3);
}

#[test]
fn a_stale_or_unknown_attempt_is_cancelled_not_adopted() {
    let mut h = running_streaming();
    h.restart(500);
    let t = ["a#0", "b#0", "a#1", "b#1"]
        .into_iter()
        .find(|t| on(&h, t) == "e1")
        .unwrap();
    let mut stale = h.attempt(t);
    stale.attempt += 1; // never recorded: not the current attempt
    let out = h.register(
        "e1",
        2,
        Holdings {
            attempts: vec![(stale, AttemptState::Running)],
            partitions: Vec::new(),
        },
    );
    assert_eq!(cancels(&out), vec![stale]);
    assert_eq!(
        h.view(t).state,
        AttemptState::Failed,
        "its current attempt is gone"
    );
}

#[test]
fn a_batch_job_keeps_finished_producers_whose_partitions_survived() {
    let mut h = Harness::new(&[("e1", 2), ("e2", 2)], BATCH);
    for p in ["p#0", "p#1"] {
        h.report(p, AttemptState::Running);
        h.report(p, AttemptState::Finished);
    }
    h.report("c#0", AttemptState::Running);
    let hosts: Vec<(String, String)> = ["p#0", "p#1", "c#0"]
        .iter()
        .map(|t| (t.to_string(), on(&h, t)))
        .collect();
    h.restart(1_000);
    for e in ["e1", "e2"] {
        let tasks: Vec<(&str, AttemptState)> = hosts
            .iter()
            .filter(|(t, x)| x == e && t == "c#0")
            .map(|_| ("c#0", AttemptState::Running))
            .collect();
        let partitions: Vec<(&str, u32)> = hosts
            .iter()
            .filter(|(t, x)| x == e && t.starts_with('p'))
            .map(|(t, _)| (t.as_str(), 0))
            .collect();
        let holds = h.holds(&tasks, &partitions);
        let out = h.register(e, 2, holds);
        assert_eq!(deploys(&out), 0, "{out:?}");
    }
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Running));
    assert_eq!(h.view("p#0").state, AttemptState::Finished);
    assert_eq!(h.view("p#0").attempt, 0, "the producer does not run again");
    assert_eq!(h.view("c#0").state, AttemptState::Running);
    h.report("c#0", AttemptState::Finished);
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Finished));
}

#[test]
fn a_lost_partition_that_a_consumer_still_needs_reruns_its_producer_after_the_timeout() {
    let mut h = Harness::new(&[("e1", 2), ("e2", 2)], BATCH);
    for p in ["p#0", "p#1"] {
        h.report(p, AttemptState::Running);
        h.report(p, AttemptState::Finished);
    }
    let p0_host = on(&h, "p#0");
    h.restart(1_000);
    // Only the executor that did not host p#0 comes back (with its partitions), and a fresh one.
    let other = if p0_host == "e1" { "e2" } else { "e1" };
    let partitions: Vec<(&str, u32)> = ["p#1"]
        .into_iter()
        .filter(|_| on(&h, "p#1") == other)
        .map(|p| (p, 0))
        .collect();
    let holds = h.holds(&[], &partitions);
    h.register(other, 2, holds);
    h.register("e3", 2, Holdings::default());
    let out = h.fire_reconcile_timeout();
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Running));
    // The restart comes after the strategy's backoff.
    let (timer, at) = out
        .iter()
        .filter_map(|c| match c {
            Command::SetTimer { timer, at } => Some((*timer, *at)),
            _ => None,
        })
        .max_by_key(|(_, at)| *at)
        .expect("a restart timer");
    h.now = at;
    h.ok(Event::TimerFired { timer });
    assert_eq!(h.view("p#0").attempt, 1, "p#0 runs again");
    assert_eq!(h.jm.counters(JOB).unwrap().failovers, 1);
}

#[test]
fn an_ended_job_stays_ended_after_a_restart() {
    let mut h = Harness::new(&[("e1", 4)], BATCH);
    for t in ["p#0", "p#1", "c#0"] {
        h.report(t, AttemptState::Running);
        h.report(t, AttemptState::Finished);
    }
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Finished));
    h.restart(1_000);
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Finished));
    assert!(
        h.restored
            .iter()
            .all(|c| !matches!(c, Command::SetTimer { .. })),
        "nothing to reconcile: {:?}",
        h.restored
    );
    let out = h.register("e1", 4, Holdings::default());
    assert_eq!(deploys(&out), 0);
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Finished));
}

#[test]
fn a_job_cancelled_while_reconciling_cancels_what_is_adopted_and_ends_canceled() {
    let mut h = running_streaming();
    h.restart(500);
    h.ok(Event::CancelJob { job: JOB });
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Cancelling));
    let e1 = tasks_on(&h, "e1");
    let holds = running(&h, &e1);
    let out = h.register("e1", 2, holds);
    assert_eq!(
        cancels(&out).len(),
        2,
        "adopted only to be cancelled: {out:?}"
    );
    for t in &e1 {
        h.report(t, AttemptState::Canceled);
    }
    h.fire_reconcile_timeout();
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Canceled));
}

#[test]
fn restored_state_is_not_written_back_until_it_changes() {
    let mut h = running_streaming();
    h.restart(500);
    assert!(h.jm.take_changes().is_empty());
}

// ----- property: the store misses no change, and a restart with every executor back changes
// nothing ------------------------------------------------------------------------------------

mod property {
    use std::collections::{BTreeMap, BTreeSet};

    use jobmaster::core::{
        AttemptState, Command, Event, ExecutorId, Failure, Holdings, JobId, JobMaster, JobState,
        PartitionHost, TimerId,
    };
    use proptest::prelude::*;

    use super::{BATCH, Harness, JOB, STREAMING, TIMEOUT, config};

    /// Every record as JSON, keyed: what a store holds.
    fn as_json(h: &Harness) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        for (id, r) in &h.stored.jobs {
            out.insert(format!("job {id}"), serde_json::to_value(r).unwrap());
        }
        for ((j, t), r) in &h.stored.tasks {
            out.insert(
                format!("task {j} {}", t.0),
                serde_json::to_value(r).unwrap(),
            );
        }
        for ((j, p), host) in &h.stored.partitions {
            out.insert(
                format!("partition {j} {}", p.0),
                serde_json::to_value(host).unwrap(),
            );
        }
        out
    }

    fn live_json(jm: &JobMaster) -> BTreeMap<String, serde_json::Value> {
        let all = jm.all_records();
        let mut out = BTreeMap::new();
        for r in &all.jobs {
            out.insert(format!("job {}", r.id), serde_json::to_value(r).unwrap());
        }
        for (j, t, r) in &all.tasks {
            out.insert(
                format!("task {j} {}", t.0),
                serde_json::to_value(r).unwrap(),
            );
        }
        for (j, p, host) in &all.partitions {
            out.insert(
                format!("partition {j} {}", p.0),
                serde_json::to_value(host).unwrap(),
            );
        }
        out
    }

    /// Runs a step, refused or not, and commits its changes; remembers its timers.
    fn step(h: &mut Harness, timers: &mut BTreeMap<TimerId, u64>, event: Event) {
        let out = match h.jm.handle(event, h.now) {
            Ok(out) => out,
            Err(rejected) => rejected.commands,
        };
        h.stored.apply(h.jm.take_changes());
        for c in out {
            match c {
                Command::SetTimer { timer, at } => {
                    timers.insert(timer, at);
                }
                Command::CancelTimer { timer } => {
                    timers.remove(&timer);
                }
                _ => {}
            }
        }
    }

    fn run(spec: &str, steps: &[(u8, u16)]) -> Harness {
        let executors = ["e1", "e2", "e3"];
        let mut h = Harness::new(&[("e1", 2), ("e2", 2), ("e3", 2)], spec);
        let mut timers = BTreeMap::new();
        let names: Vec<String> =
            h.jm.tasks(JOB)
                .unwrap()
                .iter()
                .map(|t| t.name.clone())
                .collect();
        for &(kind, pick) in steps {
            let name = names[pick as usize % names.len()].clone();
            let v = h.view(&name);
            let attempt = h.attempt(&name);
            match kind % 6 {
                0 | 1 => {
                    let next = match v.state {
                        AttemptState::Deploying | AttemptState::Initializing => {
                            AttemptState::Running
                        }
                        AttemptState::Running => AttemptState::Finished,
                        AttemptState::Canceling => AttemptState::Canceled,
                        _ => continue,
                    };
                    if let Some(executor) = v.executor {
                        step(
                            &mut h,
                            &mut timers,
                            Event::TaskStateChanged {
                                executor,
                                attempt,
                                state: next,
                                failure: None,
                            },
                        );
                    }
                }
                2 => {
                    let task = h.task(&name);
                    step(
                        &mut h,
                        &mut timers,
                        Event::InjectFailure {
                            job: JOB,
                            task,
                            failure: Failure::recoverable("drill"),
                        },
                    )
                }
                3 => {
                    let e = ExecutorId::from(executors[pick as usize % executors.len()]);
                    step(
                        &mut h,
                        &mut timers,
                        Event::ExecutorLost {
                            executor: e.clone(),
                            reason: "test".into(),
                        },
                    );
                    step(
                        &mut h,
                        &mut timers,
                        Event::ExecutorRegistered {
                            executor: e,
                            slots: 2,
                            labels: Default::default(),
                            holds: Holdings::default(),
                        },
                    );
                }
                _ => {
                    h.now += 1_500;
                    let due: Vec<TimerId> = timers
                        .iter()
                        .filter(|(_, at)| **at <= h.now)
                        .map(|(t, _)| *t)
                        .collect();
                    for timer in due {
                        timers.remove(&timer);
                        step(&mut h, &mut timers, Event::TimerFired { timer });
                    }
                }
            }
        }
        h
    }

    /// What every registered executor really holds, as it would tell a new JobMaster.
    fn truth(jm: &JobMaster) -> BTreeMap<String, Holdings> {
        let mut out: BTreeMap<String, Holdings> = BTreeMap::new();
        for (e, _, _, _) in jm.executors() {
            out.insert(e.0.clone(), Holdings::default());
        }
        for t in jm.tasks(JOB).unwrap() {
            let Some(e) = &t.executor else { continue };
            if t.state.is_on_executor()
                && let Some(h) = out.get_mut(&e.0)
            {
                let state = match t.state {
                    AttemptState::Canceling => AttemptState::Running,
                    s => s,
                };
                h.attempts.push((
                    jobmaster::core::AttemptId {
                        job: JOB,
                        task: t.task,
                        attempt: t.attempt,
                    },
                    state,
                ));
            }
        }
        let graph = jm.graph(JOB).unwrap();
        for p in 0..graph.partition_count() {
            let p = jobmaster::core::PartitionId(p as u32);
            if let Some(PartitionHost::Executor(e)) = jm.partition_host(JOB, p)
                && let Some(h) = out.get_mut(&e.0)
            {
                let producer = graph.producer_of(p);
                let attempt = jm.task(JOB, producer).unwrap().attempt;
                h.partitions.push((JOB, p, attempt));
            }
        }
        out
    }

    fn check(spec: &str, steps: &[(u8, u16)]) -> Result<(), TestCaseError> {
        let mut h = run(spec, steps);
        // 1. The store holds exactly what the live core would write.
        prop_assert_eq!(as_json(&h), live_json(&h.jm));
        // 2. Restart; every executor comes back with what it holds: nothing restarts.
        let before: BTreeMap<String, (u32, AttemptState)> =
            h.jm.tasks(JOB)
                .unwrap()
                .into_iter()
                .map(|t| (t.name.clone(), (t.attempt, t.state)))
                .collect();
        let state = h.jm.job_state(JOB).unwrap();
        let failovers = h.jm.counters(JOB).unwrap().failovers;
        let holdings = truth(&h.jm);
        h.restart(100);
        for (e, holds) in holdings {
            h.register(&e, 2, holds);
        }
        prop_assert!(!h.jm.reconciling(), "every executor is back");
        let after = h.jm.job_state(JOB).unwrap();
        // A full restart that was pending may have fired meanwhile.
        prop_assert!(
            after == state || (state == JobState::Restarting && after == JobState::Running),
            "{} -> {}",
            state,
            after
        );
        prop_assert_eq!(h.jm.counters(JOB).unwrap().failovers, failovers);
        // Running attempts are adopted as they are. (A restart that was pending may fire
        // once the job is reconciled: it replaces tasks that had stopped or finished, never a
        // running one, and is no new failover.)
        for t in h.jm.tasks(JOB).unwrap() {
            let (attempt, was) = before[&t.name];
            if matches!(was, AttemptState::Running | AttemptState::Initializing) {
                prop_assert_eq!(t.attempt, attempt, "{} attempt", t.name);
                prop_assert_eq!(t.state, was, "{} state", t.name);
            } else {
                prop_assert!(t.attempt <= attempt + 1, "{} attempt", t.name);
            }
        }
        let _ = (TIMEOUT, config(), BTreeSet::<u8>::new(), JobId(0));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn the_store_misses_no_change_and_a_full_reconnect_restarts_nothing_streaming(
            steps in prop::collection::vec((0u8..6, any::<u16>()), 0..40)
        ) {
            check(STREAMING, &steps)?;
        }

        #[test]
        fn the_store_misses_no_change_and_a_full_reconnect_restarts_nothing_batch(
            steps in prop::collection::vec((0u8..6, any::<u16>()), 0..40)
        ) {
            check(BATCH, &steps)?;
        }
    }
}
