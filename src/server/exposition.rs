//! The `/metrics` page: the core's counters, the shell's histograms and the executors' gauges,
//! encoded by `prometheus-client` in the Prometheus text format (0.0.4). A fresh registry is
//! filled from the coordinator's state at each scrape, so nothing here is stored twice.

use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::coordinator::Coordinator;
use super::metrics::JobMetrics;
use crate::core::{AttemptState, Counters, JobId, JobState};

/// The `Content-Type` of the page.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobLabels {
    job: String,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobStateLabels {
    job: String,
    name: String,
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExecutorLabels {
    executor: String,
}

type F64Counter = Counter<f64, AtomicU64>;
/// A per-job counter: name, help, and how to read it from the core's counters.
type CounterDef = (&'static str, &'static str, fn(&Counters) -> u64);
/// A per-job histogram: name, help, and where it lives in the shell's metrics.
type HistogramDef = (&'static str, &'static str, fn(&JobMetrics) -> &Histogram);
type F64Gauge = Gauge<f64, AtomicU64>;

/// The shell's histograms of one kind, one per job; they live in [`JobMetrics`] and are
/// encoded as they are (a `Family` could only create new ones).
#[derive(Debug)]
struct JobHistograms {
    name: &'static str,
    help: &'static str,
    per_job: Vec<(JobLabels, Histogram)>,
}

impl Collector for JobHistograms {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Histogram)?;
        for (labels, histogram) in &self.per_job {
            histogram.encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// Registers `metric` under `name` (counters get `_total` appended by the encoder).
fn add<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

/// Uptime (time since the job last became RUNNING, while it runs) and downtime (time since
/// it stopped running, while restarting or failing), as Flink defines them, in ms.
pub(crate) fn up_and_down(c: &Coordinator, job: JobId, now: u64) -> (u64, u64) {
    let Some(&(state, since)) = c.core.job_transitions(job).and_then(|log| log.last()) else {
        return (0, 0);
    };
    match state {
        JobState::Running => (now.saturating_sub(since), 0),
        JobState::Restarting | JobState::Failing => (0, now.saturating_sub(since)),
        _ => (0, 0),
    }
}

/// The checkpoint counters and gauges of the jobs that checkpoint.
fn checkpoint_metrics(c: &Coordinator, r: &mut Registry, jobs: &[(JobId, JobLabels)], now: u64) {
    let completed = add(
        r,
        "jobmaster_checkpoints_completed",
        "Checkpoints completed (acknowledged by every participant and made durable) by this process",
        Family::<JobLabels, Counter>::default(),
    );
    let failed = add(
        r,
        "jobmaster_checkpoints_failed",
        "Checkpoints that failed (timed out, declined, not written) in this process; aborts by a failover or a newer checkpoint excluded",
        Family::<JobLabels, Counter>::default(),
    );
    let last_id = add(
        r,
        "jobmaster_last_checkpoint_id",
        "Id of the job's latest completed checkpoint (0: none)",
        Family::<JobLabels, Gauge>::default(),
    );
    let last_age = add(
        r,
        "jobmaster_last_checkpoint_age_seconds",
        "Time since the job's latest completed checkpoint was triggered: the work a restarted region replays at most",
        Family::<JobLabels, F64Gauge>::default(),
    );
    let last_size = add(
        r,
        "jobmaster_last_checkpoint_size_bytes",
        "Bytes the tasks wrote for the job's latest completed checkpoint",
        Family::<JobLabels, Gauge>::default(),
    );
    let retained = add(
        r,
        "jobmaster_checkpoint_retained_bytes",
        "Bytes the job's retained checkpoints take in checkpoint storage",
        Family::<JobLabels, Gauge>::default(),
    );
    for (j, l) in jobs {
        let Some(k) = c.core.checkpoints(*j) else {
            continue;
        };
        let stats = k.stats();
        completed.get_or_create(l).inc_by(stats.completed);
        failed.get_or_create(l).inc_by(stats.failed);
        let latest = k.latest_completed();
        let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        last_id
            .get_or_create(l)
            .set(latest.map_or(0, |c| bytes(c.id.0)));
        if let Some(latest) = latest {
            last_age
                .get_or_create(l)
                .set(now.saturating_sub(latest.trigger_time) as f64 / 1000.0);
            last_size.get_or_create(l).set(bytes(latest.size_bytes));
        }
        let sum: u64 = k.retained_checkpoints().map(|c| c.size_bytes).sum();
        retained.get_or_create(l).set(bytes(sum));
    }
}

/// The whole `/metrics` page.
pub(crate) fn render_metrics(c: &Coordinator) -> String {
    let now = c.shared.now();
    let jobs: Vec<(JobId, JobLabels)> = c
        .core
        .job_ids()
        .map(|j| {
            let name = c
                .core
                .graph(j)
                .map(|g| g.name().to_owned())
                .unwrap_or_default();
            (
                j,
                JobLabels {
                    job: j.to_string(),
                    name,
                },
            )
        })
        .collect();
    let mut registry = Registry::default();
    let r = &mut registry;

    let counters: [CounterDef; 7] = [
        (
            "jobmaster_restarts",
            "Restarts counted by the job's restart strategy (failures merged into a pending restart excluded)",
            |k| k.restarts,
        ),
        (
            "jobmaster_failovers",
            "Failover decisions, merged ones included",
            |k| k.failovers,
        ),
        (
            "jobmaster_full_restarts",
            "Failovers that restarted every task of the job",
            |k| k.full_restarts,
        ),
        (
            "jobmaster_region_restarts",
            "Failovers that restarted only some regions (fine-grained)",
            |k| k.failovers - k.full_restarts,
        ),
        (
            "jobmaster_tasks_restarted",
            "Tasks restarted, summed over failovers",
            |k| k.tasks_restarted,
        ),
        (
            "jobmaster_adopted_attempts",
            "Attempts a restarted JobMaster adopted from executors instead of restarting them",
            |k| k.adopted,
        ),
        (
            "jobmaster_job_recoveries",
            "Times the job was loaded from the store by a restarted JobMaster and reconciled",
            |k| k.recoveries,
        ),
    ];
    for (name, help, value) in counters {
        let family = add(r, name, help, Family::<JobLabels, Counter>::default());
        for (j, l) in &jobs {
            let k = c.core.counters(*j).cloned().unwrap_or_default();
            family.get_or_create(l).inc_by(value(&k));
        }
    }
    let restarting = add(
        r,
        "jobmaster_restarting_seconds",
        "Time the job spent RESTARTING",
        Family::<JobLabels, F64Counter>::default(),
    );
    for (j, l) in &jobs {
        let seconds = c.core.restarting_ms(*j, now).unwrap_or(0) as f64 / 1000.0;
        restarting.get_or_create(l).inc_by(seconds);
    }

    let histograms: [HistogramDef; 4] = [
        (
            "jobmaster_tasks_restarted",
            "Tasks restarted per failover.",
            |m| &m.tasks_restarted,
        ),
        (
            "jobmaster_failure_detection_seconds",
            "Time from the fault's first evidence (last heartbeat, closed stream, failed RPC, failure report) to the failover decision.",
            |m| &m.detection,
        ),
        (
            "jobmaster_recovery_seconds",
            "Time from a failover decision until every restarted task runs (or finished) again.",
            |m| &m.recovery,
        ),
        (
            "jobmaster_checkpoint_duration_seconds",
            "Time from a checkpoint's trigger to its last acknowledgement, for completed checkpoints.",
            |m| &m.checkpoint_duration,
        ),
    ];
    for (name, help, histogram) in histograms {
        let per_job = jobs
            .iter()
            .filter_map(|(j, l)| {
                let m = c.metrics.jobs.get(j)?;
                Some((l.clone(), histogram(m).clone()))
            })
            .collect();
        r.register_collector(Box::new(JobHistograms {
            name,
            help,
            per_job,
        }));
    }

    let uptime = add(
        r,
        "jobmaster_uptime_seconds",
        "Time since the job last became RUNNING, while it is RUNNING; 0 otherwise",
        Family::<JobLabels, F64Gauge>::default(),
    );
    let downtime = add(
        r,
        "jobmaster_downtime_seconds",
        "Time since the job stopped running, while it is RESTARTING or FAILING; 0 otherwise",
        Family::<JobLabels, F64Gauge>::default(),
    );
    let job_state = add(
        r,
        "jobmaster_job_state",
        "1 for the job's current state",
        Family::<JobStateLabels, Gauge>::default(),
    );
    let tasks = add(
        r,
        "jobmaster_tasks",
        "Tasks by the state of their current attempt",
        Family::<JobStateLabels, Gauge>::default(),
    );
    for (j, l) in &jobs {
        let (up, down) = up_and_down(c, *j, now);
        uptime.get_or_create(l).set(up as f64 / 1000.0);
        downtime.get_or_create(l).set(down as f64 / 1000.0);
        let with_state = |state: &'static str| JobStateLabels {
            job: l.job.clone(),
            name: l.name.clone(),
            state,
        };
        if let Some(state) = c.core.job_state(*j) {
            job_state.get_or_create(&with_state(state.name())).set(1);
        }
        let mut counts = [0i64; AttemptState::ALL.len()];
        for t in c.core.tasks(*j).unwrap_or_default() {
            if let Some(i) = AttemptState::ALL.iter().position(|s| *s == t.state) {
                counts[i] += 1;
            }
        }
        for (s, n) in AttemptState::ALL.iter().zip(counts) {
            tasks.get_or_create(&with_state(s.name())).set(n);
        }
    }

    checkpoint_metrics(c, r, &jobs, now);

    let executor_gauges: [(&str, &str); 5] = [
        (
            "jobmaster_executor_registered",
            "1 for every registered executor",
        ),
        ("jobmaster_executor_slots", "Slots the executor offers"),
        ("jobmaster_executor_free_slots", "Slots not holding a task"),
        (
            "jobmaster_executor_partitions",
            "Result partitions the executor hosts",
        ),
        (
            "jobmaster_executor_quarantined",
            "1 while the executor is quarantined (no new placements), else 0",
        ),
    ];
    let [registered, slots, free_slots, partitions, quarantined] = executor_gauges
        .map(|(name, help)| add(r, name, help, Family::<ExecutorLabels, Gauge>::default()));
    let heartbeat_age = add(
        r,
        "jobmaster_executor_heartbeat_age_seconds",
        "Time since the executor's last heartbeat",
        Family::<ExecutorLabels, F64Gauge>::default(),
    );
    let free_disk = add(
        r,
        "jobmaster_executor_free_disk_bytes",
        "Free disk the executor reported",
        Family::<ExecutorLabels, Gauge>::default(),
    );
    for (id, total, free, hosted) in c.core.executors() {
        let l = ExecutorLabels {
            executor: id.0.clone(),
        };
        registered.get_or_create(&l).set(1);
        slots.get_or_create(&l).set(i64::from(total));
        free_slots.get_or_create(&l).set(i64::from(free));
        partitions.get_or_create(&l).set(hosted as i64);
        quarantined
            .get_or_create(&l)
            .set(i64::from(c.core.quarantine(id).is_some()));
        if let Some(s) = c.shared.executors.get(id) {
            heartbeat_age
                .get_or_create(&l)
                .set(s.last_heartbeat.elapsed().as_secs_f64());
            free_disk
                .get_or_create(&l)
                .set(i64::try_from(s.free_disk).unwrap_or(i64::MAX));
        }
    }

    let recoveries = add(
        r,
        "jobmaster_recoveries",
        "Starts of a JobMaster on a store that already held state (restarts)",
        Counter::<u64>::default(),
    );
    recoveries.inc_by(c.shared.recoveries);
    let store_bytes = add(
        r,
        "jobmaster_store_bytes",
        "Bytes the store takes on disk (store.dir)",
        Gauge::<i64>::default(),
    );
    store_bytes.set(
        i64::try_from(
            c.shared
                .store_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .unwrap_or(i64::MAX),
    );
    add(
        r,
        "jobmaster_store_commit_seconds",
        "Time of each store commit (one per coordinator turn that changed something)",
        c.metrics.commits.clone(),
    );
    let epoch = add(
        r,
        "jobmaster_leader_epoch",
        "The epoch of this JobMaster, the leader (with ha.mode = etcd: its leader key's revision)",
        Gauge::<i64>::default(),
    );
    epoch.set(i64::try_from(c.shared.epoch).unwrap_or(i64::MAX));
    if let Some(l) = &c.shared.leadership {
        let changes = add(
            r,
            "jobmaster_leadership_changes",
            "Leadership changes of this process: terms won (elected) and lost (stepped_down)",
            Family::<Vec<(String, String)>, Counter<u64>>::default(),
        );
        use std::sync::atomic::Ordering::Relaxed;
        for (change, n) in [
            ("elected", crate::ha::TERMS_WON.load(Relaxed)),
            ("stepped_down", crate::ha::TERMS_LOST.load(Relaxed)),
        ] {
            changes
                .get_or_create(&vec![("change".to_owned(), change.to_owned())])
                .inc_by(n);
        }
        add(
            r,
            "jobmaster_lease_renew_seconds",
            "Latency of each granted renewal of the leader's etcd lease",
            l.renew_seconds.clone(),
        );
    }
    add(
        r,
        "jobmaster_reconciliation_seconds",
        "Time a restarted JobMaster took from loading its store to the last job leaving RECONCILING",
        c.metrics.reconciliation.clone(),
    );

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}
