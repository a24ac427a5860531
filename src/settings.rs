//! Daemon settings: `config/default.toml` (compiled in), then an optional file, then
//! `JOBMASTER__SECTION__KEY` environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::core::PlacementPolicy;

/// The defaults, documented key by key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub heartbeat: HeartbeatSettings,
    pub rpc: RpcSettings,
    pub scheduler: SchedulerSettings,
    pub spec: SpecSettings,
    pub jobs: JobsSettings,
    pub store: StoreSettings,
    pub recovery: RecoverySettings,
    pub ha: HaSettings,
    pub events: EventSettings,
    pub executor: ExecutorSettings,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
}

/// `[tls]`: this party's CA, certificate and key (the same keys on the jobmaster, a
/// taskexecutor and jmctl). All empty: plain text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsSettings {
    pub ca: String,
    pub cert: String,
    pub key: String,
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl TlsSettings {
    /// The files, `None` for plain text.
    pub fn files(&self) -> Result<Option<crate::security::tls::TlsFiles>, SettingsError> {
        crate::security::tls::TlsFiles::from_parts(&self.ca, &self.cert, &self.key).map_err(|e| {
            SettingsError::Invalid {
                key: "tls",
                message: e.to_string(),
            }
        })
    }
}

/// `[auth]`: how operators authenticate on the jobmaster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSettings {
    pub token_file: String,
    pub metrics_open: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExecutorSettings {
    pub jobmaster: String,
    pub listen: SocketAddr,
    pub advertise: String,
    pub id: String,
    pub slots: u32,
    pub data_dir: String,
    pub persistent_dir: String,
    #[serde(with = "humantime_serde")]
    pub jobmaster_reconnect_timeout: Duration,
    /// The least time between the executor fencing its attempts and the JobMaster's deadline
    /// for its heartbeats (the effective margin also covers an interval and a quarter of the
    /// timeout).
    #[serde(with = "humantime_serde")]
    pub fence_margin: Duration,
    #[serde(with = "humantime_serde")]
    pub cancel_grace: Duration,
    /// Added to the executor's niceness for task processes (0–19): the executor's own work
    /// comes first.
    pub task_nice: i32,
    pub min_free_disk_bytes: u64,
    /// Failure-domain labels, `key=value` separated by commas (`zone=a,rack=r1`).
    pub labels: String,
    /// Listen on a non-loopback address without TLS (`--insecure`).
    pub insecure: bool,
    /// The user tasks run as, by name or uid (`""`: the executor's own user).
    pub run_as: String,
    /// Attempt folders (logs) kept per task; at least 1.
    pub retain_attempts: u32,
    /// How long an ended job's folders stay (for `jmctl logs`).
    #[serde(with = "humantime_serde")]
    pub retain_ended_jobs: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub max_message_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Listen on a non-loopback address without TLS (`--insecure`).
    pub insecure: bool,
    /// Most slots one executor may register with.
    pub max_executor_slots: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HeartbeatSettings {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub rpc_failure_threshold: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RpcSettings {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SchedulerSettings {
    #[serde(with = "humantime_serde")]
    pub slot_request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub cancel_timeout: Duration,
    pub exception_history_size: usize,
    pub seed: u64,
    pub quarantine: QuarantineSettings,
    pub region_restart_budget: RegionRestartBudgetSettings,
    /// The placement policy of jobs whose spec names none.
    #[serde(deserialize_with = "from_name")]
    pub placement: PlacementPolicy,
    /// The executor label key a region is kept inside (`""`: none).
    pub placement_domain: String,
}

impl SchedulerSettings {
    /// `scheduler.placement-domain`, `None` when empty.
    pub fn placement_domain(&self) -> Option<String> {
        (!self.placement_domain.is_empty()).then(|| self.placement_domain.clone())
    }
}

/// `[scheduler.quarantine]`: flapping executors take no new placements for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QuarantineSettings {
    pub max_task_failures: u32,
    pub max_losses: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// `[scheduler.region-restart-budget]`: a region restarting too often fails its job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegionRestartBudgetSettings {
    pub max_restarts: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SpecSettings {
    pub max_parallelism: u32,
}

/// `[jobs]`: how many jobs the JobMaster holds, and how long it keeps ended ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobsSettings {
    /// Jobs held at once (ended ones still retained included).
    pub max_jobs: usize,
    /// Tasks of all held jobs together (ended ones still retained included).
    pub max_total_tasks: u64,
    pub retain_ended: RetainEndedSettings,
}

/// `[jobs.retain-ended]`: ended jobs (FINISHED, FAILED, CANCELED) stay readable for a while,
/// then are dropped with their graphs; the oldest go first when room is needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetainEndedSettings {
    /// Ended jobs kept at most.
    pub count: usize,
    /// How long an ended job is kept at most.
    #[serde(with = "humantime_serde")]
    pub age: Duration,
}

/// `[store]`: where the JobMaster keeps what must survive its restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreSettings {
    /// `embedded` (one redb file under `dir`) or `memory` (nothing survives a restart).
    pub backend: StoreBackend,
    /// The state dir (`--state-dir`).
    pub dir: std::path::PathBuf,
    /// Each commit is on disk before its commands leave (off: the system writes it back
    /// later; a machine crash may lose the last commits).
    pub fsync: bool,
    pub retain_ended_jobs: RetainEndedSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    Embedded,
    Memory,
}

