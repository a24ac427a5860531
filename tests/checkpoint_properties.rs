//! Property test of the checkpoint coordinator (`core::checkpoint`) over random sequences of
//! ticks, acknowledgements, declines, store reports and failovers: whatever the order, a
//! completion is never notified before the store has it, ids only grow, at most
//! `max-concurrent` checkpoints are in progress and at most `retained` are kept.

use std::collections::BTreeSet;
use std::time::Duration;

use jobmaster::core::{
    AbortReason, CheckpointAction, CheckpointConfig, CheckpointCoordinator, CheckpointId, TaskId,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

#[derive(Debug, Clone)]
enum Op {
    /// Advance the clock by `dt` and tick with the participants in `mask` (bits of 0..4).
    Tick {
        dt: u64,
        running: bool,
        mask: u8,
    },
    /// An awaited participant of a checkpoint in progress (both picked modulo the counts).
    Ack {
        which: usize,
        pick: usize,
        size: u64,
    },
    /// `back` counts from the newest id issued (0: one not yet issued); any task, even a
    /// non-participant.
    StrayAck {
        back: u64,
        task: u32,
    },
    Decline {
        back: u64,
        task: u32,
    },
    /// A checkpoint in progress (picked modulo the count), persisting or not.
    Persisted {
        which: usize,
    },
    /// Any id, even one never persisted, aborted or not yet issued.
    StrayPersisted {
        back: u64,
    },
    PersistFailed {
        back: u64,
    },
    AbortPending,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..200u64, prop::bool::weighted(0.9), 0..16u8)
            .prop_map(|(dt, running, mask)| Op::Tick { dt, running, mask }),
        8 => (0..4usize, 0..4usize, 0..1000u64)
            .prop_map(|(which, pick, size)| Op::Ack { which, pick, size }),
        1 => (0..4u64, 0..5u32).prop_map(|(back, task)| Op::StrayAck { back, task }),
        1 => (0..4u64, 0..5u32).prop_map(|(back, task)| Op::Decline { back, task }),
        3 => (0..4usize).prop_map(|which| Op::Persisted { which }),
        1 => (0..4u64).prop_map(|back| Op::StrayPersisted { back }),
        1 => (0..4u64).prop_map(|back| Op::PersistFailed { back }),
        1 => Just(Op::AbortPending),
    ]
}

fn checkpoint_config() -> impl Strategy<Value = CheckpointConfig> {
    (1..150u64, 1..400u64, 0..100u64, 1..4u32, 0..3u32, 1..4u32).prop_map(
        |(interval, timeout, min_pause, max_concurrent, tolerable_failures, retained)| {
            CheckpointConfig {
                interval: Duration::from_millis(interval),
                timeout: Duration::from_millis(timeout),
                min_pause: Duration::from_millis(min_pause),
                max_concurrent,
                tolerable_failures,
                retained,
                dir: String::new(),
            }
        },
    )
}

fn config() -> Config {
    Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn checkpoint_invariants_hold_for_any_event_order(
        cfg in checkpoint_config(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut c = CheckpointCoordinator::new(cfg.clone());
        let mut now = 0u64;
        let mut last_triggered = 0u64;
        // Ids the coordinator asked to persist, and those the store then reported durable.
        let mut persist_asked = BTreeSet::new();
        let mut reported = BTreeSet::new();
        let mut notified = BTreeSet::new();
        for op in ops {
            let newest = last_triggered + 1;
            let id = |back: u64| CheckpointId(newest.saturating_sub(back));
            let (actions, persisted_id) = match op {
                Op::Tick { dt, running, mask } => {
                    now += dt;
                    let tasks = (0..4).filter(|b| mask & (1 << b) != 0).map(TaskId);
                    (c.tick(now, running, tasks), None)
                }
                Op::Ack { which, pick, size } => {
                    let target = c.pending().nth(which % c.pending().len().max(1)).map(|p| {
                        let awaiting: Vec<TaskId> = p.awaiting().collect();
                        (p.id, awaiting.get(pick % awaiting.len().max(1)).copied())
                    });
                    match target {
                        Some((id, Some(task))) => (c.acknowledge(now, id, task, size), None),
                        _ => (Vec::new(), None),
                    }
                }
                Op::StrayAck { back, task } => {
                    (c.acknowledge(now, id(back), TaskId(task), 1), None)
                }
                Op::Decline { back, task } => {
                    (c.decline(now, id(back), TaskId(task), "no"), None)
                }
                Op::Persisted { which } => {
                    let target = c.pending().nth(which % c.pending().len().max(1)).map(|p| p.id);
                    match target {
                        Some(id) => (c.persisted(id), Some(id)),
                        None => (Vec::new(), None),
                    }
                }
                Op::StrayPersisted { back } => (c.persisted(id(back)), Some(id(back))),
                Op::PersistFailed { back } => (c.persist_failed(id(back), "down"), None),
                Op::AbortPending => (c.abort_pending(AbortReason::Failover), None),
            };
            for action in &actions {
                match action {
                    CheckpointAction::Trigger { id, tasks } => {
                        prop_assert!(id.0 > last_triggered, "ids grow: {id} after {last_triggered}");
                        prop_assert!(!tasks.is_empty());
                        last_triggered = id.0;
                    }
                    CheckpointAction::Persist { checkpoint } => {
                        prop_assert!(persist_asked.insert(checkpoint.id), "persist asked twice");
                        prop_assert!(checkpoint.trigger_time <= checkpoint.completion_time);
                    }
                    CheckpointAction::NotifyComplete { id, .. } => {
                        prop_assert_eq!(Some(*id), persisted_id, "notified outside persisted()");
                        prop_assert!(persist_asked.contains(id), "notified before persist asked");
                        prop_assert!(notified.insert(*id), "notified twice");
                        reported.insert(*id);
                    }
                    _ => {}
                }
            }
            prop_assert!(c.pending().len() <= cfg.max_concurrent as usize);
            prop_assert!(c.retained_checkpoints().len() <= cfg.retained as usize);
            let kept: Vec<_> = c.retained_checkpoints().map(|k| k.id).collect();
            prop_assert!(kept.windows(2).all(|w| w[0] < w[1]), "{kept:?}");
            prop_assert!(kept.iter().all(|k| reported.contains(k)), "kept but never notified");
            let s = c.stats();
            prop_assert_eq!(
                s.triggered,
                s.completed + s.failed + s.aborted + c.pending().len() as u64
            );
            prop_assert!(s.consecutive_failures <= cfg.tolerable_failures);
        }
    }
}
