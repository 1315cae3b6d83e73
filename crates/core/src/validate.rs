//! Invariants (Dask's `validate_state`), checked after every stimulus when
//! `CoreConfig::validate` is on. A violation is a bug in the core, never a peer's fault, so
//! it panics.

use crate::state::SchedulerState;
use crate::types::TaskStatus;

impl SchedulerState {
    /// Panics with a description of the first broken invariant.
    pub fn validate(&self) {
        for (id, ts) in self.tasks() {
            let k = &ts.key;
            assert_eq!(self.task_index.get(k), Some(&id), "index of {k}");
            assert_ne!(ts.state, TaskStatus::Forgotten, "{k} forgotten but present");
            for d in &ts.dependencies {
                assert!(
                    self.expect_task(*d).dependents.contains(&id),
                    "{k}: dependency link not mirrored"
                );
            }
            for d in &ts.dependents {
                assert!(
                    self.expect_task(*d).dependencies.contains(&id),
                    "{k}: dependent link not mirrored"
                );
            }
            for w in &ts.who_has {
                let ws = self
                    .workers
                    .get(w)
                    .unwrap_or_else(|| panic!("{k}: held by unknown worker"));
                assert!(ws.has_what.contains(&id), "{k}: who_has not mirrored");
            }
            for c in &ts.who_wants {
                let cs = self
                    .clients
                    .get(c)
                    .unwrap_or_else(|| panic!("{k}: wanted by unknown client"));
                assert!(cs.wants_what.contains(&id), "{k}: who_wants not mirrored");
            }
            match ts.state {
                TaskStatus::Memory => {
                    assert!(!ts.who_has.is_empty(), "{k} in memory without holders");
                    assert!(ts.processing_on.is_none(), "{k} in memory and processing");
                }
                TaskStatus::Processing => {
                    let w = ts
                        .processing_on
                        .unwrap_or_else(|| panic!("{k} processing nowhere"));
                    let ws = self
                        .workers
                        .get(&w)
                        .unwrap_or_else(|| panic!("{k}: processing on unknown worker"));
                    assert!(ws.processing.contains(&id), "{k}: processing not mirrored");
                    assert!(ts.who_has.is_empty(), "{k} processing with a result");
                    for d in &ts.dependencies {
                        assert_eq!(
                            self.expect_task(*d).state,
                            TaskStatus::Memory,
                            "{k} processing before a dependency"
                        );
                    }
                }
                TaskStatus::Waiting => {
                    assert!(ts.processing_on.is_none(), "{k} waiting and processing");
                    for d in &ts.waiting_on {
                        assert!(ts.dependencies.contains(d), "{k} waits on a non-dependency");
                        assert!(
                            self.expect_task(*d).who_has.is_empty(),
                            "{k} waits on a dependency in memory"
                        );
                    }
                }
                TaskStatus::NoWorker => {
                    assert!(
                        self.unrunnable.contains(&id),
                        "{k} no-worker but not unrunnable"
                    );
                }
                TaskStatus::Queued => {
                    assert!(
                        self.queued.contains(&(ts.priority, id)),
                        "{k} queued but not in the queue"
                    );
                    assert!(ts.processing_on.is_none(), "{k} queued and processing");
                    assert!(ts.waiting_on.is_empty(), "{k} queued while waiting");
                }
                TaskStatus::Erred => {
                    assert!(ts.exception_blame.is_some(), "{k} erred without blame");
                    assert!(ts.processing_on.is_none(), "{k} erred and processing");
                }
                TaskStatus::Released => {
                    assert!(ts.processing_on.is_none(), "{k} released and processing");
                    assert!(ts.who_has.is_empty(), "{k} released with holders");
                }
                TaskStatus::Forgotten => {}
            }
        }
        for (wid, ws) in &self.workers {
            let running = ws.status == crate::types::WorkerStatus::Running;
            assert_eq!(
                self.running.contains(*wid),
                running,
                "{}: running set",
                ws.address
            );
            assert_eq!(
                self.idle.contains(*wid),
                running && (ws.processing.len() as u32) < ws.nthreads,
                "{}: idle set",
                ws.address
            );
            assert_eq!(
                self.open_slots.contains(*wid),
                running && self.slots_available(ws) > 0,
                "{}: open_slots set",
                ws.address
            );
            assert_eq!(
                ws.long_running,
                ws.processing
                    .iter()
                    .filter(|t| self.expect_task(**t).long_running)
                    .count(),
                "{}: long-running count",
                ws.address
            );
            for t in &ws.processing {
                let ts = self.expect_task(*t);
                assert_eq!(
                    ts.processing_on,
                    Some(*wid),
                    "{}: processing mirror",
                    ts.key
                );
            }
            for t in &ws.has_what {
                assert!(
                    self.expect_task(*t).who_has.contains(wid),
                    "{}: has_what mirror",
                    self.expect_task(*t).key
                );
            }
            // validate_worker_state (scheduler.py:9172): its actors run there or are held
            // there, and those are all the actors it runs or holds
            let actors = ws
                .processing
                .iter()
                .chain(&ws.has_what)
                .filter(|t| self.expect_task(**t).actor)
                .count();
            assert!(
                ws.actors.len() == actors
                    && ws
                        .actors
                        .iter()
                        .all(|t| ws.processing.contains(t) || ws.has_what.contains(t)),
                "{}: actors mirror",
                ws.address
            );
        }
        for w in self
            .running
            .as_slice()
            .iter()
            .chain(self.idle.as_slice())
            .chain(self.open_slots.as_slice())
        {
            assert!(
                self.workers.contains_key(w),
                "a departed worker in running/idle"
            );
        }
        for (id, steal) in &self.steals {
            let ts = self.expect_task(*id);
            assert_eq!(
                (ts.state, ts.processing_on),
                (TaskStatus::Processing, Some(steal.victim)),
                "{}: a steal request for a task not processing on its victim",
                ts.key
            );
        }
        for (_, id) in &self.queued {
            assert_eq!(
                self.expect_task(*id).state,
                TaskStatus::Queued,
                "a task in the queue not in queued"
            );
        }
        // per group: (tasks, tasks released or waiting)
        let mut sizes: rustc_hash::FxHashMap<&str, (usize, i64)> = Default::default();
        for (_, ts) in self.tasks() {
            let s = sizes.entry(&ts.group).or_default();
            s.0 += 1;
            s.1 += i64::from(ts.state.is_runnable());
        }
        assert_eq!(sizes.len(), self.groups.len(), "task groups");
        for (name, g) in &self.groups {
            assert_eq!(
                sizes.get(&**name),
                Some(&(g.size, g.runnable)),
                "size and runnable tasks of group {name}"
            );
        }
        // each prefix counts its tasks in each state; forgotten ones count until their
        // group goes
        let mut counts: rustc_hash::FxHashMap<u32, [i64; 8]> = Default::default();
        for (_, ts) in self.tasks() {
            counts.entry(ts.prefix_ix).or_default()[crate::counters::state_index(ts.state)] += 1;
        }
        for g in self.groups.values() {
            counts.entry(g.prefix).or_default()[7] += g.forgotten;
        }
        for (i, p) in self.prefixes.iter().enumerate() {
            let want = counts.get(&(i as u32)).copied().unwrap_or_default();
            assert_eq!(p.states, want, "states of prefix {}", p.name);
        }
        assert_eq!(
            self.total_nthreads,
            self.workers
                .values()
                .map(|w| u64::from(w.nthreads))
                .sum::<u64>(),
            "total_nthreads"
        );
        for id in &self.unrunnable {
            assert_eq!(
                self.expect_task(*id).state,
                TaskStatus::NoWorker,
                "unrunnable task not in no-worker"
            );
        }
    }
}
