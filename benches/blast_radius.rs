//! Blast radius of one executor loss under each placement policy, on a fixed, seeded mix of
//! random jobs and cluster shapes (deterministic: same output on every run).
//!
//! Each trial draws a cluster (3–32 executors, equal or mixed slot counts) and 1–3 jobs that
//! fill 40–100 % of its slots: independent pipelines of 1–3 vertices (parallelism 1–32),
//! consecutive vertices joined pointwise or all-to-all by pipelined, blocking or persistent
//! exchanges, and some blocking or pipelined edges across pipelines. Both policies place the
//! very same jobs on the very same cluster (equal slots) through the real core; every deployed
//! task reports RUNNING, and in 0–2 rounds every running region with blocking/persistent
//! output finishes, so its consumers get placed and its partitions are hosted. Then, for every
//! executor, `core::blast_radius` gives the tasks its loss would restart (summed
//! over the jobs); the expected number of tasks restarted by one random executor loss is their
//! mean over the executors (each equally likely to fail), averaged over the trials.
//!
//! Prints one row per trial, then both expectations, the reduction (target: ≥ 30 %) and the
//! spread of load (live tasks per executor). Run with `cargo bench --bench blast_radius`.

use std::collections::BTreeSet;

use jobmaster::core::blast_radius::blast_radius;
use jobmaster::core::{
    AttemptState, Command, CoreConfig, Event, ExecutorId, JobId, JobMaster, JobSpec,
    PlacementPolicy, RegionId,
};

const SEED: u64 = 0x5eed_b1a5_7000_0001;
const TRIALS: usize = 60;

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// True with probability `percent` %.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Vertex {
    id: String,
    parallelism: u32,
}

struct Edge {
    from: usize,
    to: usize,
    pattern: &'static str,
    exchange: &'static str,
}

/// A random job, shrunk until it has at most `budget` tasks (`None` if it cannot).
fn random_job(rng: &mut Rng, name: &str, budget: u64) -> Option<String> {
    const PARALLELISM: [u32; 13] = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32];
    let mut vertices: Vec<Vertex> = Vec::new();
    let mut edges: Vec<Edge> = Vec::new();
    let mut pipelines: Vec<(usize, usize)> = Vec::new(); // (first, last) vertex
    for p in 0..1 + rng.below(5) {
        let stages = 1 + rng.below(3);
        let first = vertices.len();
        for s in 0..stages {
            vertices.push(Vertex {
                id: format!("p{p}-v{s}"),
                parallelism: rng.pick(&PARALLELISM),
            });
            if s > 0 {
                let exchange = match rng.below(100) {
                    0..65 => "pipelined",
                    65..95 => "blocking",
                    _ => "persistent",
                };
                edges.push(Edge {
                    from: vertices.len() - 2,
                    to: vertices.len() - 1,
                    pattern: rng.pick(&["pointwise", "all-to-all"]),
                    exchange,
                });
            }
        }
        pipelines.push((first, vertices.len() - 1));
    }
    // Edges across pipelines, always from an earlier pipeline to a later one: still a DAG.
    for i in 1..pipelines.len() {
        if rng.chance(25) {
            let from = pipelines[rng.below(i as u64) as usize].0;
            edges.push(Edge {
                from,
                to: pipelines[i].1,
                pattern: rng.pick(&["pointwise", "all-to-all"]),
                exchange: rng.pick(&["blocking", "pipelined"]),
            });
        }
    }
    let total = |vs: &[Vertex]| vs.iter().map(|v| u64::from(v.parallelism)).sum::<u64>();
    while total(&vertices) > budget {
        if vertices.iter().all(|v| v.parallelism == 1) {
            return None;
        }
        for v in &mut vertices {
            v.parallelism = v.parallelism.div_ceil(2);
        }
    }
    let mut spec = format!("name = \"{name}\"\n");
    for v in &vertices {
        spec += &format!(
            "[[vertices]]\nid = \"{}\"\nparallelism = {}\ncommand = [\"x\"]\n",
            v.id, v.parallelism
        );
    }
    for e in &edges {
        spec += &format!(
            "[[edges]]\nfrom = \"{}\"\nto = \"{}\"\npattern = \"{}\"\nexchange = \"{}\"\n",
            vertices[e.from].id, vertices[e.to].id, e.pattern, e.exchange
        );
    }
    Some(spec)
}

/// One cluster shape with its jobs.
struct Trial {
    executors: Vec<(String, u32)>,
    jobs: Vec<JobSpec>,
    finish_rounds: u32,
}

