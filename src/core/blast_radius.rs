//! Blast radius: for one job, what the loss of each executor would restart right now, and the
//! expected fraction of the job's tasks restarted by the loss of one executor picked uniformly
//! at random — a single number to compare placements by (1.0: any executor loss restarts
//! everything; 1/N for N executors: each loss restarts only what it hosted, and no more).
//!
//! Every number is a dry run of the real failover ([`JobMaster::explain_executor_loss`]), so
//! it includes the producers of lost blocking partitions and the consumers of restarted
//! regions.

use std::collections::BTreeSet;

use super::attempt::AttemptState;
use super::graph::TaskId;
use super::jobmaster::JobMaster;
use super::{ExecutorId, JobId};

/// What one executor's loss would restart.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorBlastRadius {
    pub executor: ExecutorId,
    /// Tasks of the job it hosts now (attempts holding one of its slots).
    pub hosted: usize,
    /// Tasks its loss would restart.
    pub restart_tasks: usize,
    /// Regions those tasks belong to.
    pub restart_regions: usize,
}

/// The blast radius of every executor for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct BlastRadius {
    pub tasks: usize,
    pub regions: usize,
    /// Executors with slots: the ones a random loss is drawn from.
    pub executors: usize,
    /// Executors whose loss would restart something or that host tasks of the job, by id.
    pub per_executor: Vec<ExecutorBlastRadius>,
    /// The mean, over the executors with slots, of the fraction of the job's tasks that
    /// executor's loss would restart (0 without executors or tasks).
    pub expected_fraction: f64,
}

