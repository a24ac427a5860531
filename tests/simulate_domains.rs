//! `jmctl simulate` with failure domains: executors carry labels (in the cluster and in
//! `add-executor`), and a `lose-domain` fault loses every executor with that label at one
//! instant. (Beside tests/simulate.rs, which is already past the file-size budget.)

mod sim_support;

use std::collections::{BTreeMap, BTreeSet};

use jobmaster::core::SpecFormat;
use jobmaster::simulate::Scenario;
use sim_support::{deploys, events, final_task, restart_sets, restarted_tasks, run, timeline};

/// The two-city streaming job (four independent regions `{city-source#i, city-orders#i}`)
/// on zone a (`tm-a1`, `tm-a2`, 2 slots each) and zone b (`tm-b1`, 4 slots); zone a is lost at
/// 5 s, `tm-c1` (zone c, 8 slots) joins at 6 s and zone c is lost at 10 s.
fn zones(faults: &str) -> String {
    format!(
        r#"
until = "20s"

[job]
name = "city-orders"
failover = "region"
restart = {{ strategy = "fixed-delay", attempts = 10, delay = "500ms" }}
vertices = [
  {{ id = "beijing-source", parallelism = 2, command = ["s"] }},
  {{ id = "beijing-orders", parallelism = 2, command = ["o"] }},
  {{ id = "shanghai-source", parallelism = 2, command = ["s"] }},
  {{ id = "shanghai-orders", parallelism = 2, command = ["o"] }},
]
edges = [
  {{ from = "beijing-source", to = "beijing-orders", pattern = "pointwise", exchange = "pipelined" }},
  {{ from = "shanghai-source", to = "shanghai-orders", pattern = "pointwise", exchange = "pipelined" }},
]

[[executors]]
id = "tm-a1"
slots = 2
labels = {{ zone = "a", rack = "r1" }}

[[executors]]
id = "tm-a2"
slots = 2
labels = {{ zone = "a", rack = "r2" }}

[[executors]]
id = "tm-b1"
slots = 4
labels = {{ zone = "b" }}

[runtime]
default = "forever"

{faults}
"#
    )
}

const LOSE_A_THEN_C: &str = r#"
[[faults]]
at = "5s"
kind = "lose-domain"
domain = "zone=a"

[[faults]]
at = "6s"
kind = "add-executor"
executor = "tm-c1"
slots = 8
labels = { zone = "c" }

[[faults]]
at = "10s"
kind = "lose-domain"
domain = "zone=c"
"#;

/// The region partner of a city task: `x-source#i` <-> `x-orders#i`.
fn region_of(task: &str) -> BTreeSet<String> {
    let (vertex, i) = task.split_once('#').expect("vertex#subtask");
    let city = vertex.split('-').next().expect("city");
    [format!("{city}-source#{i}"), format!("{city}-orders#{i}")]
        .into_iter()
        .collect()
}

#[test]
fn losing_a_domain_loses_every_executor_labelled_with_it_at_the_same_instant() {
    let report = run(&zones(LOSE_A_THEN_C));
    let lost: Vec<(u64, String)> = events(&report, "executor-lost")
        .into_iter()
        .map(|e| (e.t_ms, e.executor.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        lost,
        vec![
            (5_000, "tm-a1".to_owned()),
            (5_000, "tm-a2".to_owned()),
            (10_000, "tm-c1".to_owned()),
        ],
        "{}",
        timeline(&report)
    );

    // Zone a's loss restarts exactly the regions that had a task in zone a: one failover per
    // executor (one core event each), together their regions and nothing of zone b's own.
    let first: BTreeMap<String, String> = deploys(&report)
        .into_iter()
        .filter(|(_, a, _)| *a == 0)
        .map(|(t, _, e)| (t, e))
        .collect();
    let in_zone_a: BTreeSet<String> = first
        .iter()
        .filter(|(_, e)| e.starts_with("tm-a"))
        .flat_map(|(t, _)| region_of(t))
        .collect();
    assert!(!in_zone_a.is_empty(), "{}", timeline(&report));
    let at_5s: BTreeSet<String> = events(&report, "restart-scheduled")
        .into_iter()
        .filter(|e| e.t_ms == 5_000)
        .flat_map(|e| e.tasks.clone().unwrap_or_default())
        .collect();
    assert_eq!(at_5s, in_zone_a, "{}", timeline(&report));
    assert_eq!(
        restart_sets(&report).len(),
        2 + 1,
        "two losses at 5 s, one at 10 s"
    );

    // Regions wholly in zone b never restarted; everything runs again at the end, in zone b
    // or on tm-b1 after zone c went too.
    for (task, executor) in &first {
        if !in_zone_a.contains(task) {
            assert_eq!(executor, "tm-b1");
        }
    }
    let restarted = restarted_tasks(&report);
    for task in first.keys() {
        let ft = final_task(&report, task);
        if restarted.contains(task) {
            assert!(ft.attempt >= 1, "{task}");
        } else {
            assert_eq!(ft.attempt, 0, "{task} never restarted");
            assert_eq!(ft.state, "RUNNING", "{task}");
        }
    }
}

fn parse_error(faults: &str) -> String {
    match Scenario::parse(&zones(faults), SpecFormat::Toml, |_| Err(String::new())) {
        Ok(_) => panic!("the scenario parses"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn lose_domain_must_name_a_label_some_executor_carries() {
    let e = parse_error("[[faults]]\nat = \"1s\"\nkind = \"lose-domain\"\ndomain = \"zone=x\"\n");
    assert!(
        e.contains("faults[0].domain") && e.contains("zone=x"),
        "{e}"
    );
    let e = parse_error("[[faults]]\nat = \"1s\"\nkind = \"lose-domain\"\ndomain = \"zone\"\n");
    assert!(e.contains("must be key=value"), "{e}");
    let e = parse_error("[[faults]]\nat = \"1s\"\nkind = \"lose-domain\"\n");
    assert!(
        e.contains("faults[0].domain") && e.contains("missing"),
        "{e}"
    );
    let e = parse_error(
        "[[faults]]\nat = \"1s\"\nkind = \"add-executor\"\nexecutor = \"x\"\nlabels = { zone = \"\" }\n",
    );
    assert!(
        e.contains("faults[0].labels") && e.contains("empty value"),
        "{e}"
    );
}
