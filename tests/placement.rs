//! Placement policies on the real core: `pack-regions` (the default) keeps each pipelined
//! region on as few executors as possible and spreads whole regions, so one executor loss
//! restarts few regions; `spread` puts every task on the most-free executor; failure-domain
//! labels keep a region inside one domain; a redeploy avoids the executor it failed on.

use std::collections::{BTreeMap, BTreeSet};

use jobmaster::core::{
    AttemptState, Command, CoreConfig, Event, ExecutorId, Failure, JobId, JobMaster, JobSpec,
    Millis, PlacementPolicy, RestartScope, SpecError,
};

const JOB: JobId = JobId(3);

/// An executor: id, slots, labels.
type ExecutorShape = (&'static str, u32, &'static [(&'static str, &'static str)]);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Harness {
    jm: JobMaster,
    now: Millis,
}

impl Harness {
    fn new(config: CoreConfig) -> Harness {
        Harness {
            jm: JobMaster::new(config),
            now: 0,
        }
    }

    /// Executors `(id, slots, labels)`, registered in this order.
    fn with(executors: &[ExecutorShape]) -> Harness {
        let mut h = Harness::new(CoreConfig::default());
        for (id, slots, l) in executors {
            h.register(id, *slots, labels(l));
        }
        h
    }

    fn register(&mut self, id: &str, slots: u32, labels: BTreeMap<String, String>) {
        self.ok(Event::ExecutorRegistered {
            executor: ExecutorId::from(id),
            slots,
            labels,
            holds: Default::default(),
        });
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

    /// Reports RUNNING for every deploy in `commands`.
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

    fn executor_of(&self, task: &str) -> ExecutorId {
        let t = self.jm.graph(JOB).unwrap().find_task(task).unwrap();
        self.jm.task(JOB, t).unwrap().executor.expect("placed")
    }

    /// Per region: the executors its tasks are on.
    fn region_executors(&self) -> Vec<BTreeSet<ExecutorId>> {
        let regions = self.jm.regions(JOB).unwrap();
        regions
            .ids()
            .map(|r| {
                regions
                    .tasks(r)
                    .iter()
                    .map(|&t| self.jm.task(JOB, t).unwrap().executor.expect("placed"))
                    .collect()
            })
            .collect()
    }

    /// Every executor id, by id.
    fn executor_ids(&self) -> Vec<ExecutorId> {
        self.jm.executors().map(|(id, ..)| id.clone()).collect()
    }

    /// (regions, tasks) the loss of `executor` would restart.
    fn blast(&self, executor: &ExecutorId) -> (usize, usize) {
        let set = self.jm.explain_executor_loss(JOB, executor).unwrap();
        let regions = set
            .entries
            .iter()
            .filter(|e| matches!(e.scope, RestartScope::Region(_)))
            .count();
        (regions, set.tasks.len())
    }
}

/// `regions` independent pipelined regions, each `sources` sources all-to-all into `sinks`.
fn independent_regions(regions: u32, sources: u32, sinks: u32, extra: &str) -> String {
    let mut spec = format!("name = \"regions\"\n{extra}\n");
    for r in 0..regions {
        spec += &format!(
            "[[vertices]]\nid = \"source-{r}\"\nparallelism = {sources}\ncommand = [\"x\"]\n\
             [[vertices]]\nid = \"orders-{r}\"\nparallelism = {sinks}\ncommand = [\"x\"]\n"
        );
    }
    for r in 0..regions {
        spec += &format!(
            "[[edges]]\nfrom = \"source-{r}\"\nto = \"orders-{r}\"\n\
             pattern = \"all-to-all\"\nexchange = \"pipelined\"\n"
        );
    }
    spec
}

/// Four regions of two tasks (`src#i` → `sink#i`, pointwise, pipelined).
fn four_pairs(extra: &str) -> String {
    format!(
        r#"
name = "pairs"
{extra}
restart = {{ strategy = "fixed-delay", attempts = 10, delay = "0s" }}
[[vertices]]
id = "src"
parallelism = 4
command = ["x"]
[[vertices]]
id = "sink"
parallelism = 4
command = ["x"]
[[edges]]
from = "src"
to = "sink"
pattern = "pointwise"
exchange = "pipelined"
"#
    )
}

const THREE_BY_FOUR: &[ExecutorShape] = &[("a", 4, &[]), ("b", 4, &[]), ("c", 4, &[])];

#[test]
fn pack_regions_keeps_each_pair_on_one_executor_so_one_loss_restarts_at_most_two_regions() {
    let mut h = Harness::with(THREE_BY_FOUR);
    h.submit(&four_pairs(""));
    assert_eq!(
        h.jm.job_placement(JOB),
        Some((PlacementPolicy::PackRegions, None)),
        "pack-regions is the default"
    );
    for (r, on) in h.region_executors().iter().enumerate() {
        assert_eq!(on.len(), 1, "region {r} on one executor: {on:?}");
    }
    for e in h.executor_ids() {
        let (regions, tasks) = h.blast(&e);
        assert!(regions <= 2 && tasks <= 4, "losing {e}: {regions} regions");
    }
    // Whole regions spread: a, b, c, then a again (most free, ties by id).
    let on: Vec<String> = (0..4)
        .map(|i| h.executor_of(&format!("src#{i}")).0)
        .collect();
    assert_eq!(on, ["a", "b", "c", "a"]);
}

#[test]
fn spread_puts_a_region_on_several_executors_as_before() {
    let mut h = Harness::with(THREE_BY_FOUR);
    h.submit(&four_pairs("placement = \"spread\""));
    assert_eq!(
        h.jm.job_placement(JOB),
        Some((PlacementPolicy::Spread, None))
    );
    for (r, on) in h.region_executors().iter().enumerate() {
        assert_eq!(on.len(), 2, "region {r} spread over two executors: {on:?}");
    }
    // Task by task onto the most-free executor: a and b each hold parts of three regions.
    let worst = h.executor_ids().iter().map(|e| h.blast(e).0).max();
    assert_eq!(worst, Some(3));
}

#[test]
fn the_configured_policy_applies_unless_the_spec_names_one() {
    let mut h = Harness::new(CoreConfig {
        placement: PlacementPolicy::Spread,
        ..CoreConfig::default()
    });
    for (id, slots, l) in THREE_BY_FOUR {
        h.register(id, *slots, labels(l));
    }
    h.submit(&four_pairs(""));
    assert_eq!(
        h.jm.job_placement(JOB),
        Some((PlacementPolicy::Spread, None))
    );
    assert!(h.region_executors().iter().all(|on| on.len() == 2));

    let mut h = Harness::new(CoreConfig {
        placement: PlacementPolicy::Spread,
        ..CoreConfig::default()
    });
    for (id, slots, l) in THREE_BY_FOUR {
        h.register(id, *slots, labels(l));
    }
    h.submit(&four_pairs("placement = \"pack-regions\""));
    assert!(h.region_executors().iter().all(|on| on.len() == 1));
}

#[test]
fn forty_regions_of_25_on_ten_executors_of_125_lose_at_most_15_percent_per_executor() {
    let executors: Vec<(String, u32)> = (0..10).map(|i| (format!("tm-{i:02}"), 125)).collect();
    let mut h = Harness::new(CoreConfig::default());
    for (id, slots) in &executors {
        h.register(id, *slots, BTreeMap::new());
    }
    let out = h.submit(&independent_regions(40, 5, 20, ""));
    h.run_all(&out);
    let total = 1_000;
    for (r, on) in h.region_executors().iter().enumerate() {
        assert_eq!(on.len(), 1, "region {r} on one executor: {on:?}");
    }
    for e in h.executor_ids() {
        let (regions, tasks) = h.blast(&e);
        assert!(
            tasks * 100 <= total * 15,
            "losing {e} restarts {tasks} of {total} tasks ({regions} regions)"
        );
    }
    // Balanced at region granularity: four regions (100 tasks) per executor.
    for (id, slots, free, _) in h.jm.executors() {
        assert_eq!(slots - free, 100, "{id}");
    }
    // The same job spread: every executor loss is a full restart.
    let mut s = Harness::new(CoreConfig::default());
    for (id, slots) in &executors {
        s.register(id, *slots, BTreeMap::new());
    }
    s.submit(&independent_regions(40, 5, 20, "placement = \"spread\""));
    assert_eq!(s.blast(&ExecutorId::from("tm-00")).1, total);
}

#[test]
fn a_region_bigger_than_any_executor_is_split_over_the_fewest_executors() {
    // 11 tasks in one region; free slots 5, 4, 3, 3, 2: the fewest executors is three
    // (5 + 4 + 2 of 3), taking the most free first.
    let mut h = Harness::with(&[
        ("a", 3, &[]),
        ("b", 5, &[]),
        ("c", 2, &[]),
        ("d", 4, &[]),
        ("e", 3, &[]),
    ]);
    h.submit(&independent_regions(1, 5, 6, ""));
    let on = &h.region_executors()[0];
    assert_eq!(on.len(), 3, "{on:?}");
    let used: BTreeMap<String, u32> =
        h.jm.executors()
            .map(|(id, slots, free, _)| (id.0.clone(), slots - free))
            .filter(|(_, used)| *used > 0)
            .collect();
    assert_eq!(
        used,
        BTreeMap::from([("a".into(), 2), ("b".into(), 5), ("d".into(), 4)])
    );
}

/// Zones interleaved by id: without a domain, the most-free order crosses zones.
const TWO_ZONES: &[ExecutorShape] = &[
    ("e1", 4, &[("zone", "a")]),
    ("e2", 4, &[("zone", "b")]),
    ("e3", 4, &[("zone", "a")]),
    ("e4", 4, &[("zone", "b")]),
];

fn zones_of(h: &Harness, on: &BTreeSet<ExecutorId>) -> BTreeSet<Option<String>> {
    on.iter()
        .map(|e| h.jm.executor_labels(e).unwrap().get("zone").cloned())
        .collect()
}

#[test]
fn pack_regions_by_zone_keeps_each_region_inside_one_zone() {
    let mut h = Harness::with(TWO_ZONES);
    // Two regions of 6: each needs two executors, both from one zone.
    h.submit(&independent_regions(2, 3, 3, "placement-domain = \"zone\""));
    assert_eq!(
        h.jm.job_placement(JOB),
        Some((PlacementPolicy::PackRegions, Some("zone")))
    );
    let regions = h.region_executors();
    for (r, on) in regions.iter().enumerate() {
        assert_eq!(on.len(), 2, "region {r}: {on:?}");
        assert_eq!(zones_of(&h, on).len(), 1, "region {r} in one zone: {on:?}");
    }
    assert_ne!(
        zones_of(&h, &regions[0]),
        zones_of(&h, &regions[1]),
        "regions spread over the zones"
    );
    // Losing zone a's executors restarts only the region placed there.
    let zone_a: Vec<ExecutorId> = ["e1", "e3"].map(ExecutorId::from).to_vec();
    let restarted: BTreeSet<_> = zone_a
        .iter()
        .flat_map(|e| h.jm.explain_executor_loss(JOB, e).unwrap().tasks)
        .collect();
    assert_eq!(restarted.len(), 6);

    // Without the domain key the same job crosses zones.
    let mut h = Harness::with(TWO_ZONES);
    h.submit(&independent_regions(2, 3, 3, ""));
    assert!(
        h.region_executors()
            .iter()
            .any(|on| zones_of(&h, on).len() == 2)
    );
}

/// Two zoned executors and two without a zone label (one has another label).
const MIXED: &[ExecutorShape] = &[
    ("e1", 2, &[("zone", "a")]),
    ("e2", 2, &[("zone", "b")]),
    ("u1", 3, &[]),
    ("u2", 3, &[("rack", "r1")]),
];

#[test]
fn executors_without_the_label_form_their_own_domain_and_a_region_no_domain_fits_spans_them() {
    let mut h = Harness::with(MIXED);
    // 6 tasks: the unlabelled group (u1, u2) has the most free slots and room for it.
    h.submit(&independent_regions(1, 3, 3, "placement-domain = \"zone\""));
    let on = &h.region_executors()[0];
    assert_eq!(zones_of(&h, on), BTreeSet::from([None]), "{on:?}");

    // 7 tasks: no domain has room, so the region spans domains and is still placed.
    let mut h = Harness::with(MIXED);
    h.submit(&independent_regions(1, 3, 4, "placement-domain = \"zone\""));
    let on = &h.region_executors()[0];
    assert_eq!(on.len(), 3, "fewest executors: 3 + 3 + 1: {on:?}");
    assert!(zones_of(&h, on).len() > 1, "{on:?}");
}

#[test]
fn the_configured_domain_applies_and_an_empty_spec_domain_turns_it_off() {
    let config = CoreConfig {
        placement_domain: Some("zone".into()),
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config.clone());
    for (id, slots, l) in TWO_ZONES {
        h.register(id, *slots, labels(l));
    }
    h.submit(&independent_regions(2, 3, 3, ""));
    assert!(
        h.region_executors()
            .iter()
            .all(|on| zones_of(&h, on).len() == 1)
    );

    let mut h = Harness::new(config);
    for (id, slots, l) in TWO_ZONES {
        h.register(id, *slots, labels(l));
    }
    h.submit(&independent_regions(2, 3, 3, "placement-domain = \"\""));
    assert_eq!(
        h.jm.job_placement(JOB),
        Some((PlacementPolicy::PackRegions, None))
    );
}

/// One region of two: `src#0` → `sink#0`, pipelined.
const PAIR: &str = r#"
name = "pair"
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
exchange = "pipelined"
"#;

/// Fails `src#0` on its executor and lets the region restart; returns the executor it failed on.
fn fail_src_and_restart(h: &mut Harness) -> ExecutorId {
    let t = h.jm.graph(JOB).unwrap().find_task("src#0").unwrap();
    let v = h.jm.task(JOB, t).unwrap();
    let failed_on = v.executor.clone().unwrap();
    h.ok(Event::TaskStateChanged {
        executor: failed_on.clone(),
        attempt: jobmaster::core::AttemptId {
            job: JOB,
            task: t,
            attempt: v.attempt,
        },
        state: AttemptState::Failed,
        failure: Some(Failure::recoverable("boom")),
    });
    // Its partner is being cancelled: confirm it, and the restart fires (delay 0s).
    let s = h.jm.graph(JOB).unwrap().find_task("sink#0").unwrap();
    let sv = h.jm.task(JOB, s).unwrap();
    h.ok(Event::TaskStateChanged {
        executor: sv.executor.clone().unwrap(),
        attempt: jobmaster::core::AttemptId {
            job: JOB,
            task: s,
            attempt: sv.attempt,
        },
        state: AttemptState::Canceled,
        failure: None,
    });
    assert_eq!(h.jm.task(JOB, t).unwrap().attempt, 1, "restarted");
    failed_on
}

#[test]
fn a_redeployed_region_moves_whole_to_an_executor_it_did_not_fail_on() {
    let mut h = Harness::with(&[("a", 2, &[]), ("b", 2, &[]), ("c", 2, &[])]);
    let out = h.submit(PAIR);
    h.run_all(&out);
    assert_eq!(h.executor_of("src#0"), ExecutorId::from("a"));
    let failed_on = fail_src_and_restart(&mut h);
    assert_eq!(h.executor_of("src#0"), ExecutorId::from("b"));
    assert_eq!(
        h.executor_of("sink#0"),
        ExecutorId::from("b"),
        "still together"
    );
    assert_ne!(h.executor_of("src#0"), failed_on);
}

#[test]
fn when_only_the_failed_executor_has_room_for_all_the_failed_task_goes_elsewhere() {
    let mut h = Harness::with(&[("a", 2, &[]), ("b", 1, &[])]);
    let out = h.submit(PAIR);
    h.run_all(&out);
    assert_eq!(h.executor_of("sink#0"), ExecutorId::from("a"));
    let failed_on = fail_src_and_restart(&mut h);
    assert_eq!(failed_on, ExecutorId::from("a"));
    assert_eq!(h.executor_of("src#0"), ExecutorId::from("b"), "avoids a");
    assert_eq!(h.executor_of("sink#0"), ExecutorId::from("a"));
}

#[test]
fn spec_placement_keys_are_validated_with_the_field_and_accepted_values() {
    let err = JobSpec::from_toml(&four_pairs("placement = \"pack\"")).unwrap_err();
    assert!(matches!(err, SpecError::UnknownValue { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "placement: unknown value \"pack\"; expected one of pack-regions, spread"
    );
    let err = JobSpec::from_toml(&four_pairs("placement-domain = \"my zone\"")).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("placement-domain: "), "{text}");
    assert!(text.contains("\"zone\""), "{text}");
    // A key no executor could carry (labels are plain words) is refused too.
    let err = JobSpec::from_toml(&four_pairs("placement-domain = \"zone!\"")).unwrap_err();
    assert!(err.to_string().contains("'!'"), "{err}");
    let spec = JobSpec::from_json(
        r#"{"name": "j", "placement": "spread", "placement-domain": "rack",
            "vertices": [{"id": "v", "parallelism": 1, "command": ["x"]}]}"#,
    )
    .expect("valid");
    assert_eq!(spec.placement, Some(PlacementPolicy::Spread));
    assert_eq!(spec.placement_domain.as_deref(), Some("rack"));
}

/// Two pairs (two regions of 2) with `placement-domain = "zone"` on a (zone a) and b (zone b).
fn two_pairs_by_zone() -> String {
    let pair = |i: u32| {
        format!(
            "[[vertices]]\nid = \"src{i}\"\nparallelism = 1\ncommand = [\"x\"]\n\
             [[vertices]]\nid = \"sink{i}\"\nparallelism = 1\ncommand = [\"x\"]\n\
             [[edges]]\nfrom = \"src{i}\"\nto = \"sink{i}\"\npattern = \"pointwise\"\n\
             exchange = \"pipelined\"\n"
        )
    };
    format!(
        "name = \"pairs\"\nplacement-domain = \"zone\"\n\
         restart = {{ strategy = \"fixed-delay\", attempts = 10, delay = \"0s\" }}\n{}{}",
        pair(0),
        pair(1)
    )
}

#[test]
fn with_a_domain_a_redeploy_still_avoids_the_executor_it_failed_on() {
    let mut h = Harness::with(&[("a", 4, &[("zone", "a")]), ("b", 4, &[("zone", "b")])]);
    let out = h.submit(&two_pairs_by_zone());
    h.run_all(&out);
    // Region 0 on a; region 1 on b (a had 2 free, b 4).
    let src = h.jm.graph(JOB).unwrap().find_task("src0#0").unwrap();
    let v = h.jm.task(JOB, src).unwrap();
    assert_eq!(v.executor, Some(ExecutorId::from("a")));
    let out = h.ok(Event::TaskStateChanged {
        executor: "a".into(),
        attempt: jobmaster::core::AttemptId {
            job: JOB,
            task: src,
            attempt: 0,
        },
        state: AttemptState::Failed,
        failure: Some(Failure::recoverable("boom")),
    });
    let sink = h.jm.graph(JOB).unwrap().find_task("sink0#0").unwrap();
    let mut out = out;
    out.extend(h.ok(Event::TaskStateChanged {
        executor: "a".into(),
        attempt: jobmaster::core::AttemptId {
            job: JOB,
            task: sink,
            attempt: 0,
        },
        state: AttemptState::Canceled,
        failure: None,
    }));
    // a now has 4 free slots, b 2: zone a is roomier, but its only room is on the executor
    // the region's task just failed on, so the region moves to b.
    assert_eq!(h.jm.task(JOB, src).unwrap().attempt, 1);
    assert_eq!(h.executor_of("src0#0"), ExecutorId::from("b"));
    assert_eq!(h.executor_of("sink0#0"), ExecutorId::from("b"));
}

#[test]
fn with_a_domain_a_region_one_executor_holds_whole_is_not_split() {
    // Zone a has more free slots in all (6), but only e3 (zone b) holds the region of 4 whole.
    let mut h = Harness::with(&[
        ("e1", 3, &[("zone", "a")]),
        ("e2", 3, &[("zone", "a")]),
        ("e3", 4, &[("zone", "b")]),
    ]);
    h.submit(&independent_regions(1, 2, 2, "placement-domain = \"zone\""));
    let on = &h.region_executors()[0];
    assert_eq!(on, &BTreeSet::from([ExecutorId::from("e3")]));
}

impl Harness {
    /// The current attempt of `task` reports `state` (FAILED: recoverable), on its executor;
    /// returns the commands.
    fn report(&mut self, task: &str, state: AttemptState) -> Vec<Command> {
        let t = self.jm.graph(JOB).unwrap().find_task(task).unwrap();
        let v = self.jm.task(JOB, t).unwrap();
        self.ok(Event::TaskStateChanged {
            executor: v.executor.clone().expect("placed"),
            attempt: jobmaster::core::AttemptId {
                job: JOB,
                task: t,
                attempt: v.attempt,
            },
            state,
            failure: (state == AttemptState::Failed).then(|| Failure::recoverable("boom")),
        })
    }
}

#[test]
fn an_executor_a_task_failed_on_long_ago_is_not_avoided_once_the_task_ran_again() {
    let mut h = Harness::with(&[("a", 2, &[]), ("b", 2, &[]), ("c", 1, &[])]);
    let out = h.submit(PAIR);
    h.run_all(&out);
    // src fails on a: the pair moves whole to b and runs there.
    let mut out = h.report("src#0", AttemptState::Failed);
    out.extend(h.report("sink#0", AttemptState::Canceled));
    h.run_all(&out);
    assert_eq!(h.executor_of("src#0"), ExecutorId::from("b"));
    // Now sink fails on b: only b is to be avoided, so the pair goes whole to a (before, src
    // still avoided a and the pair was split over c and a).
    let mut out = h.report("sink#0", AttemptState::Failed);
    out.extend(h.report("src#0", AttemptState::Canceled));
    h.run_all(&out);
    assert_eq!(h.executor_of("src#0"), ExecutorId::from("a"));
    assert_eq!(h.executor_of("sink#0"), ExecutorId::from("a"));
}
