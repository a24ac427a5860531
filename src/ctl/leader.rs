//! `jmctl leader`: who leads the JobMasters — the leader's endpoint, the HA mode, its epoch,
//! since when it leads and its election key — as a table or a JSON object.

use std::fmt::Write as _;

use serde_json::json;

use super::{Client, CtlError, coarse_duration, now_ms, to_json, wall_time};
use crate::api::v1::{GetLeaderRequest, GetLeaderResponse};

/// Asks the JobMaster reached (the leader, see [`super::follow`]) who leads.
pub async fn leader(client: &mut Client, json_out: bool) -> Result<String, CtlError> {
    let r = client
        .get_leader(GetLeaderRequest {})
        .await
        .map_err(CtlError::server)?
        .into_inner();
    Ok(if json_out {
        to_json(&json!({
            "ha_mode": r.ha_mode, "leader_endpoint": r.leader_endpoint, "epoch": r.epoch,
            "since_unix_ms": r.since_unix_ms, "leader_key": r.leader_key,
        }))
    } else {
        table(&r, now_ms())
    })
}

/// The table of `r` at `now` (ms since the Unix epoch); `-` for what is not set.
fn table(r: &GetLeaderResponse, now: u64) -> String {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let since = if r.since_unix_ms == 0 {
        "-".to_owned()
    } else {
        format!(
            "{} UTC ({} ago)",
            wall_time(r.since_unix_ms),
            coarse_duration(now.saturating_sub(r.since_unix_ms))
        )
    };
    let mut out = String::new();
    for (key, value) in [
        ("LEADER", or_dash(&r.leader_endpoint)),
        ("HA MODE", or_dash(&r.ha_mode)),
        ("EPOCH", r.epoch.to_string()),
        ("SINCE", since),
        ("KEY", or_dash(&r.leader_key)),
    ] {
        let _ = writeln!(out, "{key:<8} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_the_leader_its_mode_epoch_age_and_key() {
        let r = GetLeaderResponse {
            ha_mode: "etcd".into(),
            leader_endpoint: "http://10.0.0.7:6123".into(),
            epoch: 42,
            since_unix_ms: 1_796_542_201_000,
            leader_key: "/jobmaster/leader/694d".into(),
        };
        assert_eq!(
            table(&r, 1_796_542_201_000 + 41 * 60_000),
            "LEADER   http://10.0.0.7:6123\nHA MODE  etcd\nEPOCH    42\n\
             SINCE    2026-12-06 07:30:01 UTC (41m ago)\nKEY      /jobmaster/leader/694d\n"
        );
        let none = GetLeaderResponse {
            ha_mode: "none".into(),
            ..GetLeaderResponse::default()
        };
        assert_eq!(
            table(&none, 5),
            "LEADER   -\nHA MODE  none\nEPOCH    0\nSINCE    -\nKEY      -\n"
        );
    }
}
