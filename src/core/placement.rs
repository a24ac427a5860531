//! Placement: the executors' slots ([`Slots`]: who holds them, their labels, and indexes of
//! executors by free slots), the queue of regions waiting for slots, and scheduling.
//!
//! **When** a region is placed: only when all its waiting tasks fit in the free slots, first
//! come first served (a region that does not fit yet lets smaller ones behind it pass).
//!
//! **Where** — the rule, applied to one region's waiting tasks (`n` of them) at a time:
//!
//! 1. *Failure domain.* With a domain key (`scheduler.placement-domain`, or the spec's
//!    `placement-domain`, e.g. `zone`), executors are grouped by their value of that label;
//!    executors without the label form one more group of their own ("no domain"). Slots on
//!    the executors the region's tasks avoid (rule 2) do not count as room. If the most-free
//!    executor the region may use holds all `n` tasks, the candidates are its group (the
//!    region then stays whole on one executor); otherwise the first group, by most free
//!    slots (ties: no-domain first, then by value), with at least `n` free slots; otherwise
//!    no group has room and the candidates are all executors (the region spans domains).
//!    Without a domain key the candidates are all executors.
//! 2. *Avoid.* A task remembers the executor it last failed on, until a new attempt of it
//!    runs; the region's *avoided* executors are those of its waiting tasks.
//! 3. *Policy* ([`PlacementPolicy`], the spec's `placement`, else `scheduler.placement`):
//!    - `pack-regions` (default): walk the candidates in order of most free slots (ties by
//!      executor id), skipping avoided ones, and give each as many of the region's tasks as it
//!      has free slots until all are placed; only if tasks remain, avoided candidates follow
//!      in the same order. So the region goes whole onto the most-free non-avoided candidate
//!      when it fits there, and is otherwise split over as few executors as possible (taking
//!      the largest free counts first is minimal). Tasks that avoid an executor are handed
//!      out first, so they land on an avoided executor only when nothing else has room.
//!      Because each region starts on the most-free executor, whole regions spread over the
//!      executors and load stays balanced at region granularity; an executor loss restarts
//!      only the regions placed on it.
//!    - `spread`: each task goes to the candidate with the most free slots (ties by id), or
//!      the next one if that is the executor the task last failed on. A region's tasks end up
//!      on many executors, so one executor loss touches many regions.
//!
//! Cost: every slot change updates the global index and one group of each domain index in
//! O(log executors); choosing a domain looks at the avoided executors and the groups with room
//! for the region, in order, until one fits; a region's plan walks one index
//! entry per executor it uses plus its avoided ones. A domain index is built on the first
//! placement that asks for its key (O(executors log executors), once per key); when a key is
//! asked for that has no index yet, the indexes of keys no active job uses are dropped.

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

/// Executor labels (`zone = "a"`, `rack = "r1"`), given at registration.
pub type Labels = BTreeMap<String, String>;

/// Executors with a free slot, most free slots first, then by id.
type FreeIndex = BTreeSet<(Reverse<u32>, ExecutorId)>;

/// One executor's slots.
struct ExecutorSlots {
    /// Slots it offers.
    slots: u32,
    /// Slots held by attempts.
    used: u32,
    /// The attempts holding them (placed on the executor and not yet terminal).
    attempts: BTreeSet<AttemptId>,
    /// Its labels, for failure domains.
    labels: Labels,
    /// Quarantined: its free slots are out of the index and the free count.
    excluded: bool,
}

impl ExecutorSlots {
    fn free(&self) -> u32 {
        self.slots - self.used
    }

    /// The free slots placement may use: none while the executor is quarantined.
    fn placeable(&self) -> u32 {
        if self.excluded { 0 } else { self.free() }
    }
}

/// The executors that share one value of a domain key (or all lack the key).
#[derive(Default, PartialEq, Debug)]
struct Domain {
    free: u64,
    by_free: FreeIndex,
}

/// The executors grouped by their value of one label key.
#[derive(Default, PartialEq, Debug)]
struct DomainIndex {
    /// Per value (`None`: executors without the label).
    domains: BTreeMap<Option<String>, Domain>,
    /// Domains with a free slot, most free slots first, then by value.
    by_free: BTreeSet<(Reverse<u64>, Option<String>)>,
}

