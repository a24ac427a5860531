//! Restart backoff (DESIGN §3): after a failure, whether the job may restart and after what delay,
//! or whether it must give up — the four strategies of [`RestartStrategyConfig`] with Flink's
//! semantics (Flink ≥ 1.19 for `exponential-delay`).
//!
//! This module owns only that decision and the state it needs (failure counts, failure
//! timestamps, the exponential attempt counter and pending restart time). It does not know which
//! tasks restart (that is `restart_set`), does not schedule anything and never reads a clock:
//! time is the `now` argument (milliseconds since an arbitrary epoch, expected not to go
//! backwards), and the jitter of `exponential-delay` comes from a small `SplitMix64` generator
//! seeded by the caller. The same config, seed and failure times always give the same decisions.
//!
//! * `none` — every failure gives up.
//! * `fixed-delay` — every failure counts, also one during a pending backoff; failures
//!   `1..=attempts` restart after `delay`, the next one gives up.
//! * `failure-rate` — a failure at `now` counts together with the earlier failures at `t` with
//!   `now - t < interval`; more than `max-failures-per-interval` of them give up.
//! * `exponential-delay` — a failure while a restart is pending (`now < next_restart_at`) merges
//!   into it (no new attempt). Otherwise the attempt counter resets when `now - next_restart_at >=
//!   reset-backoff-threshold`, the delay is `initial · multiplier^attempt` with uniform jitter of
//!   `±delay · jitter-factor`, clamped to `[initial, max]`, and the job gives up once the attempt
//!   counter exceeds `attempts-before-reset-backoff`.

use std::collections::VecDeque;
use std::time::Duration;

use super::spec::RestartStrategyConfig;

/// What the strategy decided about one failure.
#[derive(Debug, Clone, PartialEq)]
pub enum BackoffDecision {
    /// Restart after `delay_ms`. `merged: true` means this failure joined a restart that is
    /// already pending (exponential-delay only): no new attempt was counted and `delay_ms` is the
    /// time left until that pending restart.
    Restart { delay_ms: u64, merged: bool },
    /// The strategy refuses: the job must fail. `reason` is a human sentence naming the strategy
    /// and the limit.
    GiveUp { reason: String },
}

/// A restart strategy with its state: feed it every failure with [`RestartBackoff::on_failure`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RestartBackoff {
    state: Strategy,
    restarts: u32,
    rng: SplitMix64,
}

/// Config (durations in milliseconds) and state of each strategy.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Strategy {
    None,
    FixedDelay {
        attempts: u32,
        delay_ms: u64,
        /// Failures seen so far, each one counted.
        failures: u64,
    },
    FailureRate {
        max_failures: u32,
        interval: Duration,
        interval_ms: u64,
        delay_ms: u64,
        /// Times of the most recent failures still inside the interval, oldest first; at most
        /// `max_failures` of them, which is all the decision needs.
        recent: VecDeque<u64>,
    },
    ExponentialDelay {
        initial_ms: u64,
        max_ms: u64,
        multiplier: f64,
        reset: Duration,
        reset_ms: u64,
        jitter_factor: f64,
        attempts_before_reset: Option<u32>,
        /// Attempts since the last reset.
        attempt: u32,
        /// When the latest granted (or refused) restart happens; `None` before the first failure.
        next_restart_at: Option<u64>,
    },
}

