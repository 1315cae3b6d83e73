//! What the scheduler counts for `/metrics` and the dashboard, kept as Dask keeps it so
//! nothing has to walk the tasks: per task prefix (`TaskPrefix`, scheduler.py:985), how many
//! tasks are in each state and what they cost, updated at every state change; and the work
//! stealing requests by Dask's cost level (`WorkStealing.metrics`).

use crate::types::TaskStatus;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// The states as counter indices, in Dask's `ALL_TASK_STATES` order.
pub const STATES: [TaskStatus; 8] = [
    TaskStatus::Released,
    TaskStatus::Waiting,
    TaskStatus::NoWorker,
    TaskStatus::Queued,
    TaskStatus::Processing,
    TaskStatus::Memory,
    TaskStatus::Erred,
    TaskStatus::Forgotten,
];

/// A state's index in [`STATES`].
pub fn state_index(s: TaskStatus) -> usize {
    match s {
        TaskStatus::Released => 0,
        TaskStatus::Waiting => 1,
        TaskStatus::NoWorker => 2,
        TaskStatus::Queued => 3,
        TaskStatus::Processing => 4,
        TaskStatus::Memory => 5,
        TaskStatus::Erred => 6,
        TaskStatus::Forgotten => 7,
    }
}

/// One task prefix's counters.
#[derive(Debug, Clone, Default)]
pub struct Prefix {
    /// `key_split` of its keys
    pub name: Arc<str>,
    /// tasks in each state now (`TaskPrefix.states`), by [`state_index`]; forgotten tasks
    /// count until their whole task group is forgotten, as in Dask
    pub states: [i64; 8],
    /// times a task entered each state (`TaskPrefix.state_counts`)
    pub state_counts: [u64; 8],
    /// microseconds workers spent computing its tasks (`all_durations["compute"]`)
    pub compute_us: u64,
    /// microseconds workers spent fetching its tasks' dependencies
    /// (`all_durations["transfer"]`)
    pub transfer_us: u64,
    /// bytes of results its tasks produced, less the groups dropped (`nbytes_total`)
    pub nbytes_total: i64,
    /// times a worker died while running one of its tasks (`TaskPrefix.suspicious`)
    pub suspicious: u64,
}

/// Every prefix seen since the last restart, in the order first seen. Dask never drops a
/// prefix (only `restart` clears them), so an index stays valid.
#[derive(Debug, Default)]
pub struct Prefixes {
    list: Vec<Prefix>,
    index: FxHashMap<Arc<str>, u32>,
}

impl Prefixes {
    /// The index of `name`, added if new.
    pub(crate) fn intern(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(Prefix {
            name: name.clone(),
            ..Prefix::default()
        });
        self.index.insert(name.clone(), i);
        i
    }

    pub(crate) fn get_mut(&mut self, i: u32) -> &mut Prefix {
        &mut self.list[i as usize]
    }

    /// A task moved from `from` to `to` (Dask's `TaskState.state` setter).
    pub(crate) fn moved(&mut self, i: u32, from: TaskStatus, to: TaskStatus) {
        let p = self.get_mut(i);
        p.states[state_index(from)] -= 1;
        p.states[state_index(to)] += 1;
        p.state_counts[state_index(to)] += 1;
    }

    pub(crate) fn clear(&mut self) {
        self.list.clear();
        self.index.clear();
    }

    /// All prefixes, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = &Prefix> {
        self.list.iter()
    }

    /// A prefix by name.
    pub fn get(&self, name: &str) -> Option<&Prefix> {
        self.index.get(name).map(|&i| &self.list[i as usize])
    }
}

/// Dask's cost levels (`WorkStealing.cost_multipliers`): rask does not rank tasks by them,
/// but counts its steal requests by them, for `/metrics`.
pub const COST_LEVELS: usize = 15;

/// Steal requests sent and their cost, per Dask cost level (`WorkStealing.metrics`).
#[derive(Debug, Clone, Default)]
pub struct StealMetrics {
    /// `request_count_total`
    pub count: [u64; COST_LEVELS],
    /// `request_cost_total`: the task's expected compute plus transfer time, seconds
    pub cost: [f64; COST_LEVELS],
}
