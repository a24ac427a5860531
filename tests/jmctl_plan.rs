//! `jmctl plan` as a user runs it: the real binary on the specs in `examples/`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn jmctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jmctl"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("jmctl runs")
}

/// The city-orders job planned on 3 executors of 4 slots with spread placement.
const SPREAD_PLAN: &[&str] = &[
    "plan",
    "examples/city-orders.toml",
    "--executors",
    "3",
    "--slots",
    "4",
    "--placement",
    "spread",
];

fn json(args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = jmctl(&all);
    assert!(
        out.status.success(),
        "jmctl {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_owned())
        .collect()
}

/// Asserts a failed run: exit code 2 and exactly one line on stderr containing `needle`.
fn assert_input_error(args: &[&str], needle: &str) {
    let out = jmctl(args);
    assert_eq!(out.status.code(), Some(2), "jmctl {args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn plan_json_lists_tasks_regions_restart_and_reasons() {
    let v = json(&[
        "plan",
        "examples/city-orders.toml",
        "--fail",
        "shanghai-orders#1",
    ]);
    assert_eq!(v["tasks"], 8);
    assert_eq!(v["strategy"], "region");
    let regions: Vec<Vec<String>> = v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(strings)
        .collect();
    assert_eq!(regions.len(), 4);
    assert_eq!(regions[3], vec!["shanghai-source#1", "shanghai-orders#1"]);
    assert_eq!(
        strings(&v["restart"]),
        vec!["shanghai-source#1", "shanghai-orders#1"]
    );
    let reasons = v["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0]["reason"], "failed");
    assert_eq!(reasons[0]["region"], 3);
    assert_eq!(reasons[0]["failed_task"], "shanghai-orders#1");
}

#[test]
fn plan_without_fail_prints_regions_only() {
    let v = json(&["plan", "examples/wordcount.json"]);
    assert_eq!(v["tasks"], 7);
    assert_eq!(v["regions"].as_array().unwrap().len(), 7);
    assert!(v.get("restart").is_none() && v.get("reasons").is_none());
}

#[test]
fn plan_lost_partition_pulls_in_its_producer_with_the_partition_named() {
    let v = json(&[
        "plan",
        "examples/wordcount.json",
        "--fail",
        "count#0",
        "--lost",
        "read#1",
    ]);
    assert_eq!(
        strings(&v["restart"]),
        vec!["read#1", "count#0", "count#1", "write#0"]
    );
    let producer = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "producer-of-lost-input")
        .expect("a producer-of-lost-input reason");
    assert_eq!(producer["partition"], "read#1->count");
    assert_eq!(producer["tasks"], serde_json::json!(["read#1"]));
    assert_eq!(producer["consumer"]["region"], 4);
}

#[test]
fn plan_strategy_flag_overrides_the_spec() {
    let v = json(&[
        "plan",
        "examples/city-orders.toml",
        "--fail",
        "beijing-source#0",
        "--strategy",
        "full",
    ]);
    assert_eq!(v["strategy"], "full");
    assert_eq!(v["restart"].as_array().unwrap().len(), 8);
    let v = json(&[
        "plan",
        "examples/city-orders.toml",
        "--fail",
        "beijing-source#0",
        "--strategy",
        "individual",
    ]);
    assert_eq!(strings(&v["restart"]), vec!["beijing-source#0"]);
    assert_eq!(
        v["reasons"][0]["tasks"],
        serde_json::json!(["beijing-source#0"])
    );
}

#[test]
fn plan_summary_prints_counts_for_big_graphs() {
    let v = json(&[
        "plan",
        "examples/all-to-all-blocking-10000.toml",
        "--fail",
        "source#0",
        "--summary",
    ]);
    assert_eq!(v["tasks"], 20_000);
    assert_eq!(v["regions"], 20_000);
    assert_eq!(v["restart"], 10_001);
    assert_eq!(v["reasons"]["failed"], 1);
    assert_eq!(v["reasons"]["consumer-of-restarted-region"], 10_000);

    let out = jmctl(&[
        "plan",
        "examples/all-to-all-pipelined-10000.toml",
        "--fail",
        "sink#9999",
        "--summary",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("20000 tasks in 1 region"), "{text}");
    assert!(text.contains("restarts 20000 of 20000 tasks"), "{text}");
    assert!(text.lines().count() < 10, "a summary stays short: {text}");
}

#[test]
fn plan_table_shows_regions_and_reasons() {
    let out = jmctl(&[
        "plan",
        "examples/city-orders-cross.toml",
        "--fail",
        "beijing-source#1",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("8 tasks in 4 regions"), "{text}");
    assert!(text.contains("beijing-source#1 beijing-orders#1"), "{text}");
    assert!(text.contains("restarts 6 of 8 tasks (3 regions)"), "{text}");
    assert!(text.contains("consumer of restarted region 1"), "{text}");
}

#[test]
fn plan_reads_a_spec_from_standard_input() {
    let spec = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wordcount.json"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jmctl"))
        .args(["--output", "json", "plan", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["job"], "wordcount");
}

#[test]
fn plan_bad_input_is_one_line_and_exit_code_2() {
    assert_input_error(&["plan", "examples/nope.toml"], "cannot read job spec");
    assert_input_error(
        &[
            "plan",
            "examples/city-orders.toml",
            "--fail",
            "beijing-source#7",
        ],
        "subtasks 0 to 1",
    );
    assert_input_error(
        &[
            "plan",
            "examples/city-orders.toml",
            "--fail",
            "paris-source#0",
        ],
        "no vertex \"paris-source\"",
    );
    assert_input_error(
        &[
            "plan",
            "examples/city-orders.toml",
            "--fail",
            "beijing-source",
        ],
        "vertex#subtask",
    );
    assert_input_error(
        &[
            "plan",
            "examples/city-orders.toml",
            "--fail",
            "beijing-source#0",
            "--lost",
            "nowhere#0",
        ],
        "--lost \"nowhere#0\"",
    );
    let dir = std::env::temp_dir().join(format!("jmctl-plan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("cycle.toml");
    std::fs::write(
        &bad,
        "name = \"c\"\n[[vertices]]\nid = \"a\"\nparallelism = 1\ncommand = [\"x\"]\n\
         [[vertices]]\nid = \"b\"\nparallelism = 1\ncommand = [\"x\"]\n\
         [[edges]]\nfrom = \"a\"\nto = \"b\"\npattern = \"pointwise\"\nexchange = \"blocking\"\n\
         [[edges]]\nfrom = \"b\"\nto = \"a\"\npattern = \"pointwise\"\nexchange = \"blocking\"\n",
    )
    .unwrap();
    assert_input_error(&["plan", bad.to_str().unwrap()], "a -> b -> a");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plan_usage_errors_exit_with_code_2() {
    let out = jmctl(&["plan", "examples/city-orders.toml", "--strategy", "some"]);
    assert_eq!(out.status.code(), Some(2));
    let out = jmctl(&[
        "plan",
        "examples/city-orders.toml",
        "--lost",
        "beijing-source#0",
    ]);
    assert_eq!(out.status.code(), Some(2), "--lost needs --fail");
}

// ----- blast radius: jmctl plan --executors N --slots S -----------------------------------------

#[test]
fn plan_blast_radius_counts_what_each_executor_loss_restarts_and_the_expected_fraction() {
    // city-orders: four regions {city-source#i, city-orders#i}. Spread, by hand, on three
    // executors of 4 slots (each task on the executor with the most free slots, ties to the
    // smaller id): e0 gets beijing-source#0, beijing-orders#1, shanghai-source#1 (3 regions);
    // e1 beijing-orders#0, shanghai-source#0, shanghai-orders#1 (3 regions); e2
    // beijing-source#1, shanghai-orders#0 (2 regions). A loss restarts whole regions:
    // 6, 6 and 4 of the 8 tasks; expected fraction (6 + 6 + 4) / 8 / 3 = 2/3.
    let v = json(SPREAD_PLAN);
    assert_eq!(
        (v["tasks"].clone(), v["regions"].clone()),
        (8.into(), 4.into())
    );
    assert_eq!(v["executors"], 3);
    assert_eq!(v["placement"], "spread");
    let rows: Vec<(String, u64, u64, u64)> = v["per_executor"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["executor"].as_str().unwrap().to_owned(),
                e["hosted_tasks"].as_u64().unwrap(),
                e["restart_tasks"].as_u64().unwrap(),
                e["restart_regions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("e0".to_owned(), 3, 6, 3),
            ("e1".to_owned(), 3, 6, 3),
            ("e2".to_owned(), 2, 4, 2),
        ]
    );
    let fraction = v["expected_fraction"].as_f64().unwrap();
    assert!((fraction - 2.0 / 3.0).abs() < 1e-9, "{fraction}");

    // The table says the same.
    let out = jmctl(SPREAD_PLAN);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("restarted by one random executor loss: 0.667"),
        "{table}"
    );
}

#[test]
fn plan_blast_radius_of_a_single_executor_is_everything() {
    let v = json(&[
        "plan",
        "examples/city-orders.toml",
        "--executors",
        "1",
        "--slots",
        "8",
    ]);
    assert_eq!(v["per_executor"][0]["restart_tasks"], 8);
    assert_eq!(v["expected_fraction"], 1.0);
}

#[test]
fn plan_blast_radius_refuses_bad_input_with_exit_code_2() {
    assert_input_error(
        &[
            "plan",
            "examples/city-orders.toml",
            "--executors",
            "2",
            "--slots",
            "4",
            "--placement",
            "tidy",
        ],
        "placement \"tidy\" is unknown",
    );
    let out = jmctl(&["plan", "examples/city-orders.toml", "--executors", "2"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--slots is required with --executors"
    );
    let out = jmctl(&[
        "plan",
        "examples/city-orders.toml",
        "--executors",
        "0",
        "--slots",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(2), "at least one executor");
}

#[test]
fn submit_reports_an_invalid_spec_as_such_before_connecting() {
    // Nothing listens on port 1: an answer about the spec proves no connection was tried.
    let mut child = Command::new(env!("CARGO_BIN_EXE_jmctl"))
        .args(["--endpoint", "http://127.0.0.1:1", "submit", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jmctl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"name = \"x\"\n")
        .expect("write the spec");
    let out = child.wait_with_output().expect("jmctl ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("vertices"), "{stderr}");
    assert!(!stderr.contains("connect"), "{stderr}");
}
