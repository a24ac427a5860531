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
    let e1: Vec<&str> = ["a#0", "b#0", "a#1", "b#1"]
        .into_iter()
        .filter(|t| on(&h, t) == "e1")
        .collect();
    let e2: Vec<&str> = ["a#0", "b#0", "a#1", "b#1"]
        .into_iter()
        .filter(|t| on(&h, t) == "e2")
        .collect();
    let holds = h.holds(
        &e1.iter()
            .map(|t| (*t, AttemptState::Running))
            .collect::<Vec<_>>(),
        &[],
    );
    let out = h.register("e1", 2, holds);
    assert_eq!(deploys(&out), 0);
    assert!(cancels(&out).is_empty());
    assert_eq!(h.jm.job_state(JOB), Some(JobState::Reconciling));
    let holds = h.holds(
        &e2.iter()
            .map(|t| (*t, AttemptState::Running))
            .collect::<Vec<_>>(),
        &[],
    );
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
    let e1: Vec<&str> = ["a#0", "b#0", "a#1", "b#1"]
        .into_iter()
        .filter(|t| on(&h, t) == "e1")
        .collect();
    let holds = h.holds(
        &e1.iter()
            .map(|t| (*t, AttemptState::Running))
            .collect::<Vec<_>>(),
        &[],
    );
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
    let e1: Vec<&str> = ["a#0", "b#0", "a#1", "b#1"]
        .into_iter()
        .filter(|t| on(&h, t) == "e1")
        .collect();
    let e2: Vec<&str> = ["a#0", "b#0", "a#1", "b#1"]
        .into_iter()
        .filter(|t| on(&h, t) == "e2")
        .collect();
    let holds = h.holds(&[(e1[0], AttemptState::Running)], &[]);
    h.register("e1", 2, holds);
    let holds = h.holds(
        &e2.iter()
            .map(|t| (*t, AttemptState::Running))
            .collect::<Vec<_>>(),
        &[],
    );
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
    let e1: Vec<&str> = ["a#0", "b#0", "a#1", "b#1"]
        .into_iter()
        .filter(|t| on(&h, t) == "e1")
        .collect();
    let holds = h.holds(
        &e1.iter()
            .map(|t| (*t, AttemptState::Running))
            .collect::<Vec<_>>(),
        &[],
    );
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
