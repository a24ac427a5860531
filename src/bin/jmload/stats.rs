//! Statistics of latency samples: percentiles (from an `hdrhistogram`, recorded in
//! microseconds), rounding, durations in milliseconds, and the target verdicts.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Clone, Copy)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) min: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

/// Significant figures the histogram keeps: a percentile is exact to the µs below 32.768 ms
/// and at most 0.01% above a sample beyond.
const SIGFIG: u8 = 4;

/// Summarizes samples in ms (or any unit with three meaningful decimals): n, min, max and mean
/// exactly; p50, p90 and p99 are nearest-rank percentiles of an `hdrhistogram` recording the
/// samples in µs (thousandths), shifted so that negative samples fit.
pub(crate) fn summarize(v: Vec<f64>) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = v.iter().sum::<f64>() / n as f64;
    let offset = min.min(0.0);
    let micros = |x: f64| ((x - offset) * 1000.0).round().max(0.0) as u64;
    let mut histogram = Histogram::<u64>::new(SIGFIG).expect("valid significant figures");
    for &x in &v {
        // `record` grows the histogram as needed (`saturating_record` would clamp instead).
        let us = micros(x);
        if histogram.record(us).is_err() {
            histogram.saturating_record(us);
        }
    }
    // The top of the sample's bucket, which may lie a little above the largest sample.
    let pct =
        |p: f64| (histogram.value_at_quantile(p / 100.0) as f64 / 1000.0 + offset).clamp(min, max);
    Some(Summary {
        n,
        min,
        p50: pct(50.0),
        p90: pct(90.0),
        p99: pct(99.0),
        max,
        mean,
    })
}

pub(crate) fn summary_json(s: Option<Summary>) -> Value {
    match s {
        None => Value::Null,
        Some(s) => json!({
            "n": s.n, "min": round3(s.min), "p50": round3(s.p50), "p90": round3(s.p90),
            "p99": round3(s.p99), "max": round3(s.max), "mean": round3(s.mean),
        }),
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Signed difference in ms (b − a).
pub(crate) fn diff_ms(a: Instant, b: Instant) -> f64 {
    if b >= a { ms(b - a) } else { -ms(a - b) }
}

/// A target's verdict: met when `measured` ≤ `limit` ms.
pub(crate) fn verdict(name: &str, measured: f64, limit: f64) -> Value {
    json!({
        "target": format!("{name} ≤ {limit} ms"),
        "measured_ms": round3(measured),
        "verdict": format!(
            "{} ({:.3} ms)",
            if measured <= limit { "MET" } else { "MISSED" },
            measured
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_1_to_100_ms_are_nearest_rank() {
        let s = summarize((1..=100).rev().map(f64::from).collect()).expect("samples");
        assert_eq!(s.n, 100);
        assert_eq!((s.min, s.max, s.mean), (1.0, 100.0, 50.5));
        // 50, 90 and 99 ms are 50,000, 90,000 and 99,000 µs: within 0.01% in the histogram.
        for (got, want) in [(s.p50, 50.0), (s.p90, 90.0), (s.p99, 99.0)] {
            assert!(got >= want && got <= want * 1.0001, "{got} vs {want}");
        }
        // Below 32.768 ms they are exact; the top one is the largest sample.
        let s = summarize((1..=100).map(|x| f64::from(x) / 4.0).collect()).expect("samples");
        assert_eq!((s.p50, s.p90, s.p99, s.max), (12.5, 22.5, 24.75, 25.0));
        let s = summarize(vec![3.0, 1.0, 40.123]).expect("samples");
        assert_eq!((s.p50, s.p99), (3.0, 40.123));
    }

    #[test]
    fn small_samples_are_exact_and_negative_ones_fit() {
        let s = summarize(vec![0.25, 0.001, 1.5, 0.75]).expect("samples");
        assert_eq!((s.p50, s.p90, s.p99), (0.25, 1.5, 1.5));
        let s = summarize(vec![-0.5, 0.25, -0.25, 0.0]).expect("samples");
        assert_eq!((s.min, s.p50, s.p99, s.max), (-0.5, -0.25, 0.25, 0.25));
        let s = summarize(vec![7.0]).expect("one sample");
        assert_eq!(
            (s.min, s.p50, s.p99, s.max, s.mean),
            (7.0, 7.0, 7.0, 7.0, 7.0)
        );
        assert!(summarize(Vec::new()).is_none());
    }
}
