//! `jmctl checkpoints JOB` (a job's checkpoints: in progress, retained, recently ended, newest
//! first) and `jmctl checkpoint JOB` (trigger one now).

use std::fmt::Write as _;

use serde_json::json;

use super::{Client, CtlError, to_json, wall_time};
use crate::api::v1::{
    CheckpointInfo, ListCheckpointsRequest, ListCheckpointsResponse, TriggerJobCheckpointRequest,
};

/// Lists the checkpoints of `job`.
pub async fn checkpoints(
    client: &mut Client,
    job: &str,
    json_out: bool,
) -> Result<String, CtlError> {
    let r = client
        .list_checkpoints(ListCheckpointsRequest { job_id: job.into() })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    Ok(if json_out {
        to_json(&serde_json::Value::Array(
            r.checkpoints.iter().map(object).collect(),
        ))
    } else {
        table(&r)
    })
}

/// Triggers a checkpoint of `job` now; prints its id.
pub async fn checkpoint(
    client: &mut Client,
    job: &str,
    json_out: bool,
) -> Result<String, CtlError> {
    let r = client
        .trigger_checkpoint(TriggerJobCheckpointRequest { job_id: job.into() })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    Ok(if json_out {
        to_json(&json!({ "job_id": job, "checkpoint_id": r.checkpoint_id }))
    } else {
        format!("checkpoint {} triggered\n", r.checkpoint_id)
    })
}

/// One checkpoint as a JSON object.
fn object(c: &CheckpointInfo) -> serde_json::Value {
    json!({
        "id": c.id, "state": c.state, "trigger_time": c.trigger_time_unix_ms,
        "duration_ms": c.duration_ms, "size_bytes": c.size_bytes,
        "acknowledged": c.acknowledged, "tasks": c.tasks, "retained": c.retained,
        "reason": c.reason,
    })
}

/// Bytes, in the largest unit that keeps at least 1.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn table(r: &ListCheckpointsResponse) -> String {
    let mut out = String::new();
    if r.checkpoints.is_empty() {
        let _ = writeln!(out, "no checkpoint yet (interval {} ms)", r.interval_ms);
        return out;
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<11}  {:<19}  {:>9}  {:>10}  {:>9}  NOTE",
        "ID", "STATE", "TRIGGERED (UTC)", "DURATION", "SIZE", "ACKED"
    );
    for c in &r.checkpoints {
        let note = if c.retained {
            "retained".to_owned()
        } else {
            c.reason.clone()
        };
        let _ = writeln!(
            out,
            "{:>6}  {:<11}  {:<19}  {:>7}ms  {:>10}  {:>9}  {}",
            c.id,
            c.state,
            wall_time(c.trigger_time_unix_ms),
            c.duration_ms,
            bytes(c.size_bytes),
            format!("{}/{}", c.acknowledged, c.tasks),
            note
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_state_time_duration_size_acks_and_why() {
        let r = ListCheckpointsResponse {
            checkpoints: vec![
                CheckpointInfo {
                    id: 3,
                    state: "FAILED".into(),
                    trigger_time_unix_ms: 1_796_542_201_000,
                    duration_ms: 40,
                    size_bytes: 0,
                    acknowledged: 1,
                    tasks: 4,
                    reason: "aborted: declined by task 2: disk full".into(),
                    retained: false,
                },
                CheckpointInfo {
                    id: 2,
                    state: "COMPLETED".into(),
                    trigger_time_unix_ms: 1_796_542_200_000,
                    duration_ms: 12,
                    size_bytes: 3 * 1024 * 1024,
                    acknowledged: 4,
                    tasks: 4,
                    reason: String::new(),
                    retained: true,
                },
            ],
            interval_ms: 1000,
        };
        let t = table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[1].contains("FAILED") && lines[1].contains("1/4"),
            "{t}"
        );
        assert!(
            lines[1].ends_with("aborted: declined by task 2: disk full"),
            "{t}"
        );
        assert!(
            lines[2].contains("3.0 MiB") && lines[2].ends_with("retained"),
            "{t}"
        );
        assert!(lines[2].contains("2026-12-06 07:30:00"), "{t}");
    }

    #[test]
    fn json_objects_carry_the_documented_fields() {
        let c = CheckpointInfo {
            id: 7,
            state: "IN_PROGRESS".into(),
            trigger_time_unix_ms: 5,
            duration_ms: 6,
            size_bytes: 8,
            acknowledged: 1,
            tasks: 2,
            reason: String::new(),
            retained: false,
        };
        let v = object(&c);
        for (key, want) in [
            ("id", json!(7)),
            ("state", json!("IN_PROGRESS")),
            ("trigger_time", json!(5)),
            ("duration_ms", json!(6)),
            ("size_bytes", json!(8)),
            ("acknowledged", json!(1)),
            ("tasks", json!(2)),
        ] {
            assert_eq!(v[key], want, "{key}");
        }
    }
}