impl DomainIndex {
    /// An executor of domain `value` went from `before` to `after` free slots.
    fn update(&mut self, value: Option<&String>, id: &ExecutorId, before: u32, after: u32) {
        let value = value.cloned();
        let domain = self.domains.entry(value.clone()).or_default();
        let was = domain.free;
        if before > 0 {
            domain.by_free.remove(&(Reverse(before), id.clone()));
        }
        if after > 0 {
            domain.by_free.insert((Reverse(after), id.clone()));
        }
        domain.free = domain.free - u64::from(before) + u64::from(after);
        let is = domain.free;
        if was > 0 {
            self.by_free.remove(&(Reverse(was), value.clone()));
        }
        if is > 0 {
            self.by_free.insert((Reverse(is), value));
        }
    }
}

/// Where a region's tasks may go.
enum Candidates {
    /// Every executor.
    All,
    /// The executors of one domain: (key, value).
    Domain(String, Option<String>),
}

/// Placement's indexes over the executors' free slots.
#[derive(Default)]
struct Indexes {
    /// Executors with a free slot, most free slots first, then by id.
    by_free: FreeIndex,
    /// Free slots over all executors.
    free_slots: u64,
    /// Per domain key some placement asked for: the executors grouped by that label.
    domains: BTreeMap<String, DomainIndex>,
}

impl Indexes {
    /// Executor `id` (with `labels`) went from `before` to `after` free slots (0 for an
    /// executor arriving or leaving): keeps every index in step, O(log executors) each.
    fn update(&mut self, id: &ExecutorId, labels: &Labels, before: u32, after: u32) {
        if before > 0 {
            self.by_free.remove(&(Reverse(before), id.clone()));
        }
        if after > 0 {
            self.by_free.insert((Reverse(after), id.clone()));
        }
        self.free_slots = self.free_slots - u64::from(before) + u64::from(after);
        for (key, index) in &mut self.domains {
            index.update(labels.get(key), id, before, after);
        }
    }
}