/// `[recovery]`: how a restarted JobMaster reconciles with its executors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecoverySettings {
    /// How long it waits for executors to re-register with what they run.
    #[serde(with = "humantime_serde")]
    pub reconcile_timeout: Duration,
}

/// `[ha]`: one JobMaster, or several electing a leader in etcd (README, "High availability").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HaSettings {
    pub mode: HaMode,
    /// Client URLs of the etcd members, comma-separated.
    pub etcd_endpoints: String,
    /// The leader's lease: a leader that cannot renew it within this steps down, and a
    /// standby leads at most this long after the leader died.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Key prefix of this cluster's election and state in etcd.
    pub namespace: String,
    /// The gRPC endpoint this JobMaster proclaims when it leads ("": `http://` + the listen
    /// address, which must then not be a wildcard address).
    pub advertise: String,
}

impl HaSettings {
    /// `etcd-endpoints` as a list.
    pub fn endpoints(&self) -> Vec<String> {
        self.etcd_endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaMode {
    /// One JobMaster on its embedded store.
    None,
    /// Several JobMasters; the leader is elected in etcd, and the state is kept there.
    Etcd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventSettings {
    pub buffer: usize,
}

/// Settings that cannot work, with the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Settings {
    /// Loads the defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Settings, SettingsError> {
        Settings::load_from(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path.to_path_buf())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        // Environment overrides: JOBMASTER__HEARTBEAT__TIMEOUT=10s -> heartbeat.timeout.
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("JOBMASTER__") else {
                continue;
            };
            let path = rest
                .to_ascii_lowercase()
                .replace("__", ".")
                .replace('_', "-");
            builder = builder.set_override(path, value)?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// `self` once checked again (after flags changed it).
    pub fn validated(self) -> Result<Settings, SettingsError> {
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key, message: &str| {
            Err(SettingsError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if self.tls.reload_interval.is_zero() {
            return bad("tls.reload-interval", "must be greater than 0");
        }
        self.tls.files()?;
        if self.heartbeat.interval.is_zero() {
            return bad("heartbeat.interval", "must be greater than 0");
        }
        if self.heartbeat.timeout < self.heartbeat.interval * 3 {
            return bad(
                "heartbeat.timeout",
                "must be at least 3 heartbeat.interval: executors fence their tasks a margin \
                 (at least one interval) before it, and must still ride out a late heartbeat",
            );
        }
        if self.recovery.reconcile_timeout < self.heartbeat.timeout {
            return bad(
                "recovery.reconcile-timeout",
                "must be at least heartbeat.timeout: an executor cut off from a restarted \
                 jobmaster kills its tasks up to a heartbeat timeout after that jobmaster \
                 started, and they must be dead before it restarts them elsewhere",
            );
        }
        if self.ha.mode == HaMode::Etcd {
            if self.ha.endpoints().is_empty() {
                return bad(
                    "ha.etcd-endpoints",
                    "list the client URLs of the etcd members (--etcd-endpoints URL,URL...)",
                );
            }
            if self.ha.lease_ttl < Duration::from_secs(2) || self.ha.lease_ttl.subsec_nanos() != 0 {
                return bad(
                    "ha.lease-ttl",
                    "must be whole seconds, at least 2s (etcd grants leases in seconds, and \
                     refuses shorter ones than its election timeout allows)",
                );
            }
            if self.ha.namespace.trim_matches('/').is_empty() {
                return bad(
                    "ha.namespace",
                    "must name this cluster's key prefix, e.g. \"/jobmaster/prod\"",
                );
            }
        }
        if self.rpc.timeout.is_zero() || self.rpc.connect_timeout.is_zero() {
            return bad(
                "rpc.timeout",
                "rpc.timeout and rpc.connect-timeout must be greater than 0",
            );
        }
        if self.server.max_message_bytes < 1024 {
            return bad("server.max-message-bytes", "must be at least 1024");
        }
        if self.server.max_executor_slots == 0 {
            return bad("server.max-executor-slots", "must be at least 1");
        }
        if self.events.buffer == 0 {
            return bad("events.buffer", "must be at least 1");
        }
        if self.executor.slots == 0 {
            return bad("executor.slots", "must be at least 1");
        }
        if !(0..=19).contains(&self.executor.task_nice) {
            return bad(
                "executor.task-nice",
                "must be from 0 (tasks at the executor's priority) to 19 (the lowest)",
            );
        }
        if self.executor.retain_attempts == 0 {
            return bad(
                "executor.retain-attempts",
                "must be at least 1 (the running attempt's folder holds its logs)",
            );
        }
        let q = &self.scheduler.quarantine;
        if (q.max_task_failures > 0 || q.max_losses > 0) && q.window.is_zero() {
            return bad(
                "scheduler.quarantine.window",
                "must be greater than 0 (to disable quarantine, set max-task-failures and \
                 max-losses to 0)",
            );
        }
        if (q.max_task_failures > 0 || q.max_losses > 0) && q.duration.is_zero() {
            return bad(
                "scheduler.quarantine.duration",
                "must be greater than 0 (to disable quarantine, set max-task-failures and \
                 max-losses to 0)",
            );
        }
        let b = &self.scheduler.region_restart_budget;
        if b.max_restarts > 0 && b.window.is_zero() {
            return bad(
                "scheduler.region-restart-budget.window",
                "must be greater than 0 (to disable the budget, set max-restarts to 0)",
            );
        }
        if let Err(message) =
            crate::core::spec::validate_label_key(&self.scheduler.placement_domain)
        {
            return Err(SettingsError::Invalid {
                key: "scheduler.placement-domain",
                message,
            });
        }
        if self.spec.max_parallelism == 0 {
            return bad("spec.max-parallelism", "must be at least 1");
        }
        if self.jobs.max_jobs == 0 {
            return bad("jobs.max-jobs", "must be at least 1");
        }
        if self.jobs.max_total_tasks == 0 {
            return bad("jobs.max-total-tasks", "must be at least 1");
        }
        Ok(())
    }
}

/// Serde glue for the core's named enums (`placement = "pack-regions"`).
fn from_name<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = crate::core::UnknownName>,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// Serde glue for human-readable durations ("4s").
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        crate::core::duration::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_environment_overrides_them() {
        let s = Settings::load_from(None, []).unwrap();
        assert_eq!(s.heartbeat.interval, Duration::from_secs(1));
        assert_eq!(s.server.listen.port(), 6123);
        assert_eq!(s.server.max_executor_slots, 1024);
        let s = Settings::load_from(
            None,
            [
                ("JOBMASTER__HEARTBEAT__TIMEOUT".to_owned(), "10s".to_owned()),
                (
                    "JOBMASTER__HEARTBEAT__RPC_FAILURE_THRESHOLD".to_owned(),
                    "5".to_owned(),
                ),
                ("OTHER".to_owned(), "x".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(s.heartbeat.timeout, Duration::from_secs(10));
        assert_eq!(s.heartbeat.rpc_failure_threshold, 5);
    }

    #[test]
    fn tasks_run_as_the_executors_user_unless_run_as_names_another() {
        let s = Settings::load_from(None, []).unwrap();
        assert_eq!(s.executor.run_as, "");
        let s = Settings::load_from(
            None,
            [(
                "JOBMASTER__EXECUTOR__RUN_AS".to_owned(),
                "nobody".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(s.executor.run_as, "nobody");
    }

    #[test]
    fn three_attempt_folders_are_kept_per_task_unless_configured_and_never_zero() {
        let s = Settings::load_from(None, []).unwrap();
        assert_eq!(s.executor.retain_attempts, 3);
        let env = |v: &str| {
            [(
                "JOBMASTER__EXECUTOR__RETAIN_ATTEMPTS".to_owned(),
                v.to_owned(),
            )]
        };
        let s = Settings::load_from(None, env("10")).unwrap();
        assert_eq!(s.executor.retain_attempts, 10);
        let e = Settings::load_from(None, env("0")).unwrap_err();
        assert!(e.to_string().contains("executor.retain-attempts"), "{e}");
    }

    #[test]
    fn tasks_are_niced_by_ten_unless_configured_within_zero_to_nineteen() {
        let s = Settings::load_from(None, []).unwrap();
        assert_eq!(s.executor.task_nice, 10);
        let env = |v: &str| [("JOBMASTER__EXECUTOR__TASK_NICE".to_owned(), v.to_owned())];
        for ok in [0, 19] {
            let s = Settings::load_from(None, env(&ok.to_string())).unwrap();
            assert_eq!(s.executor.task_nice, ok);
        }
        for bad in ["-1", "20"] {
            let e = Settings::load_from(None, env(bad)).unwrap_err();
            assert!(e.to_string().contains("executor.task-nice"), "{bad}: {e}");
        }
    }

    #[test]
    fn quarantine_and_region_budget_defaults_and_overrides() {
        let s = Settings::load_from(None, []).unwrap();
        let q = &s.scheduler.quarantine;
        assert_eq!((q.max_task_failures, q.max_losses), (2, 2));
        assert_eq!(q.window, Duration::from_secs(3600));
        assert_eq!(q.duration, Duration::from_secs(3600));
        assert_eq!(s.scheduler.region_restart_budget.max_restarts, 30);
        assert_eq!(
            s.scheduler.region_restart_budget.window,
            Duration::from_secs(3600)
        );
        let s = Settings::load_from(
            None,
            [(
                "JOBMASTER__SCHEDULER__QUARANTINE__MAX_TASK_FAILURES".to_owned(),
                "5".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(s.scheduler.quarantine.max_task_failures, 5);
        let e = Settings::load_from(
            None,
            [(
                "JOBMASTER__SCHEDULER__QUARANTINE__DURATION".to_owned(),
                "0s".to_owned(),
            )],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("scheduler.quarantine.duration"),
            "{e}"
        );
    }

    #[test]
    fn executors_keep_tasks_two_minutes_for_a_gone_jobmaster_and_fence_half_a_second_early_at_least()
     {
        let s = Settings::load_from(None, []).unwrap();
        assert_eq!(
            s.executor.jobmaster_reconnect_timeout,
            Duration::from_secs(120)
        );
        assert_eq!(s.executor.fence_margin, Duration::from_millis(500));
        let s = Settings::load_from(
            None,
            [(
                "JOBMASTER__EXECUTOR__FENCE_MARGIN".to_owned(),
                "2s".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(s.executor.fence_margin, Duration::from_secs(2));
    }

    #[test]
    fn the_heartbeat_timeout_spans_at_least_three_intervals() {
        let env = |timeout: &str| {
            [
                ("JOBMASTER__HEARTBEAT__INTERVAL".to_owned(), "1s".to_owned()),
                (
                    "JOBMASTER__HEARTBEAT__TIMEOUT".to_owned(),
                    timeout.to_owned(),
                ),
            ]
        };
        assert!(Settings::load_from(None, env("3s")).is_ok());
        let e = Settings::load_from(None, env("2999ms")).unwrap_err();
        assert!(e.to_string().contains("heartbeat.timeout"), "{e}");
        assert!(e.to_string().contains("3 heartbeat.interval"), "{e}");
    }

    #[test]
    fn a_restarted_jobmaster_waits_at_least_a_heartbeat_timeout_before_it_restarts_unreported_tasks()
     {
        let env = |reconcile: &str| {
            [
                ("JOBMASTER__HEARTBEAT__TIMEOUT".to_owned(), "4s".to_owned()),
                (
                    "JOBMASTER__RECOVERY__RECONCILE_TIMEOUT".to_owned(),
                    reconcile.to_owned(),
                ),
            ]
        };
        assert!(Settings::load_from(None, env("4s")).is_ok());
        let e = Settings::load_from(None, env("3s")).unwrap_err();
        assert!(e.to_string().contains("recovery.reconcile-timeout"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Settings::load_from(
            None,
            [(
                "JOBMASTER__HEARTBEAT__TIMEOUT".to_owned(),
                "500ms".to_owned(),
            )],
        )
        .unwrap_err();
        assert!(e.to_string().contains("heartbeat.timeout"), "{e}");
        let e = Settings::load_from(
            None,
            [("JOBMASTER__RPC__TIMEOUT".to_owned(), "soon".to_owned())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
        let e = Settings::load_from(
            None,
            [(
                "JOBMASTER__SERVER__MAX_EXECUTOR_SLOTS".to_owned(),
                "0".to_owned(),
            )],
        )
        .unwrap_err();
        assert!(e.to_string().contains("server.max-executor-slots"), "{e}");
    }

    #[test]
    fn placement_defaults_to_pack_regions_without_a_domain_and_can_be_overridden() {
        let s = Settings::load_from(None, []).unwrap();
        assert_eq!(s.scheduler.placement, PlacementPolicy::PackRegions);
        assert_eq!(s.scheduler.placement_domain(), None);
        let s = Settings::load_from(
            None,
            [
                (
                    "JOBMASTER__SCHEDULER__PLACEMENT".to_owned(),
                    "spread".to_owned(),
                ),
                (
                    "JOBMASTER__SCHEDULER__PLACEMENT_DOMAIN".to_owned(),
                    "zone".to_owned(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(s.scheduler.placement, PlacementPolicy::Spread);
        assert_eq!(s.scheduler.placement_domain().as_deref(), Some("zone"));
        let e = Settings::load_from(
            None,
            [(
                "JOBMASTER__SCHEDULER__PLACEMENT".to_owned(),
                "pack".to_owned(),
            )],
        )
        .unwrap_err();
        assert!(e.to_string().contains("pack-regions, spread"), "{e}");
        let e = Settings::load_from(
            None,
            [(
                "JOBMASTER__SCHEDULER__PLACEMENT_DOMAIN".to_owned(),
                "my zone".to_owned(),
            )],
        )
        .unwrap_err();
        assert!(e.to_string().contains("scheduler.placement-domain"), "{e}");
    }
}
