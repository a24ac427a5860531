//! The exactly-once example (`examples/tasks/exactly_once.py`, README "Checkpoints") on the
//! chaos cluster: submitted when the suite starts, it streams examples/data/orders.txt slowly
//! enough to live through every other case (executor kills, pauses and partitions, leader
//! loss, etcd member and quorum loss); its committed per-city counts are read from the shared
//! volume at every poll — never above the expected count (nothing counted twice) — and must end
//! exactly at the expected counts (nothing lost).

use std::collections::BTreeMap;

use serde_json::json;

use super::cluster::Chaos;
use super::ledger::task_command;

/// The running example: its job id and where its output goes on the shared volume.
pub struct ExactlyOnce {
    pub job: String,
    /// The committed output's folder, relative to the shared volume.
    out: String,
    expected: BTreeMap<String, u64>,
}

/// Orders per second per source: 3,000 orders each last ~75 s, the length of the other cases.
const RATE: &str = "40";

impl ExactlyOnce {
    /// Submits the example job (2 regions of source → count).
    pub fn start(chaos: &Chaos) -> ExactlyOnce {
        let nonce = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let dir = format!("eo-{nonce}");
        let (link, out) = (format!("/shared/{dir}/link"), format!("/shared/{dir}/out"));
        let program = "examples/tasks/exactly_once.py";
        let orders = "examples/data/orders.txt";
        let spec = json!({
            "name": "chaos-exactly-once",
            "failover": "region",
            "restart": { "strategy": "fixed-delay", "attempts": 1000, "delay": "100ms" },
            "checkpoint": { "interval": "500ms", "timeout": "10s", "tolerable-failures": 1000 },
            "vertices": [
                { "id": "source", "parallelism": 2,
                  "command": task_command(&["python3", program, "source", orders, &link, RATE]) },
                { "id": "count", "parallelism": 2,
                  "command": task_command(&["python3", program, "count", &link, &out]) },
            ],
            "edges": [
                { "from": "source", "to": "count", "pattern": "pointwise", "exchange": "pipelined" },
            ],
        });
        let job = chaos.submit("exactly-once", &spec);
        ExactlyOnce {
            job,
            out: format!("{dir}/out"),
            expected: expected_orders(),
        }
    }

    /// The committed counts now, summed over the counters; panics if one is above the
    /// expected count (an order counted twice).
    pub fn committed(&self, chaos: &Chaos) -> BTreeMap<String, u64> {
        let mut sum = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(chaos.path_in_shared(&self.out)) else {
            return sum;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("count-") && name.ends_with(".json")) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not JSON ({e}): {text}"));
            for (city, n) in v["counts"].as_object().expect("counts") {
                *sum.entry(city.clone()).or_insert(0) += n.as_u64().expect("a count");
            }
        }
        for (city, n) in &sum {
            let want = self.expected.get(city).copied().unwrap_or(0);
            assert!(
                *n <= want,
                "{city}: {n} committed > {want} orders: counted twice"
            );
        }
        sum
    }

    pub fn expected(&self) -> &BTreeMap<String, u64> {
        &self.expected
    }
}

/// Orders per city in examples/data/orders.txt (one city per line).
fn expected_orders() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(super::cluster::repo().join("examples/data/orders.txt"))
        .expect("orders.txt");
    let mut counts = BTreeMap::new();
    for city in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        *counts.entry(city.to_owned()).or_insert(0) += 1;
    }
    counts
}
