//! A validated [`JobSpec`] written back as a JSON spec that [`JobSpec::from_json`] reads into
//! the same spec: what the store keeps of every accepted job.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::spec::{JobSpec, RestartStrategyConfig};

fn duration(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}

impl JobSpec {
    /// The spec as JSON (the spec format's own keys, durations as "1s 500ms").
    pub fn to_json(&self) -> String {
        let mut spec = Map::new();
        spec.insert("name".into(), json!(self.name));
        spec.insert("failover".into(), json!(self.failover.name()));
        if let Some(p) = self.placement {
            spec.insert("placement".into(), json!(p.name()));
        }
        if let Some(d) = &self.placement_domain {
            spec.insert("placement-domain".into(), json!(d));
        }
        let mut restart = Map::new();
        restart.insert("strategy".into(), json!(self.restart.name()));
        match &self.restart {
            RestartStrategyConfig::None => {}
            RestartStrategyConfig::FixedDelay { attempts, delay } => {
                restart.insert("attempts".into(), json!(attempts));
                restart.insert("delay".into(), duration(*delay));
            }
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval,
                interval,
                delay,
            } => {
                restart.insert(
                    "max-failures-per-interval".into(),
                    json!(max_failures_per_interval),
                );
                restart.insert("failure-rate-interval".into(), duration(*interval));
                restart.insert("delay".into(), duration(*delay));
            }
            RestartStrategyConfig::ExponentialDelay {
                initial_backoff,
                max_backoff,
                multiplier,
                reset_backoff_threshold,
                jitter_factor,
                attempts_before_reset_backoff,
            } => {
                restart.insert("initial-backoff".into(), duration(*initial_backoff));
                restart.insert("max-backoff".into(), duration(*max_backoff));
                restart.insert("backoff-multiplier".into(), json!(multiplier));
                restart.insert(
                    "reset-backoff-threshold".into(),
                    duration(*reset_backoff_threshold),
                );
                restart.insert("jitter-factor".into(), json!(jitter_factor));
                if let Some(n) = attempts_before_reset_backoff {
                    restart.insert("attempts-before-reset-backoff".into(), json!(n));
                }
            }
        }
        spec.insert("restart".into(), Value::Object(restart));
        if let Some(c) = &self.checkpoint {
            spec.insert(
                "checkpoint".into(),
                json!({
                    "interval": duration(c.interval),
                    "timeout": duration(c.timeout),
                    "min-pause": duration(c.min_pause),
                    "max-concurrent": c.max_concurrent,
                    "tolerable-failures": c.tolerable_failures,
                    "retained": c.retained,
                    "dir": c.dir,
                }),
            );
        }
        let vertices: Vec<Value> = self
            .vertices
            .iter()
            .map(|v| json!({"id": v.id, "parallelism": v.parallelism, "command": v.command}))
            .collect();
        spec.insert("vertices".into(), Value::Array(vertices));
        let edges: Vec<Value> = self
            .edges
            .iter()
            .map(|e| {
                json!({"from": e.from, "to": e.to, "pattern": e.pattern.name(),
                       "exchange": e.exchange.name()})
            })
            .collect();
        spec.insert("edges".into(), Value::Array(edges));
        Value::Object(spec).to_string()
    }
}

#[cfg(test)]
mod tests {
    use crate::core::spec::{JobSpec, SpecFormat, SpecLimits};

    fn roundtrip(toml: &str) {
        let spec = JobSpec::from_toml(toml).expect("valid");
        let json = spec.to_json();
        let back = JobSpec::parse_with_limits(&json, SpecFormat::Json, SpecLimits::default())
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(back, spec, "{json}");
    }

    #[test]
    fn every_spec_field_survives_json_and_back() {
        let body = r#"
[[vertices]]
id = "src"
parallelism = 3
command = ["sh", "-c", "echo \"hi\" ünïcode"]
[[vertices]]
id = "sink"
parallelism = 2
command = ["cat"]
[[edges]]
from = "src"
to = "sink"
pattern = "all-to-all"
exchange = "blocking"
"#;
        for head in [
            "name = \"a\"\nfailover = \"individual\"\nplacement = \"spread\"\nplacement-domain = \"zone\"\n[restart]\nstrategy = \"none\"\n",
            "name = \"b\"\nplacement-domain = \"\"\n[restart]\nstrategy = \"fixed-delay\"\nattempts = 7\ndelay = \"1s 250ms\"\n",
            "name = \"c\"\n[restart]\nstrategy = \"failure-rate\"\nmax-failures-per-interval = 3\nfailure-rate-interval = \"90s\"\ndelay = \"10ms\"\n",
            "name = \"d\"\n[restart]\nstrategy = \"exponential-delay\"\ninitial-backoff = \"3ms\"\nmax-backoff = \"2min\"\nbackoff-multiplier = 1.7\nreset-backoff-threshold = \"2h\"\njitter-factor = 0.33\nattempts-before-reset-backoff = 4\n",
            "name = \"e\"\n",
            "name = \"f\"\n[checkpoint]\ninterval = \"10s\"\n",
            "name = \"g\"\n[checkpoint]\ninterval = \"1m 500ms\"\ntimeout = \"3s\"\nmin-pause = \"1ms\"\nmax-concurrent = 4\ntolerable-failures = 9\nretained = 3\ndir = \"/data/ckpt ü\"\n",
        ] {
            roundtrip(&format!("{head}{body}"));
        }
    }
}
