use std::time::Duration;

use super::*;
use CheckpointAction as A;

const T0: TaskId = TaskId(0);
const T1: TaskId = TaskId(1);
const T2: TaskId = TaskId(2);

fn config(interval_ms: u64) -> CheckpointConfig {
    CheckpointConfig::every(Duration::from_millis(interval_ms))
}

fn coordinator(c: CheckpointConfig) -> CheckpointCoordinator {
    let mut c = CheckpointCoordinator::new(c);
    // The job is seen RUNNING at 0: the first trigger is due at `interval`.
    assert_eq!(c.tick(0, true, [T0, T1]), vec![]);
    c
}

fn triggered(actions: &[CheckpointAction]) -> Vec<CheckpointId> {
    actions
        .iter()
        .filter_map(|a| match a {
            A::Trigger { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn aborts(actions: &[CheckpointAction]) -> Vec<(CheckpointId, AbortReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            A::Abort { id, reason, .. } => Some((*id, reason.clone())),
            _ => None,
        })
        .collect()
}

fn fails_job(actions: &[CheckpointAction]) -> bool {
    actions.iter().any(|a| matches!(a, A::FailJob { .. }))
}

/// Triggers at `now`, acknowledges from T0 and T1, persists; returns the id.
fn complete(c: &mut CheckpointCoordinator, now: u64) -> CheckpointId {
    let id = triggered(&c.tick(now, true, [T0, T1]))[0];
    assert_eq!(c.acknowledge(now, id, T0, 10), vec![]);
    assert!(matches!(
        c.acknowledge(now, id, T1, 5)[..],
        [A::Persist { .. }]
    ));
    let notified = c.persisted(id);
    assert!(
        notified.contains(&A::NotifyComplete {
            id,
            tasks: vec![T0, T1]
        }),
        "{notified:?}"
    );
    id
}

#[test]
fn ids_start_at_one_and_grow() {
    let mut c = coordinator(config(100));
    let ids: Vec<_> = (1..=3).map(|i| complete(&mut c, i * 100)).collect();
    assert_eq!(ids, [CheckpointId(1), CheckpointId(2), CheckpointId(3)]);
    assert_eq!(c.stats().triggered, 3);
    assert_eq!(c.stats().completed, 3);
}

#[test]
fn trigger_names_every_participant_sorted_once() {
    let mut c = coordinator(config(100));
    let actions = c.tick(100, true, [T2, T0, T2]);
    assert_eq!(
        actions,
        vec![A::Trigger {
            id: CheckpointId(1),
            tasks: vec![T0, T2]
        }]
    );
}

#[test]
fn no_trigger_while_the_job_is_not_running_or_without_participants() {
    let mut c = coordinator(config(100));
    assert_eq!(c.tick(500, false, [T0]), vec![]);
    assert_eq!(c.tick(500, true, []), vec![]);
    assert_eq!(triggered(&c.tick(501, true, [T0])), [CheckpointId(1)]);
}

#[test]
fn the_first_trigger_waits_an_interval_after_the_job_is_first_seen_running() {
    let mut c = CheckpointCoordinator::new(config(100));
    assert_eq!(c.tick(0, false, [T0]), vec![]);
    assert_eq!(c.tick(50, true, [T0]), vec![]);
    assert_eq!(c.tick(149, true, [T0]), vec![]);
    assert_eq!(triggered(&c.tick(150, true, [T0])), [CheckpointId(1)]);
}

#[test]
fn no_trigger_before_the_interval_since_the_last_trigger() {
    let mut c = coordinator(config(100));
    complete(&mut c, 100);
    assert_eq!(c.tick(199, true, [T0, T1]), vec![]);
    assert_eq!(triggered(&c.tick(200, true, [T0, T1])), [CheckpointId(2)]);
}

#[test]
fn no_trigger_within_min_pause_of_the_last_completion() {
    let mut c = coordinator(CheckpointConfig {
        min_pause: Duration::from_millis(80),
        ..config(100)
    });
    let id = triggered(&c.tick(100, true, [T0]))[0];
    c.acknowledge(150, id, T0, 1);
    c.persisted(id);
    assert_eq!(
        c.tick(200, true, [T0]),
        vec![],
        "interval passed, min-pause not"
    );
    assert_eq!(c.tick(229, true, [T0]), vec![]);
    assert_eq!(triggered(&c.tick(230, true, [T0])), [CheckpointId(2)]);
}

#[test]
fn no_trigger_at_max_concurrent_until_one_completes() {
    let mut c = coordinator(CheckpointConfig {
        max_concurrent: 2,
        ..config(100)
    });
    assert_eq!(triggered(&c.tick(100, true, [T0])), [CheckpointId(1)]);
    assert_eq!(triggered(&c.tick(200, true, [T0])), [CheckpointId(2)]);
    assert_eq!(c.tick(300, true, [T0]), vec![]);
    assert_eq!(c.pending().len(), 2);
    c.acknowledge(310, CheckpointId(2), T0, 1);
    assert_eq!(
        c.tick(320, true, [T0]),
        vec![],
        "a persisting one still counts"
    );
    let done = c.persisted(CheckpointId(2));
    assert_eq!(
        aborts(&done),
        [(CheckpointId(1), AbortReason::Subsumed)],
        "an older one is subsumed"
    );
    assert_eq!(triggered(&c.tick(330, true, [T0])), [CheckpointId(3)]);
    assert_eq!(c.stats().failed, 0);
}

#[test]
fn completion_only_when_every_participant_acknowledged() {
    let mut c = coordinator(config(100));
    let id = triggered(&c.tick(100, true, [T0, T1, T2]))[0];
    assert_eq!(c.acknowledge(110, id, T0, 1), vec![]);
    assert_eq!(
        c.acknowledge(110, id, T0, 1),
        vec![],
        "a repeated ack counts once"
    );
    assert_eq!(c.acknowledge(120, id, T2, 2), vec![]);
    let awaiting: Vec<_> = c.pending().next().unwrap().awaiting().collect();
    assert_eq!(awaiting, [T1]);
    assert_eq!(
        c.acknowledge(130, id, T1, 4),
        vec![A::Persist {
            checkpoint: CompletedCheckpoint {
                id,
                trigger_time: 100,
                completion_time: 130,
                size_bytes: 7,
                tasks: vec![T0, T1, T2],
            }
        }]
    );
}

#[test]
fn completion_is_notified_only_after_persisted() {
    let mut c = coordinator(config(100));
    let id = triggered(&c.tick(100, true, [T0]))[0];
    let persist = c.acknowledge(120, id, T0, 3);
    assert!(matches!(persist[..], [A::Persist { .. }]));
    assert_eq!(
        c.latest_completed(),
        None,
        "not complete before the store has it"
    );
    assert_eq!(c.restore_point_for(T0), None);
    assert_eq!(c.tick(150, true, [T0]), vec![]);
    assert_eq!(
        c.persisted(id),
        vec![A::NotifyComplete {
            id,
            tasks: vec![T0]
        }]
    );
    assert_eq!(c.latest_completed().map(|c| c.id), Some(id));
    assert_eq!(c.latest_completed().map(|c| c.completion_time), Some(120));
    assert_eq!(c.persisted(id), vec![], "a second report changes nothing");
    let s = c.stats();
    assert_eq!(
        (s.last_completed_id, s.last_completed_time),
        (Some(id), Some(120))
    );
}

#[test]
fn persisted_for_a_checkpoint_not_yet_acknowledged_is_ignored() {
    let mut c = coordinator(config(100));
    let id = triggered(&c.tick(100, true, [T0, T1]))[0];
    c.acknowledge(110, id, T0, 1);
    assert_eq!(c.persisted(id), vec![]);
    assert_eq!(c.persisted(CheckpointId(99)), vec![]);
    assert_eq!(c.latest_completed(), None);
}

#[test]
fn retention_discards_the_oldest_beyond_retained() {
    let mut c = coordinator(CheckpointConfig {
        retained: 2,
        ..config(100)
    });
    complete(&mut c, 100);
    complete(&mut c, 200);
    let id = triggered(&c.tick(300, true, [T0, T1]))[0];
    c.acknowledge(300, id, T0, 1);
    c.acknowledge(300, id, T1, 1);
    let actions = c.persisted(id);
    assert_eq!(
        actions.last(),
        Some(&A::Discard {
            ids: vec![CheckpointId(1)]
        })
    );
    let kept: Vec<_> = c.retained_checkpoints().map(|c| c.id).collect();
    assert_eq!(kept, [CheckpointId(2), CheckpointId(3)]);
}

#[test]
fn a_timeout_aborts_and_counts_as_a_failure() {
    let mut c = coordinator(CheckpointConfig {
        timeout: Duration::from_millis(50),
        tolerable_failures: 5,
        ..config(100)
    });
    let id = triggered(&c.tick(100, true, [T0, T1]))[0];
    c.acknowledge(110, id, T0, 1);
    assert_eq!(c.tick(149, true, [T0, T1]), vec![]);
    let actions = c.tick(150, true, [T0, T1]);
    assert_eq!(
        actions,
        vec![A::Abort {
            id,
            tasks: vec![T0, T1],
            reason: AbortReason::Timeout
        }]
    );
    assert_eq!(c.pending().len(), 0);
    let s = c.stats();
    assert_eq!((s.failed, s.aborted, s.consecutive_failures), (1, 0, 1));
}

#[test]
fn a_decline_aborts_and_counts_as_a_failure() {
    let mut c = coordinator(CheckpointConfig {
        tolerable_failures: 5,
        ..config(100)
    });
    let id = triggered(&c.tick(100, true, [T0, T1]))[0];
    assert_eq!(
        c.decline(110, id, T2, "not mine"),
        vec![],
        "not a participant"
    );
    let actions = c.decline(110, id, T1, "disk full");
    assert_eq!(
        aborts(&actions),
        [(
            id,
            AbortReason::Declined {
                task: T1,
                reason: "disk full".into()
            }
        )]
    );
    assert_eq!(c.stats().failed, 1);
    assert_eq!(c.acknowledge(120, id, T0, 1), vec![], "late ack ignored");
}

#[test]
fn failures_beyond_tolerable_fail_the_job_and_a_completion_resets_the_count() {
    let mut c = coordinator(CheckpointConfig {
        tolerable_failures: 1,
        ..config(100)
    });
    let decline = |c: &mut CheckpointCoordinator, now| {
        let id = triggered(&c.tick(now, true, [T0, T1]))[0];
        c.decline(now, id, T0, "no")
    };
    assert!(!fails_job(&decline(&mut c, 100)));
    complete(&mut c, 200);
    assert_eq!(c.stats().consecutive_failures, 0);
    assert!(!fails_job(&decline(&mut c, 300)), "the count started over");
    let actions = decline(&mut c, 400);
    assert!(fails_job(&actions), "{actions:?}");
    assert_eq!(c.stats().failed, 3);
}

#[test]
fn the_first_failure_fails_the_job_by_default() {
    let mut c = coordinator(config(100));
    let id = triggered(&c.tick(100, true, [T0]))[0];
    let actions = c.decline(100, id, T0, "no");
    let Some(A::FailJob { reason }) = actions.last() else {
        panic!("{actions:?}");
    };
    assert!(
        reason.contains("chk-1") && reason.contains("tolerable-failures"),
        "{reason}"
    );
}

#[test]
fn abort_pending_aborts_all_without_a_failure_and_the_next_trigger_comes_at_the_next_tick() {
    let mut c = coordinator(CheckpointConfig {
        max_concurrent: 2,
        ..config(100)
    });
    c.tick(100, true, [T0, T1]);
    c.tick(200, true, [T0, T1]);
    c.acknowledge(210, CheckpointId(2), T0, 1);
    c.acknowledge(210, CheckpointId(2), T1, 1);
    assert_eq!(c.tick(300, true, [T0, T1]), vec![], "at max-concurrent");
    let actions = c.abort_pending(AbortReason::Failover);
    assert_eq!(
        aborts(&actions),
        [
            (CheckpointId(1), AbortReason::Failover),
            (CheckpointId(2), AbortReason::Failover)
        ]
    );
    assert!(!fails_job(&actions));
    let s = c.stats();
    assert_eq!((s.failed, s.aborted, s.consecutive_failures), (0, 2, 0));
    assert_eq!(triggered(&c.tick(301, true, [T0, T1])), [CheckpointId(3)]);
}

#[test]
fn a_checkpoint_aborted_while_persisting_is_discarded_when_the_write_lands() {
    let mut c = coordinator(config(100));
    let id = triggered(&c.tick(100, true, [T0]))[0];
    c.acknowledge(110, id, T0, 1);
    c.abort_pending(AbortReason::Failover);
    assert_eq!(c.persisted(id), vec![A::Discard { ids: vec![id] }]);
    assert_eq!(c.latest_completed(), None);
    assert_eq!(c.persisted(id), vec![]);
}

#[test]
fn a_failed_write_aborts_and_counts_as_a_failure() {
    let mut c = coordinator(CheckpointConfig {
        tolerable_failures: 3,
        ..config(100)
    });
    let id = triggered(&c.tick(100, true, [T0]))[0];
    c.acknowledge(110, id, T0, 1);
    let actions = c.persist_failed(id, "store unavailable");
    assert!(matches!(
        &aborts(&actions)[..],
        [(_, AbortReason::PersistFailed { .. })]
    ));
    assert_eq!(c.stats().failed, 1);
    assert_eq!(c.persisted(id), vec![]);
}

#[test]
fn late_and_foreign_acknowledgements_are_ignored() {
    let mut c = coordinator(CheckpointConfig {
        timeout: Duration::from_millis(10),
        tolerable_failures: 5,
        ..config(100)
    });
    let id = triggered(&c.tick(100, true, [T0, T1]))[0];
    assert_eq!(c.acknowledge(101, id, T2, 1), vec![], "not a participant");
    assert_eq!(
        c.acknowledge(101, CheckpointId(7), T0, 1),
        vec![],
        "unknown id"
    );
    c.tick(110, true, [T0, T1]);
    assert_eq!(c.acknowledge(111, id, T0, 1), vec![], "aborted by timeout");
    assert_eq!(c.acknowledge(111, id, T1, 1), vec![]);
    assert_eq!(c.decline(111, id, T1, "late"), vec![]);
    assert_eq!(c.latest_completed(), None);
}

#[test]
fn a_task_restores_from_the_latest_completed_checkpoint_only_if_it_took_part() {
    let mut c = coordinator(config(100));
    assert_eq!(c.restore_point_for(T0), None);
    let id = complete(&mut c, 100);
    assert_eq!(c.restore_point_for(T0), Some(id));
    assert_eq!(
        c.restore_point_for(T2),
        None,
        "finished or new tasks start empty"
    );
}

#[test]
fn completed_checkpoint_metadata_round_trips_through_serde() {
    let checkpoint = CompletedCheckpoint {
        id: CheckpointId(4),
        trigger_time: 10,
        completion_time: 25,
        size_bytes: 1 << 40,
        tasks: vec![T0, T2],
    };
    let json = serde_json::to_string(&checkpoint).unwrap();
    let back: CompletedCheckpoint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, checkpoint);
}

#[test]
fn a_zero_config_does_not_panic() {
    let mut c = CheckpointCoordinator::new(CheckpointConfig {
        interval: Duration::ZERO,
        timeout: Duration::ZERO,
        max_concurrent: 0,
        retained: 0,
        ..config(0)
    });
    for now in 0..5 {
        c.tick(now, true, [T0]);
        c.acknowledge(now, CheckpointId(now), T0, u64::MAX);
        c.persisted(CheckpointId(now));
    }
    assert!(c.pending().len() <= 1);
    assert!(c.retained_checkpoints().len() <= 1);
}

#[test]
fn a_resumed_coordinator_keeps_the_newest_retained_and_never_reuses_an_id() {
    let checkpoint = |id| CompletedCheckpoint {
        id: CheckpointId(id),
        trigger_time: 1_000_000,
        completion_time: 1_000_100,
        size_bytes: 1,
        tasks: vec![T0],
    };
    let (mut c, actions) = CheckpointCoordinator::resume(
        CheckpointConfig {
            retained: 2,
            ..config(100)
        },
        [checkpoint(5), checkpoint(3), checkpoint(4)],
        CheckpointId(8),
    );
    assert_eq!(
        actions,
        vec![A::Discard {
            ids: vec![CheckpointId(3)]
        }]
    );
    assert_eq!(c.restore_point_for(T0), Some(CheckpointId(5)));
    assert_eq!(c.stats().last_completed_id, Some(CheckpointId(5)));
    assert_eq!(
        c.next_id(),
        CheckpointId(8),
        "ids aborted before the takeover stay used"
    );
    assert_eq!(c.tick(0, true, [T0]), vec![], "timers start afresh");
    assert_eq!(triggered(&c.tick(100, true, [T0])), [CheckpointId(8)]);

    let (c, actions) = CheckpointCoordinator::resume(config(100), [checkpoint(9)], CheckpointId(0));
    assert_eq!(actions, vec![]);
    assert_eq!(
        c.next_id(),
        CheckpointId(10),
        "past the newest completed one"
    );
}
