//! Placement: the executors' slots ([`Slots`]: who holds them, and an index of executors by
//! free slots), the queue of regions waiting for slots, and scheduling — a region is placed
//! only when all its waiting tasks fit, each task on the executor with the most free slots.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::attempt::{AttemptId, AttemptState};
use super::event::Command;
use super::graph::TaskId;
use super::jobmaster::{Job, JobMaster, Timer};
use super::region::RegionId;
use super::{ExecutorId, JobId, Millis};

/// How placement spreads a job's tasks over the executors (`scheduler.placement`, or the
/// spec's `placement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PlacementPolicy {
    /// Each region on as few executors as possible, whole regions spread over the executors:
    /// an executor loss restarts few regions.
    #[default]
    PackRegions,
    /// Every task on the executor with the most free slots (a region's tasks spread out).
    Spread,
}

impl PlacementPolicy {
    pub const ALL: [PlacementPolicy; 2] = [PlacementPolicy::PackRegions, PlacementPolicy::Spread];

    pub fn name(self) -> &'static str {
        match self {
            PlacementPolicy::PackRegions => "pack-regions",
            PlacementPolicy::Spread => "spread",
        }
    }
}

impl std::fmt::Display for PlacementPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PlacementPolicy {
    type Err = super::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        super::names::parse_name("placement", &PlacementPolicy::ALL, s)
    }
}

/// One executor's slots.
struct ExecutorSlots {
    /// Slots it offers.
    slots: u32,
    /// Slots held by attempts.
    used: u32,
    /// The attempts holding them (placed on the executor and not yet terminal).
    attempts: BTreeSet<AttemptId>,
    /// Quarantined: its free slots are out of the index and the free count.
    excluded: bool,
}

/// The slots of every registered executor, with placement's index over them.
pub(crate) struct Slots {
    executors: BTreeMap<ExecutorId, ExecutorSlots>,
    /// Executors with a free slot, most free slots first, then by id: placement's index.
    by_free: BTreeSet<(Reverse<u32>, ExecutorId)>,
    /// Free slots over all executors.
    free_slots: u64,
}

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots {
            executors: BTreeMap::new(),
            by_free: BTreeSet::new(),
            free_slots: 0,
        }
    }

    /// A (newly registered) executor offers `slots` free slots.
    pub(crate) fn add_executor(&mut self, id: ExecutorId, slots: u32) {
        self.by_free.insert((Reverse(slots), id.clone()));
        self.free_slots += u64::from(slots);
        self.executors.insert(
            id,
            ExecutorSlots {
                slots,
                used: 0,
                attempts: BTreeSet::new(),
                excluded: false,
            },
        );
    }

    /// An executor is gone with its slots; returns the attempts that held them.
    pub(crate) fn remove_executor(&mut self, id: &ExecutorId) -> BTreeSet<AttemptId> {
        let Some(executor) = self.executors.remove(id) else {
            return BTreeSet::new();
        };
        let free = executor.slots - executor.used;
        if !executor.excluded {
            self.by_free.remove(&(Reverse(free), id.clone()));
            self.free_slots -= u64::from(free);
        }
        executor.attempts
    }

    /// Takes a registered executor out of placement (quarantine: no new attempts; the ones
    /// it runs keep their slots) or puts it back. Unknown executors are ignored.
    pub(crate) fn set_excluded(&mut self, id: &ExecutorId, excluded: bool) {
        let Some(ex) = self.executors.get_mut(id) else {
            return;
        };
        if ex.excluded == excluded {
            return;
        }
        ex.excluded = excluded;
        let free = ex.slots - ex.used;
        if free == 0 {
            return;
        }
        if excluded {
            self.by_free.remove(&(Reverse(free), id.clone()));
            self.free_slots -= u64::from(free);
        } else {
            self.by_free.insert((Reverse(free), id.clone()));
            self.free_slots += u64::from(free);
        }
    }

    /// Is the executor registered and taken out of placement?
    pub(crate) fn is_excluded(&self, id: &ExecutorId) -> bool {
        self.executors.get(id).is_some_and(|e| e.excluded)
    }

    /// The attempts holding a slot on `executor`, or `None` if it is not registered.
    pub(crate) fn attempts(&self, executor: &ExecutorId) -> Option<&BTreeSet<AttemptId>> {
        self.executors.get(executor).map(|e| &e.attempts)
    }

    /// Registered executors with (slots, free slots), by id.
    pub(crate) fn executors(&self) -> impl Iterator<Item = (&ExecutorId, u32, u32)> + '_ {
        self.executors
            .iter()
            .map(|(id, e)| (id, e.slots, e.slots - e.used))
    }

    /// Free slots over all executors.
    pub(crate) fn free_slots(&self) -> u64 {
        self.free_slots
    }

    /// Puts a task on the executor with the most free slots, avoiding the one it last failed
    /// on when another has room; ties go to the smallest executor id.
    fn deploy(&mut self, job: &mut Job, t: TaskId, now: Millis, out: &mut Vec<Command>) {
        let avoid = job.tasks[t.index()].avoid.as_ref();
        let mut best = self.by_free.iter().map(|(_, e)| e);
        let executor = match best.next() {
            Some(first) if Some(first) == avoid => best.next().unwrap_or(first),
            Some(first) => first,
            None => return, // cannot happen: `schedule` counted the free slots
        }
        .clone();
        let task = &mut job.tasks[t.index()];
        let attempt = AttemptId {
            job: job.id,
            task: t,
            attempt: task.attempt,
        };
        task.executor = Some(executor.clone());
        let ex = self.executors.get_mut(&executor).expect("picked");
        let free = ex.slots - ex.used;
        ex.used += 1;
        ex.attempts.insert(attempt);
        self.by_free.remove(&(Reverse(free), executor.clone()));
        if free > 1 {
            self.by_free.insert((Reverse(free - 1), executor.clone()));
        }
        self.free_slots -= 1;
        job.set_attempt_state(t, AttemptState::Scheduled, now, out);
        job.set_attempt_state(t, AttemptState::Deploying, now, out);
        out.push(Command::Deploy { attempt, executor });
    }

    /// Gives back the slot the current attempt of `t` holds, if it holds one.
    pub(crate) fn free_slot(&mut self, job: &Job, t: TaskId) {
        let task = &job.tasks[t.index()];
        let attempt = AttemptId {
            job: job.id,
            task: t,
            attempt: task.attempt,
        };
        if let Some(e) = &task.executor
            && let Some(ex) = self.executors.get_mut(e)
            && ex.attempts.remove(&attempt)
        {
            let free = ex.slots - ex.used;
            ex.used -= 1;
            if ex.excluded {
                return; // quarantined: the slot stays out of placement
            }
            if free > 0 {
                self.by_free.remove(&(Reverse(free), e.clone()));
            }
            self.by_free.insert((Reverse(free + 1), e.clone()));
            self.free_slots += 1;
        }
    }

    /// Debug builds: the placement index agrees with the executors' slot counts.
    #[cfg(debug_assertions)]
    fn check_slot_index(&self) {
        let expected: BTreeSet<(Reverse<u32>, ExecutorId)> = self
            .executors
            .iter()
            .filter(|(_, e)| e.used < e.slots && !e.excluded)
            .map(|(id, e)| (Reverse(e.slots - e.used), id.clone()))
            .collect();
        debug_assert_eq!(self.by_free, expected, "placement index");
        let free: u64 = self
            .executors
            .values()
            .filter(|e| !e.excluded)
            .map(|e| u64::from(e.slots - e.used))
            .sum();
        debug_assert_eq!(self.free_slots, free, "free slot count");
    }
}