/// The blast radius of `job` now; `None` for an unknown job.
pub fn blast_radius(jm: &JobMaster, job: JobId) -> Option<BlastRadius> {
    let graph = jm.graph(job)?;
    let regions = jm.regions(job)?;
    let tasks = graph.task_count();
    let mut hosted: std::collections::BTreeMap<ExecutorId, usize> = Default::default();
    let views = jm.tasks(job)?;
    // Tasks that never left CREATED are only scheduled by a failover, not restarted (as the
    // real failover does), so they are not part of what a loss restarts.
    let created: BTreeSet<TaskId> = graph
        .tasks()
        .zip(&views)
        .filter(|(_, v)| v.state == AttemptState::Created)
        .map(|(t, _)| t)
        .collect();
    for view in views {
        let live = !view.state.is_terminal();
        if let Some(e) = view.executor.filter(|_| live) {
            *hosted.entry(e).or_default() += 1;
        }
    }
    let executors: Vec<ExecutorId> = jm
        .executors()
        .filter(|(_, slots, _, _)| *slots > 0)
        .map(|(id, ..)| id.clone())
        .collect();
    let mut per_executor = Vec::new();
    let mut sum = 0.0;
    for executor in &executors {
        let set = jm.explain_executor_loss(job, executor)?;
        let restarted: Vec<TaskId> = set
            .tasks
            .iter()
            .copied()
            .filter(|t| !created.contains(t))
            .collect();
        let restart_regions: BTreeSet<_> =
            restarted.iter().map(|&t| regions.region_of(t)).collect();
        let hosted = hosted.get(executor).copied().unwrap_or(0);
        if tasks > 0 {
            sum += restarted.len() as f64 / tasks as f64;
        }
        if hosted > 0 || !restarted.is_empty() {
            per_executor.push(ExecutorBlastRadius {
                executor: executor.clone(),
                hosted,
                restart_tasks: restarted.len(),
                restart_regions: restart_regions.len(),
            });
        }
    }
    let expected_fraction = if executors.is_empty() {
        0.0
    } else {
        sum / executors.len() as f64
    };
    Some(BlastRadius {
        tasks,
        regions: regions.len(),
        executors: executors.len(),
        per_executor,
        expected_fraction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoreConfig, Event, JobSpec, PlacementPolicy};

    /// Two pipelined pairs `a#i -> b#i` (two regions of two tasks), `c` alone (a third region).
    const SPEC: &str = r#"
name = "pairs"
[[vertices]]
id = "a"
parallelism = 2
command = ["x"]
[[vertices]]
id = "b"
parallelism = 2
command = ["x"]
[[vertices]]
id = "c"
parallelism = 1
command = ["x"]
[[edges]]
from = "a"
to = "b"
pattern = "pointwise"
exchange = "pipelined"
"#;

    fn deployed(executors: &[(&str, u32)]) -> JobMaster {
        deployed_spec(SPEC, executors)
    }

    fn deployed_spec(spec: &str, executors: &[(&str, u32)]) -> JobMaster {
        let mut jm = JobMaster::new(CoreConfig {
            placement: PlacementPolicy::Spread,
            ..CoreConfig::default()
        });
        for (id, slots) in executors {
            jm.handle(
                Event::ExecutorRegistered {
                    executor: ExecutorId::from(*id),
                    slots: *slots,
                    labels: Default::default(),
                    holds: Default::default(),
                },
                0,
            )
            .expect("registered");
        }
        let spec = JobSpec::from_toml(spec).expect("valid spec");
        jm.handle(
            Event::SubmitJob {
                job: JobId(1),
                spec,
            },
            0,
        )
        .expect("submitted");
        jm
    }

    #[test]
    fn one_executor_loss_restarts_everything_it_hosts() {
        let jm = deployed(&[("e0", 5)]);
        let br = blast_radius(&jm, JobId(1)).unwrap();
        assert_eq!((br.tasks, br.regions, br.executors), (5, 3, 1));
        assert_eq!(
            br.per_executor,
            vec![ExecutorBlastRadius {
                executor: ExecutorId::from("e0"),
                hosted: 5,
                restart_tasks: 5,
                restart_regions: 3,
            }]
        );
        assert_eq!(br.expected_fraction, 1.0);
    }

    #[test]
    fn the_expected_fraction_averages_over_every_executor_with_slots() {
        // Spread, by hand: a#0 -> e0, b#0 -> e1 (more free slots), a#1 -> e0 (tie: smaller
        // id), b#1 -> e1, c#0 -> e0. Losing e0 restarts all three regions (5 tasks); losing
        // e1 the two pairs (4 tasks); losing `late`, registered after placement, nothing.
        // Expected fraction: (5/5 + 4/5 + 0/5) / 3 = 0.6.
        let mut jm = deployed(&[("e0", 5), ("e1", 5)]);
        jm.handle(
            Event::ExecutorRegistered {
                executor: ExecutorId::from("late"),
                slots: 5,
                labels: Default::default(),
                holds: Default::default(),
            },
            0,
        )
        .expect("registered");
        let br = blast_radius(&jm, JobId(1)).unwrap();
        assert_eq!(br.executors, 3);
        let rows: Vec<(&str, usize, usize, usize)> = br
            .per_executor
            .iter()
            .map(|e| {
                (
                    e.executor.0.as_str(),
                    e.hosted,
                    e.restart_tasks,
                    e.restart_regions,
                )
            })
            .collect();
        assert_eq!(rows, vec![("e0", 3, 5, 3), ("e1", 2, 4, 2)]);
        assert!(
            (br.expected_fraction - 0.6).abs() < 1e-9,
            "{}",
            br.expected_fraction
        );
    }

    #[test]
    fn an_unknown_job_has_no_blast_radius() {
        let jm = deployed(&[("e0", 5)]);
        assert_eq!(blast_radius(&jm, JobId(9)), None);
    }

    #[test]
    fn consumers_that_were_never_deployed_are_not_counted_as_restarted() {
        // s(2) -> t(2) all-to-all blocking: the sources run, the sinks wait in CREATED. A
        // loss restarts the one source it hosts; the sinks are only scheduled later.
        let spec = r#"
name = "batch"
[[vertices]]
id = "s"
parallelism = 2
command = ["x"]
[[vertices]]
id = "t"
parallelism = 2
command = ["x"]
[[edges]]
from = "s"
to = "t"
pattern = "all-to-all"
exchange = "blocking"
"#;
        let jm = deployed_spec(spec, &[("e0", 2), ("e1", 2)]);
        let br = blast_radius(&jm, JobId(1)).unwrap();
        for row in &br.per_executor {
            assert_eq!((row.hosted, row.restart_tasks), (1, 1), "{row:?}");
        }
        assert_eq!(br.expected_fraction, 0.25);
    }
}