/// Largest base backoff computed in floating point: far beyond any `u64` of milliseconds, yet
/// small enough that adding jitter to it stays finite.
const BASE_BACKOFF_LIMIT: f64 = 1.0e30;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RestartBackoff {
    /// A fresh strategy for `config`; `seed` drives the jitter of `exponential-delay`.
    pub fn new(config: &RestartStrategyConfig, seed: u64) -> RestartBackoff {
        let state = match *config {
            RestartStrategyConfig::None => Strategy::None,
            RestartStrategyConfig::FixedDelay { attempts, delay } => Strategy::FixedDelay {
                attempts,
                delay_ms: millis(delay),
                failures: 0,
            },
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval,
                interval,
                delay,
            } => Strategy::FailureRate {
                max_failures: max_failures_per_interval,
                interval,
                interval_ms: millis(interval),
                delay_ms: millis(delay),
                recent: VecDeque::new(),
            },
            RestartStrategyConfig::ExponentialDelay {
                initial_backoff,
                max_backoff,
                multiplier,
                reset_backoff_threshold,
                jitter_factor,
                attempts_before_reset_backoff,
            } => Strategy::ExponentialDelay {
                initial_ms: millis(initial_backoff),
                max_ms: millis(max_backoff),
                // The spec validates both; a config built in code may still hold anything.
                multiplier: if multiplier.is_nan() {
                    1.0
                } else {
                    multiplier.max(1.0)
                },
                reset: reset_backoff_threshold,
                reset_ms: millis(reset_backoff_threshold),
                jitter_factor: if jitter_factor.is_nan() {
                    0.0
                } else {
                    jitter_factor.clamp(0.0, 1.0)
                },
                attempts_before_reset: attempts_before_reset_backoff,
                attempt: 0,
                next_restart_at: None,
            },
        };
        RestartBackoff {
            state,
            restarts: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, now: u64) -> BackoffDecision {
        let decision = match &mut self.state {
            Strategy::None => BackoffDecision::GiveUp {
                reason: "restart strategy none: restarts are disabled".into(),
            },
            Strategy::FixedDelay {
                attempts,
                delay_ms,
                failures,
            } => {
                *failures = failures.saturating_add(1);
                if *failures <= u64::from(*attempts) {
                    BackoffDecision::Restart {
                        delay_ms: *delay_ms,
                        merged: false,
                    }
                } else {
                    BackoffDecision::GiveUp {
                        reason: match *attempts {
                            0 => "fixed-delay: no restart attempts allowed (attempts 0)".into(),
                            1 => "fixed-delay: the 1 allowed restart attempt was used".into(),
                            n => format!("fixed-delay: all {n} restart attempts used"),
                        },
                    }
                }
            }
            Strategy::FailureRate {
                max_failures,
                interval,
                interval_ms,
                delay_ms,
                recent,
            } => {
                while recent
                    .front()
                    .is_some_and(|&t| now.saturating_sub(t) >= *interval_ms)
                {
                    recent.pop_front();
                }
                // `recent` holds at most `max_failures` entries, so this is capped at max + 1:
                // enough to tell whether the limit is exceeded.
                let in_window = recent.len() as u64 + 1;
                recent.push_back(now);
                while recent.len() > *max_failures as usize {
                    recent.pop_front();
                }
                if in_window > u64::from(*max_failures) {
                    BackoffDecision::GiveUp {
                        reason: format!(
                            "failure-rate: {in_window} failure{} within {} exceed \
                             max-failures-per-interval {max_failures}",
                            if in_window == 1 { "" } else { "s" },
                            humantime::format_duration(*interval),
                        ),
                    }
                } else {
                    BackoffDecision::Restart {
                        delay_ms: *delay_ms,
                        merged: false,
                    }
                }
            }
            Strategy::ExponentialDelay {
                initial_ms,
                max_ms,
                multiplier,
                reset,
                reset_ms,
                jitter_factor,
                attempts_before_reset,
                attempt,
                next_restart_at,
            } => {
                let over_limit = |attempt: u32| attempts_before_reset.is_some_and(|n| attempt > n);
                let give_up = |attempt: u32| BackoffDecision::GiveUp {
                    reason: format!(
                        "exponential-delay: restart attempt {attempt} exceeds \
                         attempts-before-reset-backoff {} (the backoff resets only after {} \
                         without failures)",
                        attempts_before_reset.unwrap_or(u32::MAX),
                        humantime::format_duration(*reset),
                    ),
                };
                match *next_restart_at {
                    // At `now == pending` the restart is due (and may already have happened): a new
                    // failure then starts a new attempt rather than merging into a finished one.
                    Some(pending) if now < pending => {
                        // Merged into the pending restart. Like Flink's `canRestart()`, which is
                        // asked after every failure, a failure merged into a refused restart is
                        // refused too.
                        if over_limit(*attempt) {
                            give_up(*attempt)
                        } else {
                            BackoffDecision::Restart {
                                delay_ms: pending - now,
                                merged: true,
                            }
                        }
                    }
                    previous => {
                        if previous.is_some_and(|p| now.saturating_sub(p) >= *reset_ms) {
                            *attempt = 0;
                        }
                        let backoff = exponential_backoff(
                            *initial_ms,
                            *max_ms,
                            *multiplier,
                            *jitter_factor,
                            *attempt,
                            &mut self.rng,
                        );
                        *next_restart_at = Some(now.saturating_add(backoff));
                        *attempt = attempt.saturating_add(1);
                        if over_limit(*attempt) {
                            give_up(*attempt)
                        } else {
                            BackoffDecision::Restart {
                                delay_ms: backoff,
                                merged: false,
                            }
                        }
                    }
                }
            }
        };
        if let BackoffDecision::Restart { merged: false, .. } = decision {
            self.restarts = self.restarts.saturating_add(1);
        }
        decision
    }

    /// Restarts granted so far as new attempts (merged failures not counted).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The strategy's name as written in specs (`none`, `fixed-delay`, ...).
    pub fn strategy_name(&self) -> &'static str {
        match self.state {
            Strategy::None => "none",
            Strategy::FixedDelay { .. } => "fixed-delay",
            Strategy::FailureRate { .. } => "failure-rate",
            Strategy::ExponentialDelay { .. } => "exponential-delay",
        }
    }
}

