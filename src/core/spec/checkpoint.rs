//! The spec's optional `[checkpoint]` table (a `checkpoint` object in JSON): when and how often
//! the job's checkpoint coordinator ([`crate::core::checkpoint`]) snapshots the job. Absent:
//! checkpointing is off, as in Flink.

use std::time::Duration;

use serde::Deserialize;

use super::{SpecError, count_field, duration_field, invalid, missing};

/// How a job is checkpointed, with Flink's meanings and defaults
/// (`execution.checkpointing.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// `interval`: time between two triggers (required, > 0).
    pub interval: Duration,
    /// `timeout`: a checkpoint not complete this long after its trigger is aborted (> 0;
    /// default 10 min).
    pub timeout: Duration,
    /// `min-pause`: least time between the completion of one checkpoint and the next trigger
    /// (default 0).
    pub min_pause: Duration,
    /// `max-concurrent`: most checkpoints in progress at once (≥ 1; default 1).
    pub max_concurrent: u32,
    /// `tolerable-failures`: consecutive checkpoint failures tolerated before the job is failed
    /// (default 0: the first failure fails the job, as in Flink).
    pub tolerable_failures: u32,
    /// `retained`: completed checkpoints kept; older ones are discarded (≥ 1; default 1).
    pub retained: u32,
    /// `dir`: where checkpoints are written; `""` (default): a `checkpoints` folder beside the
    /// executors' persistent partitions, resolved by the shell.
    pub dir: String,
}

impl CheckpointConfig {
    /// Default `timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

