//! The report as tables on stdout (the JSON report, as `--json` prints it, is built by each
//! scenario).

use serde_json::Value;

pub(crate) fn print_report(report: &Value) {
    println!(
        "== jmload {} ==",
        report["scenario"].as_str().unwrap_or("?")
    );
    let pairs = |v: &Value| -> Vec<(String, Value)> {
        v.as_array()
            .map(|rows| rows.iter().map(|r| (plain(&r[0]), r[1].clone())).collect())
            .unwrap_or_default()
    };
    let width = |rows: &[(String, Value)]| rows.iter().map(|(k, _)| k.chars().count()).max();
    let setup = pairs(&report["setup"]);
    let w = width(&setup).unwrap_or(0);
    if !setup.is_empty() {
        println!();
        for (k, v) in &setup {
            println!("  {k:<w$}  {}", plain(v));
        }
    }
    let latency = pairs(&report["latency_ms"]);
    if !latency.is_empty() {
        let w = width(&latency).unwrap_or(0).max(12);
        println!();
        println!(
            "  {:<w$}  {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "n", "min", "p50", "p90", "p99", "max"
        );
        for (k, s) in &latency {
            let f = |name: &str| s[name].as_f64().map_or("-".into(), |x| format!("{x:.3}"));
            println!(
                "  {k:<w$}  {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}",
                s["n"].as_u64().unwrap_or(0),
                f("min"),
                f("p50"),
                f("p90"),
                f("p99"),
                f("max")
            );
        }
    }
    let results = pairs(&report["results"]);
    if !results.is_empty() {
        let w = width(&results).unwrap_or(0);
        println!();
        for (k, v) in &results {
            println!("  {k:<w$}  {}", plain(v));
        }
    }
    if let Some(targets) = report["targets"].as_array() {
        println!();
        for t in targets {
            println!(
                "  target: {}: {}",
                t["target"].as_str().unwrap_or(""),
                t["verdict"].as_str().unwrap_or("")
            );
        }
    }
    println!();
    println!("  daemon: {}", plain(&report["daemon"]));
    if !report["store"].is_null() {
        println!("  store: {}", plain(&report["store"]));
    }
    if !report["machine"].is_null() {
        println!("  machine: {}", plain(&report["machine"]));
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