/// `initial · multiplier^attempt` (truncated to whole milliseconds, as Flink does), plus a jitter
/// drawn uniformly from the integers in `[-offset, +offset]` with `offset = ⌊base · jitter⌋`,
/// clamped to `[initial, max]` (`initial` wins if a hand-built config has it above `max`).
/// Saturates instead of overflowing: any multiplier and attempt count give a finite value.
fn exponential_backoff(
    initial_ms: u64,
    max_ms: u64,
    multiplier: f64,
    jitter_factor: f64,
    attempt: u32,
    rng: &mut SplitMix64,
) -> u64 {
    let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
    let base = initial_ms as f64 * multiplier.powi(exponent);
    // NaN only from 0 · ∞; `as u64` saturates, so the limit just keeps later arithmetic finite.
    let base = if base.is_nan() {
        initial_ms as f64
    } else {
        base.min(BASE_BACKOFF_LIMIT)
    };
    let base_ms = base as u64;
    let offset = (base_ms as f64 * jitter_factor) as u64;
    let jitter: i128 = if offset == 0 {
        0
    } else {
        let span = 2 * u128::from(offset) + 1;
        (rng.next_u128() % span) as i128 - i128::from(offset)
    };
    let jittered = i128::from(base_ms) + jitter;
    let capped = jittered.min(i128::from(max_ms));
    capped.max(i128::from(initial_ms)) as u64
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for jitter.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 128 random bits, so `% span` is unbiased to within `span / 2^128` for any `span` we use.
    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    fn restart(delay_ms: u64) -> BackoffDecision {
        BackoffDecision::Restart {
            delay_ms,
            merged: false,
        }
    }

    fn merged(delay_ms: u64) -> BackoffDecision {
        BackoffDecision::Restart {
            delay_ms,
            merged: true,
        }
    }

    fn is_give_up(d: &BackoffDecision) -> bool {
        matches!(d, BackoffDecision::GiveUp { .. })
    }

    fn exponential(
        initial_ms: u64,
        max_ms: u64,
        multiplier: f64,
        reset_ms: u64,
        jitter_factor: f64,
        attempts_before_reset_backoff: Option<u32>,
    ) -> RestartStrategyConfig {
        RestartStrategyConfig::ExponentialDelay {
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(max_ms),
            multiplier,
            reset_backoff_threshold: Duration::from_millis(reset_ms),
            jitter_factor,
            attempts_before_reset_backoff,
        }
    }

    /// Fails right after each granted restart happens, so every failure is a new attempt.
    fn delays_after_each_restart(b: &mut RestartBackoff, failures: usize) -> Vec<u64> {
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..failures {
            match b.on_failure(now) {
                BackoffDecision::Restart {
                    delay_ms,
                    merged: false,
                } => {
                    delays.push(delay_ms);
                    now += delay_ms + 1;
                }
                other => panic!("expected a new restart at {now}, got {other:?}"),
            }
        }
        delays
    }

    #[test]
    fn none_gives_up_at_the_first_failure() {
        let mut b = RestartBackoff::new(&RestartStrategyConfig::None, 7);
        assert_eq!(b.strategy_name(), "none");
        for now in [0, 1, 1_000_000] {
            assert_eq!(
                b.on_failure(now),
                BackoffDecision::GiveUp {
                    reason: "restart strategy none: restarts are disabled".into()
                }
            );
        }
        assert_eq!(b.restarts(), 0);
    }

    #[test]
    fn fixed_delay_restarts_attempts_times_then_gives_up() {
        let config = RestartStrategyConfig::FixedDelay {
            attempts: 3,
            delay: Duration::from_millis(500),
        };
        let mut b = RestartBackoff::new(&config, 0);
        assert_eq!(b.strategy_name(), "fixed-delay");
        assert_eq!(b.on_failure(0), restart(500));
        assert_eq!(b.on_failure(10_000), restart(500));
        assert_eq!(b.on_failure(20_000), restart(500));
        assert_eq!(b.restarts(), 3);
        assert_eq!(
            b.on_failure(30_000),
            BackoffDecision::GiveUp {
                reason: "fixed-delay: all 3 restart attempts used".into()
            }
        );
        assert_eq!(b.restarts(), 3);
    }

    #[test]
    fn fixed_delay_counts_failures_during_a_pending_backoff() {
        let config = RestartStrategyConfig::FixedDelay {
            attempts: 3,
            delay: Duration::from_secs(10),
        };
        let mut b = RestartBackoff::new(&config, 0);
        // All four inside the first 10 s backoff: none is merged.
        assert_eq!(b.on_failure(0), restart(10_000));
        assert_eq!(b.on_failure(1), restart(10_000));
        assert_eq!(b.on_failure(2), restart(10_000));
        assert!(is_give_up(&b.on_failure(3)));
        assert_eq!(b.restarts(), 3);
    }

    #[test]
    fn fixed_delay_with_zero_attempts_gives_up_at_once() {
        let config = RestartStrategyConfig::FixedDelay {
            attempts: 0,
            delay: SECOND,
        };
        let mut b = RestartBackoff::new(&config, 0);
        assert!(is_give_up(&b.on_failure(0)));
        assert_eq!(b.restarts(), 0);
    }

    #[test]
    fn failure_rate_refuses_the_failure_beyond_max_inside_the_interval() {
        let config = RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 1,
            interval: Duration::from_secs(60),
            delay: SECOND,
        };
        let mut b = RestartBackoff::new(&config, 0);
        assert_eq!(b.strategy_name(), "failure-rate");
        assert_eq!(b.on_failure(0), restart(1000));
        assert_eq!(
            b.on_failure(59_999),
            BackoffDecision::GiveUp {
                reason: "failure-rate: 2 failures within 1m exceed max-failures-per-interval 1"
                    .into()
            }
        );
        assert_eq!(b.restarts(), 1);
    }

    #[test]
    fn failure_rate_allows_the_same_failure_after_the_interval() {
        let config = RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 2,
            interval: Duration::from_secs(60),
            delay: SECOND,
        };
        // Third failure inside the interval: refused.
        let mut b = RestartBackoff::new(&config, 0);
        assert_eq!(b.on_failure(0), restart(1000));
        assert_eq!(b.on_failure(1_000), restart(1000));
        assert!(is_give_up(&b.on_failure(59_999)));

        // Third failure once the first has left the window (`now - t < interval` is strict).
        let mut b = RestartBackoff::new(&config, 0);
        assert_eq!(b.on_failure(0), restart(1000));
        assert_eq!(b.on_failure(1_000), restart(1000));
        assert_eq!(b.on_failure(60_000), restart(1000));
        // 1_000 and 60_000 are still inside the window of 60_999.
        assert!(is_give_up(&b.on_failure(60_999)));
        assert_eq!(b.restarts(), 3);
    }

    #[test]
    fn failure_rate_keeps_memory_bounded() {
        let config = RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 3,
            interval: YEAR,
            delay: SECOND,
        };
        let mut b = RestartBackoff::new(&config, 0);
        for now in 0..10_000 {
            b.on_failure(now);
        }
        let Strategy::FailureRate { recent, .. } = &b.state else {
            unreachable!()
        };
        assert_eq!(recent.len(), 3);
        assert_eq!(b.restarts(), 3);
    }

    #[test]
    fn exponential_delays_grow_by_the_multiplier_and_cap_at_max() {
        let config = exponential(1000, 10_000, 2.0, 3_600_000, 0.0, None);
        let mut b = RestartBackoff::new(&config, 42);
        assert_eq!(b.strategy_name(), "exponential-delay");
        assert_eq!(
            delays_after_each_restart(&mut b, 7),
            [1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.restarts(), 7);

        // Fractional growth truncates to whole milliseconds, as Flink does.
        let config = exponential(1000, 60_000, 1.5, 3_600_000, 0.0, None);
        let mut b = RestartBackoff::new(&config, 42);
        assert_eq!(
            delays_after_each_restart(&mut b, 6),
            [1000, 1500, 2250, 3375, 5062, 7593]
        );
    }

    #[test]
    fn exponential_failure_during_a_pending_restart_is_merged() {
        let config = exponential(1000, 60_000, 2.0, 3_600_000, 0.0, None);
        let mut b = RestartBackoff::new(&config, 0);
        assert_eq!(b.on_failure(0), restart(1000));
        assert_eq!(b.on_failure(400), merged(600));
        assert_eq!(b.on_failure(999), merged(1));
        assert_eq!(b.restarts(), 1);
        // The merged failures did not advance the backoff: the next attempt is the second. At
        // the pending moment itself the restart is due, so a failure then is a new attempt.
        assert_eq!(b.on_failure(1000), restart(2000));
        assert_eq!(b.on_failure(2999), merged(1));
        assert_eq!(b.restarts(), 2);
    }

    #[test]
    fn exponential_resets_after_the_threshold_without_failures() {
        let config = exponential(1000, 60_000, 2.0, 10_000, 0.0, None);
        let mut b = RestartBackoff::new(&config, 0);
        assert_eq!(b.on_failure(0), restart(1000)); // pending until 1000
        assert_eq!(b.on_failure(1001), restart(2000)); // pending until 3001
        assert_eq!(b.on_failure(13_001), restart(1000)); // 10 s after 3001: reset

        // One millisecond short of the threshold: no reset.
        let mut b = RestartBackoff::new(&config, 0);
        assert_eq!(b.on_failure(0), restart(1000));
        assert_eq!(b.on_failure(1001), restart(2000));
        assert_eq!(b.on_failure(13_000), restart(4000));
        assert_eq!(b.restarts(), 3);
    }

    #[test]
    fn exponential_gives_up_beyond_attempts_before_reset_backoff() {
        let config = exponential(1000, 60_000, 2.0, 3_600_000, 0.0, Some(2));
        let mut b = RestartBackoff::new(&config, 0);
        assert_eq!(b.on_failure(0), restart(1000));
        assert_eq!(b.on_failure(500), merged(500));
        assert_eq!(b.on_failure(1001), restart(2000));
        let refused = b.on_failure(3002);
        assert_eq!(
            refused,
            BackoffDecision::GiveUp {
                reason: "exponential-delay: restart attempt 3 exceeds \
                         attempts-before-reset-backoff 2 (the backoff resets only after 1h \
                         without failures)"
                    .into()
            }
        );
        // A failure merged into the refused restart is refused too.
        assert_eq!(b.on_failure(3003), refused);
        assert_eq!(b.restarts(), 2);
        // The limit counts attempts since the last reset.
        assert_eq!(b.on_failure(3002 + 4000 + 3_600_000), restart(1000));
        assert_eq!(b.restarts(), 3);
    }

    #[test]
    fn exponential_jitter_stays_within_bounds_and_is_deterministic_per_seed() {
        let (initial, max, jitter) = (1000u64, 60_000u64, 0.5);
        let config = exponential(initial, max, 2.0, 3_600_000, jitter, None);
        let mut first_delays = std::collections::BTreeSet::new();
        for seed in 0..500u64 {
            let mut b = RestartBackoff::new(&config, seed);
            let delays = delays_after_each_restart(&mut b, 12);
            for (attempt, &d) in delays.iter().enumerate() {
                let base = initial * 2u64.pow(attempt as u32);
                let offset = (base as f64 * jitter) as u64;
                let low = (base - offset).clamp(initial, max);
                let high = (base + offset).clamp(initial, max);
                assert!(
                    (low..=high).contains(&d),
                    "seed {seed}, attempt {attempt}: {d} outside [{low}, {high}]"
                );
            }
            first_delays.insert(delays[1]);
            let mut again = RestartBackoff::new(&config, seed);
            assert_eq!(delays_after_each_restart(&mut again, 12), delays);
        }
        // Jitter really varies with the seed (attempt 1: base 2000, range [1000, 3000]).
        assert!(first_delays.len() > 100, "{}", first_delays.len());
        assert!(first_delays.iter().any(|&d| d < 2000));
        assert!(first_delays.iter().any(|&d| d > 2000));
    }

    #[test]
    fn identical_inputs_give_identical_decisions() {
        let configs = [
            RestartStrategyConfig::None,
            RestartStrategyConfig::FixedDelay {
                attempts: 5,
                delay: SECOND,
            },
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval: 3,
                interval: Duration::from_secs(10),
                delay: SECOND,
            },
            RestartStrategyConfig::default_exponential(),
        ];
        let times: Vec<u64> = (0..200u64)
            .map(|i| i * i * 37 % 100_000 + i * 900)
            .collect();
        for config in &configs {
            let run = |seed| {
                let mut b = RestartBackoff::new(config, seed);
                times.iter().map(|&t| b.on_failure(t)).collect::<Vec<_>>()
            };
            assert_eq!(run(9), run(9), "{}", config.name());
        }
    }

    #[test]
    fn extreme_configs_saturate_without_panicking() {
        let mut configs = vec![
            RestartStrategyConfig::ExponentialDelay {
                initial_backoff: SECOND,
                max_backoff: YEAR,
                multiplier: 1000.0,
                reset_backoff_threshold: YEAR,
                jitter_factor: 1.0,
                attempts_before_reset_backoff: None,
            },
            RestartStrategyConfig::ExponentialDelay {
                initial_backoff: Duration::ZERO,
                max_backoff: Duration::MAX,
                multiplier: f64::INFINITY,
                reset_backoff_threshold: Duration::MAX,
                jitter_factor: 1.0,
                attempts_before_reset_backoff: Some(u32::MAX),
            },
            RestartStrategyConfig::ExponentialDelay {
                initial_backoff: Duration::from_secs(10),
                max_backoff: SECOND, // below initial: initial wins
                multiplier: f64::NAN,
                reset_backoff_threshold: Duration::ZERO,
                jitter_factor: f64::NAN,
                attempts_before_reset_backoff: Some(0),
            },
            RestartStrategyConfig::FixedDelay {
                attempts: u32::MAX,
                delay: Duration::MAX,
            },
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval: u32::MAX,
                interval: Duration::MAX,
                delay: Duration::MAX,
            },
        ];
        configs.push(RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 0,
            interval: Duration::ZERO,
            delay: Duration::ZERO,
        });
        for config in &configs {
            let mut b = RestartBackoff::new(config, u64::MAX);
            let mut now = 0u64;
            for i in 0..10_000u64 {
                match b.on_failure(now) {
                    BackoffDecision::Restart { delay_ms, .. } => {
                        now = now.saturating_add(delay_ms).saturating_add(1);
                    }
                    BackoffDecision::GiveUp { reason } => {
                        assert!(!reason.is_empty());
                        now = now.saturating_add(i);
                    }
                }
            }
        }

        // Multiplier 1000 up to a year: the cap is reached and held.
        let config = &configs[0];
        let mut b = RestartBackoff::new(config, 3);
        let year_ms = millis(YEAR);
        let mut now = 0u64;
        for _ in 0..10_000 {
            let BackoffDecision::Restart {
                delay_ms,
                merged: false,
            } = b.on_failure(now)
            else {
                panic!("unlimited attempts must keep restarting")
            };
            assert!((1000..=year_ms).contains(&delay_ms));
            now += delay_ms + 1;
        }
        assert_eq!(b.restarts(), 10_000);
        let without_jitter = exponential(1000, year_ms, 1000.0, year_ms, 0.0, None);
        let mut b = RestartBackoff::new(&without_jitter, 3);
        assert_eq!(
            delays_after_each_restart(&mut b, 6),
            [1000, 1_000_000, 1_000_000_000, year_ms, year_ms, year_ms]
        );

        // Time near the end of u64 saturates instead of overflowing.
        let mut b = RestartBackoff::new(config, 1);
        assert!(matches!(
            b.on_failure(u64::MAX - 5),
            BackoffDecision::Restart { merged: false, .. }
        ));
        assert!(matches!(
            b.on_failure(u64::MAX - 1),
            BackoffDecision::Restart { merged: true, .. }
        ));
        assert!(matches!(
            b.on_failure(u64::MAX),
            BackoffDecision::Restart { .. }
        ));
    }
}