fn random_trial(rng: &mut Rng, n: usize) -> Trial {
    let count = rng.pick(&[3u32, 4, 6, 8, 10, 16, 24, 32]);
    let executors: Vec<(String, u32)> = if rng.chance(60) {
        let slots = rng.pick(&[4u32, 8, 16, 32, 64]);
        (0..count).map(|i| (format!("tm-{i:02}"), slots)).collect()
    } else {
        (0..count)
            .map(|i| (format!("tm-{i:02}"), rng.pick(&[4u32, 8, 16, 32])))
            .collect()
    };
    let slots: u64 = executors.iter().map(|(_, s)| u64::from(*s)).sum();
    let fill = 40 + rng.below(61);
    let jobs = 1 + rng.below(3);
    let budget = (slots * fill / 100 / jobs).max(1);
    let jobs = (0..jobs)
        .filter_map(|j| random_job(rng, &format!("trial-{n}-job-{j}"), budget))
        .map(|text| JobSpec::from_toml(&text).expect("generated specs are valid"))
        .collect();
    Trial {
        executors,
        jobs,
        finish_rounds: rng.below(3) as u32,
    }
}

/// What one policy did with one trial.
struct Outcome {
    /// Per executor: tasks its loss would restart, over all jobs.
    restarted: Vec<usize>,
    /// Per executor: live tasks holding its slots.
    load: Vec<u32>,
    /// Live (placed, unfinished) tasks.
    live: usize,
}

impl Outcome {
    fn expected(&self) -> f64 {
        self.restarted.iter().sum::<usize>() as f64 / self.restarted.len() as f64
    }
}

/// Reports RUNNING for every deploy in `commands`, and for the deploys that follows.
fn run_deploys(jm: &mut JobMaster, mut commands: Vec<Command>) {
    while !commands.is_empty() {
        let mut next = Vec::new();
        for c in commands {
            if let Command::Deploy {
                attempt, executor, ..
            } = c
            {
                next.extend(
                    jm.handle(
                        Event::TaskStateChanged {
                            executor,
                            attempt,
                            state: AttemptState::Running,
                            failure: None,
                        },
                        0,
                    )
                    .expect("running report accepted"),
                );
            }
        }
        commands = next;
    }
}

/// Finishes every region whose tasks all run and that has blocking or persistent output.
fn finish_producer_regions(jm: &mut JobMaster, job: JobId) {
    let (graph, regions) = (jm.graph(job).unwrap(), jm.regions(job).unwrap());
    let producers: Vec<RegionId> = regions
        .ids()
        .filter(|&r| {
            let tasks = regions.tasks(r);
            tasks.iter().any(|&t| {
                graph
                    .produced_groups(t)
                    .any(|g| graph.group(g).exchange.is_reconsumable())
            }) && tasks
                .iter()
                .all(|&t| jm.task(job, t).unwrap().state == AttemptState::Running)
        })
        .collect();
    let mut out = Vec::new();
    for r in producers {
        for &t in jm.regions(job).unwrap().tasks(r).to_vec().iter() {
            let v = jm.task(job, t).unwrap();
            out.extend(
                jm.handle(
                    Event::TaskStateChanged {
                        executor: v.executor.clone().expect("running"),
                        attempt: jobmaster::core::AttemptId {
                            job,
                            task: t,
                            attempt: v.attempt,
                        },
                        state: AttemptState::Finished,
                        failure: None,
                    },
                    0,
                )
                .expect("finished report accepted"),
            );
        }
    }
    run_deploys(jm, out);
}

fn place(trial: &Trial, policy: PlacementPolicy) -> Outcome {
    let mut jm = JobMaster::new(CoreConfig {
        placement: policy,
        ..CoreConfig::default()
    });
    for (id, slots) in &trial.executors {
        jm.handle(
            Event::ExecutorRegistered {
                executor: ExecutorId::from(id.as_str()),
                slots: *slots,
                labels: Default::default(),
                holds: Default::default(),
            },
            0,
        )
        .expect("registered");
    }
    let ids: Vec<JobId> = (0..trial.jobs.len() as u64).map(JobId).collect();
    for (&job, spec) in ids.iter().zip(&trial.jobs) {
        let out = jm
            .handle(
                Event::SubmitJob {
                    job,
                    spec: spec.clone(),
                },
                0,
            )
            .expect("submitted");
        run_deploys(&mut jm, out);
    }
    for _ in 0..trial.finish_rounds {
        for &job in &ids {
            finish_producer_regions(&mut jm, job);
        }
    }
    let executors: Vec<ExecutorId> = jm.executors().map(|(id, ..)| id.clone()).collect();
    // What each executor's loss restarts, summed over the jobs: the same query as `jmctl plan
    // --executors` and `jmctl explain --blast-radius`.
    let mut by_executor: std::collections::BTreeMap<ExecutorId, usize> = Default::default();
    for &job in &ids {
        let radius = blast_radius(&jm, job).expect("known job");
        for row in radius.per_executor {
            *by_executor.entry(row.executor).or_default() += row.restart_tasks;
        }
    }
    let restarted = executors
        .iter()
        .map(|e| by_executor.get(e).copied().unwrap_or(0))
        .collect();
    let load: Vec<u32> = jm
        .executors()
        .map(|(_, slots, free, _)| slots - free)
        .collect();
    let live = load.iter().map(|&l| l as usize).sum();
    Outcome {
        restarted,
        load,
        live,
    }
}

