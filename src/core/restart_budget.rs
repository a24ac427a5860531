//! Per-region restart budgets: a region that restarts more than `max_restarts` times within
//! `window_ms` fails its job (like a non-recoverable failure) instead of flapping forever, even
//! when the job's restart strategy would allow more (the default, exponential-delay with
//! unlimited attempts, restarts a region that always fails about once a minute, forever).
//!
//! A region counts one restart per failover decision that restarts at least one of its tasks
//! anew: a failure merged into a restart the region already awaits does not count again.

use std::collections::{BTreeMap, VecDeque};

use super::Millis;
use super::duration::format_millis;
use super::region::RegionId;

/// The config key named in the cause of a job that exceeded a budget.
pub const BUDGET_KEY: &str = "scheduler.region-restart-budget.max-restarts";

/// How often one region may restart. `max_restarts` 0 disables the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartBudgetConfig {
    pub max_restarts: u32,
    pub window_ms: Millis,
}

impl RestartBudgetConfig {
    /// No budget: only the restart strategy decides.
    pub const OFF: RestartBudgetConfig = RestartBudgetConfig {
        max_restarts: 0,
        window_ms: 3_600_000,
    };
}

impl Default for RestartBudgetConfig {
    /// 30 restarts within 1h: a region failing every 2 minutes for an hour. Exponential-delay
    /// at its default 1 min backoff cap reaches it after about half an hour; fixed-delay 1s
    /// within a minute; occasional failures, even a daily burst of a few, never do.
    fn default() -> Self {
        RestartBudgetConfig {
            max_restarts: 30,
            window_ms: 3_600_000,
        }
    }
}

/// Recent restarts of one job's regions (only regions that restarted within the window).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RegionRestarts {
    times: BTreeMap<RegionId, VecDeque<Millis>>,
}

impl RegionRestarts {
    /// Records a restart of each of `regions` at `now`; returns the cause if one of them is
    /// now over its budget.
    pub(crate) fn record(
        &mut self,
        regions: impl IntoIterator<Item = RegionId>,
        now: Millis,
        config: &RestartBudgetConfig,
    ) -> Option<String> {
        if config.max_restarts == 0 {
            return None;
        }
        let mut over = None;
        for r in regions {
            let times = self.times.entry(r).or_default();
            times.push_back(now);
            while times
                .front()
                .is_some_and(|&t| now.saturating_sub(t) >= config.window_ms)
            {
                times.pop_front();
            }
            if over.is_none() && times.len() > config.max_restarts as usize {
                over = Some(format!(
                    "region {} restarted {} times within {}, more than its budget of {} ({BUDGET_KEY})",
                    r.0,
                    times.len(),
                    format_millis(config.window_ms),
                    config.max_restarts
                ));
            }
        }
        // Forget regions whose restarts all expired.
        self.times.retain(|_, t| {
            t.back()
                .is_some_and(|&last| now.saturating_sub(last) < config.window_ms)
        });
        over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_over_its_budget_within_the_window_is_named() {
        let config = RestartBudgetConfig {
            max_restarts: 2,
            window_ms: 1_000,
        };
        let mut r = RegionRestarts::default();
        assert_eq!(r.record([RegionId(0), RegionId(1)], 0, &config), None);
        assert_eq!(r.record([RegionId(0)], 500, &config), None);
        // The restart at 0 expired for region 0 by 1_000.
        assert_eq!(r.record([RegionId(0)], 1_000, &config), None);
        let cause = r
            .record([RegionId(1), RegionId(0)], 1_200, &config)
            .unwrap();
        assert_eq!(
            cause,
            "region 0 restarted 3 times within 1s, more than its budget of 2 \
             (scheduler.region-restart-budget.max-restarts)"
        );
        let mut off = RegionRestarts::default();
        for t in 0..100 {
            assert_eq!(
                off.record([RegionId(0)], t, &RestartBudgetConfig::OFF),
                None
            );
        }
    }
}
