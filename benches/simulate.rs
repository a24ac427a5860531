//! `jmctl simulate` throughput: a 10,000-task streaming job of 100 independent regions driven
//! through 1,000 single-task failures (zero backoff), on the real core with virtual executors.
//! Target (issue 3): ≤ 1 s wall for the whole simulation.

use criterion::{Criterion, criterion_group, criterion_main};
use jobmaster::core::SpecFormat;
use jobmaster::simulate::{Scenario, simulate};

/// 100 vertices × parallelism 100, chained pointwise pipelined: region i = every vertex's
/// subtask i, so 100 independent regions of 100 tasks.
fn scenario(width: usize, failures: usize) -> Scenario {
    const CHAIN: usize = 100;
    let slots = width * CHAIN / 10 + 100;
    let mut text = String::from(
        "until = \"3h\"\n[job]\nname = \"bench\"\nfailover = \"region\"\n\
         restart = { strategy = \"fixed-delay\", attempts = 1000000, delay = \"0s\" }\nvertices = [\n",
    );
    for v in 0..CHAIN {
        text += &format!("  {{ id = \"v{v}\", parallelism = {width}, command = [\"x\"] }},\n");
    }
    text += "]\nedges = [\n";
    for v in 1..CHAIN {
        text += &format!(
            "  {{ from = \"v{}\", to = \"v{v}\", pattern = \"pointwise\", exchange = \"pipelined\" }},\n",
            v - 1
        );
    }
    text +=
        "]\n[runtime]\ndefault = \"forever\"\n[latency]\ndeploy = \"10ms\"\ncancel = \"10ms\"\n";
    for e in 0..10 {
        text += &format!("[[executors]]\nid = \"tm-{e}\"\nslots = {slots}\n");
    }
    // One failure every 10 s, walking over regions and vertices.
    for f in 0..failures {
        let vertex = (f * 37) % CHAIN;
        let subtask = (f * 13) % width;
        text += &format!(
            "[[faults]]\nat = \"{}s\"\nkind = \"fail-task\"\ntask = \"v{vertex}#{subtask}\"\n",
            10 + f * 10
        );
    }
    Scenario::parse(&text, SpecFormat::Toml, |_| Err("no files".into())).expect("valid scenario")
}

fn bench(c: &mut Criterion) {
    let s = scenario(100, 1000);
    let report = simulate(&s, false);
    assert_eq!(report.final_state.job_state, "RUNNING");
    assert_eq!(report.final_state.failovers, 1000);
    assert_eq!(report.final_state.tasks_restarted, 1000 * 100);
    assert!(
        report
            .final_state
            .tasks
            .iter()
            .all(|t| t.state == "RUNNING")
    );

    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    group.bench_function("streaming_10000_tasks_100_regions_1000_failures", |b| {
        b.iter(|| simulate(&s, false))
    });
    group.bench_function(
        "streaming_10000_tasks_100_regions_1000_failures_with_events",
        |b| b.iter(|| simulate(&s, true)),
    );
    // The same failures in a job ten times larger (100,000 tasks, 1,000 regions): the work per
    // failover is O(restart set), so only the job's start-up grows.
    let big = scenario(1000, 1000);
    group.bench_function("streaming_100000_tasks_1000_regions_1000_failures", |b| {
        b.iter(|| simulate(&big, false))
    });
    let big_no_failures = scenario(1000, 0);
    group.bench_function("streaming_100000_tasks_1000_regions_no_failures", |b| {
        b.iter(|| simulate(&big_no_failures, false))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