fn main() {
    let mut rng = Rng(SEED);
    let trials: Vec<Trial> = (0..TRIALS).map(|n| random_trial(&mut rng, n)).collect();
    println!(
        "blast radius of one executor loss: {TRIALS} trials, seed {SEED:#x}; E[restart] = \
         tasks restarted by one random executor loss; load = live tasks per executor (min-max)"
    );
    println!(
        "{:>5} {:>9} {:>6} {:>4} {:>6} | {:>16} {:>9} | {:>16} {:>9}",
        "trial",
        "executors",
        "slots",
        "jobs",
        "live",
        "spread E[restart]",
        "load",
        "pack E[restart]",
        "load"
    );
    let (mut sum_spread, mut sum_pack) = (0.0, 0.0);
    let (mut frac_spread, mut frac_pack) = (0.0, 0.0);
    let (mut gap_spread, mut gap_pack) = (0u64, 0u64);
    let mut pack_not_worse = 0;
    for (n, trial) in trials.iter().enumerate() {
        let spread = place(trial, PlacementPolicy::Spread);
        let pack = place(trial, PlacementPolicy::PackRegions);
        assert_eq!(spread.live, pack.live, "trial {n}: equal work placed");
        let slots: u32 = trial.executors.iter().map(|(_, s)| s).sum();
        let range = |o: &Outcome| {
            let (min, max) = (*o.load.iter().min().unwrap(), *o.load.iter().max().unwrap());
            (min, max)
        };
        let ((s_min, s_max), (p_min, p_max)) = (range(&spread), range(&pack));
        let shapes: BTreeSet<u32> = trial.executors.iter().map(|(_, s)| *s).collect();
        let shape = if shapes.len() == 1 {
            format!("{}x{}", trial.executors.len(), trial.executors[0].1)
        } else {
            format!("{}xmixed", trial.executors.len())
        };
        println!(
            "{n:>5} {shape:>9} {slots:>6} {:>4} {:>6} | {:>16.1} {:>9} | {:>16.1} {:>9}",
            trial.jobs.len(),
            pack.live,
            spread.expected(),
            format!("{s_min}-{s_max}"),
            pack.expected(),
            format!("{p_min}-{p_max}"),
        );
        sum_spread += spread.expected();
        sum_pack += pack.expected();
        let live = pack.live.max(1) as f64;
        frac_spread += spread.expected() / live;
        frac_pack += pack.expected() / live;
        gap_spread += u64::from(s_max - s_min);
        gap_pack += u64::from(p_max - p_min);
        if pack.expected() <= spread.expected() + 1e-9 {
            pack_not_worse += 1;
        }
    }
    let t = TRIALS as f64;
    let (spread, pack) = (sum_spread / t, sum_pack / t);
    let reduction = 100.0 * (1.0 - pack / spread);
    println!();
    println!(
        "expected tasks restarted per random executor loss: spread {spread:.2}, pack-regions \
         {pack:.2} (mean over trials)"
    );
    println!(
        "as a share of the live tasks: spread {:.1} %, pack-regions {:.1} %",
        100.0 * frac_spread / t,
        100.0 * frac_pack / t
    );
    println!(
        "reduction with pack-regions: {reduction:.1} % (target >= 30 %: {}); pack-regions no \
         worse than spread in {pack_not_worse}/{TRIALS} trials",
        if reduction >= 30.0 { "met" } else { "NOT met" }
    );
    println!(
        "load spread (max - min live tasks per executor), mean over trials: spread {:.2}, \
         pack-regions {:.2}",
        gap_spread as f64 / t,
        gap_pack as f64 / t
    );
}