impl JobMaster {
    /// Queues a region whose inputs are ready for slots (if it has tasks waiting).
    pub(crate) fn enqueue(&mut self, id: JobId, r: RegionId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.pending[r.index()].is_empty()
            || job.queued[r.index()].is_some()
            || !job.state.state().is_active()
            || !job.pending_ready(r)
        {
            return;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.slot_queue.push_back((id, r, ticket));
        let at = now + self.config.slot_request_timeout_ms;
        let timer = self.timers.set(
            at,
            Timer::SlotTimeout {
                job: id,
                region: r,
                ticket,
            },
            &mut self.out,
        );
        job.queued[r.index()] = Some((ticket, timer));
    }

    /// Places queued regions whose tasks all fit in the free slots, first come first served
    /// (a region that does not fit yet lets smaller ones behind it pass).
    pub(crate) fn schedule(&mut self, now: Millis) {
        if self.slot_queue.is_empty() {
            return;
        }
        let mut free = self.slots.free_slots;
        let mut keep = VecDeque::new();
        while let Some((id, r, ticket)) = self.slot_queue.pop_front() {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let Some((queued, timer)) = job.queued[r.index()] else {
                continue;
            };
            if queued != ticket {
                continue;
            }
            let need = job.pending[r.index()].len() as u64;
            // Empty, or its inputs were lost again while it waited: it is queued anew when ready.
            if need == 0 || !job.pending_ready(r) {
                job.queued[r.index()] = None;
                self.timers.cancel(timer, &mut self.out);
                continue;
            }
            if need > free {
                keep.push_back((id, r, ticket));
                continue;
            }
            free -= need;
            self.timers.cancel(timer, &mut self.out);
            job.queued[r.index()] = None;
            let tasks: Vec<TaskId> = std::mem::take(&mut job.pending[r.index()])
                .into_iter()
                .collect();
            for t in tasks {
                self.slots.deploy(job, t, now, &mut self.out);
            }
        }
        self.slot_queue = keep;
    }

    /// Debug builds: the placement index agrees with the executors' slot counts, and slots
    /// and registrations name the same executors.
    #[cfg(debug_assertions)]
    pub(crate) fn check_slot_index(&self) {
        self.slots.check_slot_index();
        debug_assert!(
            self.executors.keys().eq(self.slots.executors.keys()),
            "registered executors and slots disagree"
        );
    }
}