/// The slots of every registered executor, with placement's indexes over them.
pub(crate) struct Slots {
    executors: BTreeMap<ExecutorId, ExecutorSlots>,
    indexes: Indexes,
}

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots {
            executors: BTreeMap::new(),
            indexes: Indexes::default(),
        }
    }

    /// A (newly registered) executor offers `slots` free slots.
    pub(crate) fn add_executor(&mut self, id: ExecutorId, slots: u32, labels: Labels) {
        self.indexes.update(&id, &labels, 0, slots);
        self.executors.insert(
            id,
            ExecutorSlots {
                slots,
                used: 0,
                attempts: BTreeSet::new(),
                excluded: false,
                labels,
            },
        );
    }

    /// An executor is gone with its slots; returns the attempts that held them.
    pub(crate) fn remove_executor(&mut self, id: &ExecutorId) -> BTreeSet<AttemptId> {
        let Some(executor) = self.executors.remove(id) else {
            return BTreeSet::new();
        };
        self.indexes
            .update(id, &executor.labels, executor.placeable(), 0);
        executor.attempts
    }

    /// Takes a registered executor out of placement (quarantine: no new attempts; the ones
    /// it runs keep their slots) or puts it back. Unknown executors are ignored.
    pub(crate) fn set_excluded(&mut self, id: &ExecutorId, excluded: bool) {
        let Some(ex) = self.executors.get_mut(id) else {
            return;
        };
        let before = ex.placeable();
        ex.excluded = excluded;
        self.indexes.update(id, &ex.labels, before, ex.placeable());
    }

    /// Free slots of a registered executor, quarantined or not.
    pub(crate) fn free_of(&self, id: &ExecutorId) -> Option<u32> {
        self.executors.get(id).map(ExecutorSlots::free)
    }

    /// Is the executor registered and taken out of placement?
    pub(crate) fn is_excluded(&self, id: &ExecutorId) -> bool {
        self.executors.get(id).is_some_and(|e| e.excluded)
    }

    /// The attempts holding a slot on `executor`, or `None` if it is not registered.
    pub(crate) fn attempts(&self, executor: &ExecutorId) -> Option<&BTreeSet<AttemptId>> {
        self.executors.get(executor).map(|e| &e.attempts)
    }

    /// The labels `executor` registered with, or `None` if it is not registered.
    pub(crate) fn labels(&self, executor: &ExecutorId) -> Option<&Labels> {
        self.executors.get(executor).map(|e| &e.labels)
    }

    /// Registered executors with (slots, free slots), by id.
    pub(crate) fn executors(&self) -> impl Iterator<Item = (&ExecutorId, u32, u32)> + '_ {
        self.executors.iter().map(|(id, e)| (id, e.slots, e.free()))
    }

    /// Free slots over all executors.
    pub(crate) fn free_slots(&self) -> u64 {
        self.indexes.free_slots
    }

    /// The index over domain key `key`, built on first use.
    fn domain_index(&mut self, key: &str) -> &DomainIndex {
        if !self.indexes.domains.contains_key(key) {
            let mut index = DomainIndex::default();
            for (id, e) in &self.executors {
                index.update(e.labels.get(key), id, 0, e.placeable());
            }
            self.indexes.domains.insert(key.to_owned(), index);
        }
        &self.indexes.domains[key]
    }

    /// Where a region of `n` waiting tasks may go (rule 1 of the module doc). Slots on the
    /// executors its tasks avoid do not count toward a domain's room, and when one executor
    /// can hold the whole region its domain is chosen, so the region is not split.
    fn candidates(
        &mut self,
        domain: Option<&str>,
        n: u64,
        avoided: &BTreeSet<ExecutorId>,
    ) -> Candidates {
        let Some(key) = domain else {
            return Candidates::All;
        };
        self.domain_index(key);
        let value_of = |slots: &Slots, id: &ExecutorId| {
            slots
                .executors
                .get(id)
                .and_then(|e| e.labels.get(key).cloned())
        };
        // The most-free executor the region may use: at most |avoided| + 1 steps.
        if let Some((Reverse(free), id)) = self
            .indexes
            .by_free
            .iter()
            .find(|(_, id)| !avoided.contains(id))
            && u64::from(*free) >= n
        {
            return Candidates::Domain(key.to_owned(), value_of(self, id));
        }
        let index = &self.indexes.domains[key];
        for (Reverse(free), value) in &index.by_free {
            if *free < n {
                break;
            }
            let held: u64 = avoided
                .iter()
                .filter_map(|id| self.executors.get(id))
                .filter(|e| e.labels.get(key) == value.as_ref())
                .map(|e| u64::from(e.placeable()))
                .sum();
            if free - held >= n {
                return Candidates::Domain(key.to_owned(), value.clone());
            }
        }
        Candidates::All
    }

    /// The free-slot index of the candidates.
    fn index(&self, candidates: &Candidates) -> &FreeIndex {
        match candidates {
            Candidates::All => &self.indexes.by_free,
            Candidates::Domain(key, value) => &self.indexes.domains[key].domains[value].by_free,
        }
    }

    /// Is `executor` among the candidates?
    fn is_candidate(&self, candidates: &Candidates, executor: &ExecutorSlots) -> bool {
        match candidates {
            Candidates::All => true,
            Candidates::Domain(key, value) => executor.labels.get(key) == value.as_ref(),
        }
    }

    /// Places one region's waiting `tasks` with the job's policy and domain (the module doc's
    /// rule). The caller made sure they all fit in the free slots.
    fn place_region(
        &mut self,
        job: &mut Job,
        tasks: Vec<TaskId>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let avoided: BTreeSet<ExecutorId> = tasks
            .iter()
            .filter_map(|t| job.tasks[t.index()].avoid.clone())
            .collect();
        let candidates = self.candidates(
            job.placement_domain.as_deref(),
            tasks.len() as u64,
            &avoided,
        );
        match job.placement {
            PlacementPolicy::Spread => {
                for t in tasks {
                    let avoid = job.tasks[t.index()].avoid.as_ref();
                    let mut best = self.index(&candidates).iter().map(|(_, e)| e);
                    let executor = match best.next() {
                        Some(first) if Some(first) == avoid => best.next().unwrap_or(first),
                        Some(first) => first,
                        None => return, // cannot happen: `schedule` counted the free slots
                    }
                    .clone();
                    self.deploy(job, t, executor, now, out);
                }
            }
            PlacementPolicy::PackRegions => {
                let plan = self.pack(job, &tasks, &candidates);
                // Tasks that avoid an executor take the plan's first places (it lists avoided
                // executors last); the deploys then go out in task order.
                let (mut order, rest): (Vec<TaskId>, Vec<TaskId>) = tasks
                    .into_iter()
                    .partition(|t| job.tasks[t.index()].avoid.is_some());
                order.extend(rest);
                let places = plan
                    .into_iter()
                    .flat_map(|(executor, count)| std::iter::repeat_n(executor, count as usize));
                let mut assigned: Vec<(TaskId, ExecutorId)> =
                    order.into_iter().zip(places).collect();
                assigned.sort_unstable_by_key(|(t, _)| *t);
                for (t, executor) in assigned {
                    self.deploy(job, t, executor, now, out);
                }
            }
        }
    }

    /// `pack-regions`: how many of `tasks` go to which executor, non-avoided executors first.
    fn pack(&self, job: &Job, tasks: &[TaskId], candidates: &Candidates) -> Vec<(ExecutorId, u32)> {
        let avoided: BTreeSet<&ExecutorId> = tasks
            .iter()
            .filter_map(|t| job.tasks[t.index()].avoid.as_ref())
            .collect();
        let mut remaining = tasks.len() as u32;
        let mut plan = Vec::new();
        for (Reverse(free), executor) in self.index(candidates) {
            if remaining == 0 {
                break;
            }
            if avoided.contains(executor) {
                continue;
            }
            let take = remaining.min(*free);
            plan.push((executor.clone(), take));
            remaining -= take;
        }
        if remaining > 0 {
            let mut fallback: Vec<(Reverse<u32>, &ExecutorId)> = avoided
                .iter()
                .filter_map(|&id| {
                    let e = self.executors.get(id)?;
                    (e.placeable() > 0 && self.is_candidate(candidates, e))
                        .then_some((Reverse(e.placeable()), id))
                })
                .collect();
            fallback.sort();
            for (Reverse(free), executor) in fallback {
                if remaining == 0 {
                    break;
                }
                let take = remaining.min(free);
                plan.push((executor.clone(), take));
                remaining -= take;
            }
        }
        plan
    }

    /// Puts task `t` on `executor`, which has a free slot.
    fn deploy(
        &mut self,
        job: &mut Job,
        t: TaskId,
        executor: ExecutorId,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let task = &mut job.tasks[t.index()];
        let attempt = AttemptId {
            job: job.id,
            task: t,
            attempt: task.attempt,
        };
        task.executor = Some(executor.clone());
        let ex = self.executors.get_mut(&executor).expect("picked");
        let before = ex.placeable();
        ex.used += 1;
        ex.attempts.insert(attempt);
        self.indexes
            .update(&executor, &ex.labels, before, ex.placeable());
        job.set_attempt_state(t, AttemptState::Scheduled, now, out);
        job.set_attempt_state(t, AttemptState::Deploying, now, out);
        let restore = job.restore_point(t);
        out.push(Command::Deploy {
            attempt,
            executor,
            restore,
        });
    }

    /// An attempt a restarted JobMaster adopts takes a slot on the executor that runs it;
    /// false when the executor has none free (it registered with fewer slots than it uses).
    pub(crate) fn adopt(&mut self, executor: &ExecutorId, attempt: AttemptId) -> bool {
        let Some(ex) = self.executors.get_mut(executor) else {
            return false;
        };
        if ex.free() == 0 {
            return false;
        }
        let before = ex.placeable();
        ex.used += 1;
        ex.attempts.insert(attempt);
        self.indexes
            .update(executor, &ex.labels, before, ex.placeable());
        true
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
            let before = ex.placeable();
            ex.used -= 1;
            self.indexes.update(e, &ex.labels, before, ex.placeable());
        }
    }

    /// Debug builds: the placement indexes agree with the executors' slot counts.
    #[cfg(debug_assertions)]
    fn check_slot_index(&self) {
        let expected: FreeIndex = self
            .executors
            .iter()
            .filter(|(_, e)| e.placeable() > 0)
            .map(|(id, e)| (Reverse(e.placeable()), id.clone()))
            .collect();
        debug_assert_eq!(self.indexes.by_free, expected, "placement index");
        let free: u64 = self
            .executors
            .values()
            .map(|e| u64::from(e.placeable()))
            .sum();
        debug_assert_eq!(self.indexes.free_slots, free, "free slot count");
        for (key, index) in &self.indexes.domains {
            let mut expected = DomainIndex::default();
            for (id, e) in &self.executors {
                expected.update(e.labels.get(key), id, 0, e.placeable());
            }
            // Domains whose executors all left stay behind, empty.
            let live: BTreeMap<&Option<String>, &Domain> = index
                .domains
                .iter()
                .filter(|(_, d)| d.free > 0 || !d.by_free.is_empty())
                .collect();
            let want: BTreeMap<&Option<String>, &Domain> = expected
                .domains
                .iter()
                .filter(|(_, d)| d.free > 0 || !d.by_free.is_empty())
                .collect();
            debug_assert_eq!(live, want, "domain index {key}");
            debug_assert_eq!(index.by_free, expected.by_free, "domain order {key}");
        }
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
            // Placed once reconciliation is over (its inputs' hosts are not confirmed yet).
            || job.recovery.is_some()
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
    /// (a region that does not fit yet lets smaller ones behind it pass), each with its job's
    /// placement policy and domain (see the module doc).
    pub(crate) fn schedule(&mut self, now: Millis) {
        if self.slot_queue.is_empty() {
            return;
        }
        let mut free = self.slots.free_slots();
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
                // Quarantine must not keep a region from running when the cluster has room.
                if !self.release_quarantines_for(need) {
                    keep.push_back((id, r, ticket));
                    continue;
                }
                free = self.slots.free_slots();
            }
            self.prune_domain_indexes(id);
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            free -= need;
            self.timers.cancel(timer, &mut self.out);
            job.queued[r.index()] = None;
            let tasks: Vec<TaskId> = std::mem::take(&mut job.pending[r.index()])
                .into_iter()
                .collect();
            self.slots.place_region(job, tasks, now, &mut self.out);
        }
        self.slot_queue = keep;
    }

    /// Before job `id` builds the index of a domain key no index exists for yet, drops the
    /// indexes of keys that no active job uses any more: every slot change updates every
    /// index, so their number stays that of the keys in use (jobs may name any key).
    fn prune_domain_indexes(&mut self, id: JobId) {
        let Some(key) = self
            .jobs
            .get(&id)
            .and_then(|j| j.placement_domain.as_deref())
        else {
            return;
        };
        if self.slots.indexes.domains.contains_key(key) {
            return;
        }
        let in_use: BTreeSet<&str> = self
            .jobs
            .values()
            .filter(|j| j.state.state().is_active())
            .filter_map(|j| j.placement_domain.as_deref())
            .collect();
        self.slots
            .indexes
            .domains
            .retain(|k, _| in_use.contains(k.as_str()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoreConfig, Event, JobSpec};

    fn spec(domain: &str) -> JobSpec {
        JobSpec::from_toml(&format!(
            "name = \"j\"\nplacement-domain = \"{domain}\"\n\
             [[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"x\"]\n"
        ))
        .expect("valid spec")
    }

    #[test]
    fn indexes_of_domain_keys_no_active_job_uses_are_dropped_when_a_new_key_comes() {
        let mut jm = JobMaster::new(CoreConfig::default());
        jm.handle(
            Event::ExecutorRegistered {
                executor: "e".into(),
                slots: 4,
                labels: [("zone".to_owned(), "a".to_owned())].into(),
                holds: Default::default(),
            },
            0,
        )
        .expect("registered");
        let out = jm
            .handle(
                Event::SubmitJob {
                    job: JobId(1),
                    spec: spec("zone"),
                },
                0,
            )
            .expect("submitted");
        let keys =
            |jm: &JobMaster| -> Vec<String> { jm.slots.indexes.domains.keys().cloned().collect() };
        assert_eq!(keys(&jm), ["zone"]);
        // Job 1 ends: its one attempt is cancelled.
        jm.handle(Event::CancelJob { job: JobId(1) }, 1)
            .expect("cancelled");
        for c in out {
            if let Command::Deploy {
                attempt, executor, ..
            } = c
            {
                jm.handle(
                    Event::TaskStateChanged {
                        executor,
                        attempt,
                        state: AttemptState::Canceled,
                        failure: None,
                    },
                    2,
                )
                .expect("canceled");
            }
        }
        assert_eq!(
            jm.job_state(JobId(1)),
            Some(crate::core::JobState::Canceled)
        );
        jm.handle(
            Event::SubmitJob {
                job: JobId(2),
                spec: spec("rack"),
            },
            3,
        )
        .expect("submitted");
        assert_eq!(keys(&jm), ["rack"], "zone's index went with job 1");
    }
}