    /// Checkpoints every `interval`, every other key at its default.
    pub fn every(interval: Duration) -> Self {
        CheckpointConfig {
            interval,
            timeout: Self::DEFAULT_TIMEOUT,
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failures: 0,
            retained: 1,
            dir: String::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCheckpoint {
    interval: Option<String>,
    timeout: Option<String>,
    min_pause: Option<String>,
    max_concurrent: Option<i64>,
    tolerable_failures: Option<i64>,
    retained: Option<i64>,
    dir: Option<String>,
}

fn positive(field: &str, d: Duration) -> Result<Duration, SpecError> {
    if d.is_zero() {
        return Err(invalid(field, "must be greater than 0"));
    }
    Ok(d)
}

impl RawCheckpoint {
    pub(super) fn validate(self) -> Result<CheckpointConfig, SpecError> {
        let interval = self
            .interval
            .ok_or_else(|| missing("checkpoint.interval (e.g. \"10s\")"))?;
        let interval = positive(
            "checkpoint.interval",
            duration_field("checkpoint.interval", Some(&interval), Duration::ZERO)?,
        )?;
        let timeout = positive(
            "checkpoint.timeout",
            duration_field(
                "checkpoint.timeout",
                self.timeout.as_deref(),
                CheckpointConfig::DEFAULT_TIMEOUT,
            )?,
        )?;
        let min_pause = duration_field(
            "checkpoint.min-pause",
            self.min_pause.as_deref(),
            Duration::ZERO,
        )?;
        let dir = self.dir.unwrap_or_default();
        // A path is handed to open(2) as a C string: one with a NUL byte can never be used.
        if dir.contains('\0') {
            return Err(invalid(
                "checkpoint.dir",
                "contains a NUL byte, which no path can hold",
            ));
        }
        // Executors resolve it each in their own working directory: only an absolute path
        // names the same storage on every one.
        if !dir.is_empty() && !dir.starts_with('/') {
            return Err(invalid(
                "checkpoint.dir",
                format!(
                    "{dir:?} is not an absolute path; give the shared storage's absolute path, \
                     or leave it out for the executors' default"
                ),
            ));
        }
        Ok(CheckpointConfig {
            interval,
            timeout,
            min_pause,
            max_concurrent: count_field("checkpoint.max-concurrent", self.max_concurrent, 1, 1)?,
            tolerable_failures: count_field(
                "checkpoint.tolerable-failures",
                self.tolerable_failures,
                0,
                0,
            )?,
            retained: count_field("checkpoint.retained", self.retained, 1, 1)?,
            dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::spec::{JobSpec, SpecFormat};

    const VERTICES: &str = "[[vertices]]\nid = \"a\"\nparallelism = 1\ncommand = [\"true\"]\n";

    fn toml(table: &str) -> Result<JobSpec, SpecError> {
        JobSpec::from_toml(&format!("name = \"j\"\n{VERTICES}[checkpoint]\n{table}"))
    }

    fn error(table: &str) -> String {
        toml(table).expect_err(table).to_string()
    }

    #[test]
    fn no_checkpoint_table_means_checkpointing_off() {
        let spec = JobSpec::from_toml(&format!("name = \"j\"\n{VERTICES}")).unwrap();
        assert_eq!(spec.checkpoint, None);
    }

    #[test]
    fn only_the_interval_is_required_and_the_rest_take_flinks_defaults() {
        let spec = toml("interval = \"10s\"\n").unwrap();
        assert_eq!(
            spec.checkpoint,
            Some(CheckpointConfig::every(Duration::from_secs(10)))
        );
        let c = spec.checkpoint.unwrap();
        assert_eq!(c.timeout, Duration::from_secs(600));
        assert_eq!(
            (c.max_concurrent, c.tolerable_failures, c.retained),
            (1, 0, 1)
        );
        assert_eq!((c.min_pause, c.dir.as_str()), (Duration::ZERO, ""));
    }

    #[test]
    fn a_full_checkpoint_table_parses_from_toml_and_json_alike() {
        let expected = CheckpointConfig {
            interval: Duration::from_millis(1500),
            timeout: Duration::from_secs(120),
            min_pause: Duration::from_millis(250),
            max_concurrent: 3,
            tolerable_failures: 2,
            retained: 5,
            dir: "/var/lib/ckpt".into(),
        };
        let spec = toml(
            "interval = \"1s 500ms\"\ntimeout = \"2min\"\nmin-pause = \"250ms\"\n\
             max-concurrent = 3\ntolerable-failures = 2\nretained = 5\ndir = \"/var/lib/ckpt\"\n",
        )
        .unwrap();
        assert_eq!(spec.checkpoint.as_ref(), Some(&expected));
        let json = r#"{"name": "j", "vertices": [{"id": "a", "parallelism": 1, "command": ["true"]}],
            "checkpoint": {"interval": "1500ms", "timeout": "120s", "min-pause": "250ms",
            "max-concurrent": 3, "tolerable-failures": 2, "retained": 5, "dir": "/var/lib/ckpt"}}"#;
        let spec = JobSpec::parse(json, SpecFormat::Json).unwrap();
        assert_eq!(spec.checkpoint, Some(expected));
    }

    #[test]
    fn invalid_checkpoint_values_are_refused_naming_the_field() {
        let cases = [
            ("", "checkpoint.interval (e.g. \"10s\") is missing"),
            (
                "interval = \"0s\"\n",
                "checkpoint.interval: must be greater than 0",
            ),
            (
                "interval = \"1s\"\ntimeout = \"0ms\"\n",
                "checkpoint.timeout: must be greater than 0",
            ),
            (
                "interval = \"1s\"\nmax-concurrent = 0\n",
                "checkpoint.max-concurrent: 0 is out of range; it must be between 1 and 4294967295",
            ),
            (
                "interval = \"1s\"\nretained = 0\n",
                "checkpoint.retained: 0 is out of range; it must be between 1 and 4294967295",
            ),
            (
                "interval = \"1s\"\ntolerable-failures = -1\n",
                "checkpoint.tolerable-failures: -1 is out of range; it must be between 0 and 4294967295",
            ),
            (
                "interval = \"1s\"\ndir = \"a\\u0000b\"\n",
                "checkpoint.dir: contains a NUL byte, which no path can hold",
            ),
            (
                "interval = \"1s\"\ndir = \"ckpt\"\n",
                "checkpoint.dir: \"ckpt\" is not an absolute path; give the shared storage's \
                 absolute path, or leave it out for the executors' default",
            ),
        ];
        for (table, message) in cases {
            assert_eq!(error(table), message, "{table}");
        }
        for (table, field) in [
            (
                "interval = \"soon\"\n",
                "checkpoint.interval: \"soon\" is not a duration",
            ),
            (
                "interval = \"1s\"\nmin-pause = \"400days\"\n",
                "checkpoint.min-pause: \"400days\" is longer",
            ),
            ("interval = 10\n", "checkpoint.interval"),
        ] {
            let e = error(table);
            assert!(e.contains(field), "{table}: {e}");
        }
    }

    #[test]
    fn unknown_checkpoint_keys_are_refused() {
        let e = error("interval = \"1s\"\nintervall = \"2s\"\n");
        assert!(
            e.contains("checkpoint") && e.contains("unknown field `intervall`"),
            "{e}"
        );
        let json = r#"{"name": "j", "vertices": [{"id": "a", "parallelism": 1, "command": ["true"]}],
            "checkpoint": {"interval": "1s", "max_concurrent": 2}}"#;
        let e = JobSpec::parse(json, SpecFormat::Json)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("checkpoint") && e.contains("unknown field `max_concurrent`"),
            "{e}"
        );
    }
}
