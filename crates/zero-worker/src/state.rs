//! What a fake worker does with the scheduler's stream messages (worker.py:691-702): a
//! stock worker's state machine reduced to "every task is in memory the moment it arrives".
//! Pure (no I/O, time passed in), so the replies can be tested directly.

use crate::error::ZeroWorkerError;
use crate::messages;
use rask_protocol::{Key, Value};
use rustc_hash::FxHashSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// The keys a worker holds, shared between its stream loop and its RPC listener (scatter's
/// `update_data` adds keys). Held only for the length of one batch or one RPC.
pub type Memory = Arc<Mutex<FxHashSet<Key>>>;

/// Locks `memory`; a panic elsewhere cannot leave the set half-updated, so a poisoned lock
/// is still usable.
pub fn lock(memory: &Memory) -> MutexGuard<'_, FxHashSet<Key>> {
    memory.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the stream loop should stop after this batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// `{"op": "close", "reason": ...}`: close politely, as `Worker.close(reason)` does
    Close(String),
    /// `{"op": "close-stream"}`: the scheduler ended the stream; nothing more can be sent
    StreamClosed,
}

/// The replies to one batch read from the stream.
#[derive(Debug, Default)]
pub struct Outcome {
    /// messages to write back, in order
    pub out: Vec<Value>,
    /// how many of them are `task-finished`
    pub finished: u64,
    /// how many `compute-task` the batch held
    pub computes: u64,
    /// set when the worker must stop
    pub stop: Option<Stop>,
}

/// The keys one fake worker holds "in memory" (results it finished and replicas it was told
/// to fetch), which decide `release-worker-data` and `steal-response` exactly as for a stock
/// worker.
#[derive(Debug)]
pub struct WorkerState {
    address: String,
    thread: i64,
    memory: Memory,
}

fn field<'a>(msg: &'a Value, op: &str, name: &str) -> Result<&'a Value, ZeroWorkerError> {
    msg.get(name)
        .ok_or_else(|| ZeroWorkerError::BadMessage(format!("{op} without {name:?}")))
}

fn key_of(v: &Value, op: &str) -> Result<Key, ZeroWorkerError> {
    Key::from_value(v)
        .ok_or_else(|| ZeroWorkerError::BadMessage(format!("{op}: {v:?} is not a task key")))
}

fn array<'a>(msg: &'a Value, op: &str, name: &str) -> Result<&'a [Value], ZeroWorkerError> {
    field(msg, op, name)?
        .as_array()
        .ok_or_else(|| ZeroWorkerError::BadMessage(format!("{op}: {name:?} is not a list")))
}

fn map<'a>(msg: &'a Value, op: &str, name: &str) -> Result<&'a [(Value, Value)], ZeroWorkerError> {
    field(msg, op, name)?
        .as_map()
        .ok_or_else(|| ZeroWorkerError::BadMessage(format!("{op}: {name:?} is not a dict")))
}

impl WorkerState {
    /// A worker listening at `address`; `thread` is the id it reports as its executor thread.
    pub fn new(address: String, thread: i64) -> WorkerState {
        WorkerState {
            address,
            thread,
            memory: Memory::default(),
        }
    }

    /// Keys currently held.
    pub fn in_memory(&self) -> usize {
        lock(&self.memory).len()
    }

    /// The shared set of held keys.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// Handles one read from the stream: a list of messages or a single dict
    /// (`Server.handle_stream`, core.py:862-885). A malformed message is an error, which
    /// ends the worker as it ends a stock one (its stream loop raises).
    pub fn handle_batch(&mut self, batch: Value, now: f64) -> Result<Outcome, ZeroWorkerError> {
        let msgs = match batch {
            Value::Array(msgs) => msgs,
            m @ Value::Map(_) => vec![m],
            Value::Str(s) if &*s == "OK" => Vec::new(),
            other => {
                return Err(ZeroWorkerError::BadMessage(format!(
                    "stream batch is a {}",
                    other.type_name()
                )))
            }
        };
        let mut o = Outcome::default();
        let mut memory = lock(&self.memory);
        for msg in &msgs {
            if msg.as_str() == Some("OK") {
                break;
            }
            self.handle(&mut memory, msg, now, &mut o)?;
            if o.stop.is_some() {
                break;
            }
        }
        Ok(o)
    }

    fn handle(
        &self,
        memory: &mut FxHashSet<Key>,
        msg: &Value,
        now: f64,
        o: &mut Outcome,
    ) -> Result<(), ZeroWorkerError> {
        let op = msg
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| ZeroWorkerError::BadMessage("stream message without op".into()))?;
        match op {
            "compute-task" => {
                let key_v = field(msg, op, "key")?;
                let key = key_of(key_v, op)?;
                let run_id = field(msg, op, "run_id")?;
                if run_id.as_i64().is_none() {
                    return Err(ZeroWorkerError::BadMessage(format!(
                        "compute-task: run_id {run_id:?} is not an int"
                    )));
                }
                // A stock worker fetches every dependency held elsewhere and announces the
                // copy with add-keys before running the task; the fetch itself is
                // worker-to-worker and skipped here, the scheduler sees the same messages.
                for (dep_v, holders) in map(msg, op, "who_has")? {
                    let dep = key_of(dep_v, op)?;
                    if memory.contains(&dep) {
                        continue;
                    }
                    let here = holders
                        .as_array()
                        .is_some_and(|hs| hs.iter().any(|h| h.as_str() == Some(&self.address)));
                    if !here {
                        memory.insert(dep);
                        o.out.push(messages::add_keys(
                            dep_v,
                            messages::stimulus_id("gather-dep-success", now),
                        ));
                    }
                }
                memory.insert(key);
                o.out
                    .push(messages::task_finished(key_v, run_id, self.thread, now));
                o.finished += 1;
                o.computes += 1;
            }
            "free-keys" | "remove-replicas" => {
                // memory -> released sends release-worker-data (worker_state_machine.py:1924-1933);
                // keys not held need no answer.
                let stimulus = field(msg, op, "stimulus_id")?;
                for k in array(msg, op, "keys")? {
                    if memory.remove(&key_of(k, op)?) {
                        o.out
                            .push(messages::release_worker_data(k, stimulus.clone()));
                    }
                }
            }
            "acquire-replicas" => {
                for (k, _) in map(msg, op, "who_has")? {
                    if memory.insert(key_of(k, op)?) {
                        o.out.push(messages::add_keys(
                            k,
                            messages::stimulus_id("gather-dep-success", now),
                        ));
                    }
                }
            }
            "steal-request" => {
                // A task here is never queued or running, only finished or unknown.
                let k = field(msg, op, "key")?;
                let state = memory.contains(&key_of(k, op)?).then_some("memory");
                let stimulus = field(msg, op, "stimulus_id")?.clone();
                o.out.push(messages::steal_response(k, state, stimulus));
            }
            "worker-status-change" => {
                // The status setter confirms every change to the scheduler (worker.py:910-936).
                let status = field(msg, op, "status")?.as_str().ok_or_else(|| {
                    ZeroWorkerError::BadMessage("worker-status-change: status is not a str".into())
                })?;
                o.out.push(messages::worker_status_change(
                    status,
                    messages::stimulus_id("worker-status-change", now),
                ));
            }
            "close" => {
                let reason = msg
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("scheduler-close");
                o.stop = Some(Stop::Close(reason.to_string()));
            }
            "close-stream" => o.stop = Some(Stop::StreamClosed),
            // Nothing to cancel or fetch: every task already finished.
            "cancel-compute" | "refresh-who-has" | "remove-worker" | "shuffle-fail" => {}
            other => {
                return Err(ZeroWorkerError::BadMessage(format!(
                    "unknown stream op {other:?}"
                )))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "tcp://127.0.0.1:5000";

    fn compute(key: &str, run_id: i64, who_has: Vec<(&str, &str)>) -> Value {
        Value::map([
            ("op", Value::from("compute-task")),
            ("key", Value::from(key)),
            ("run_id", Value::Int(run_id)),
            ("priority", Value::Array(vec![Value::Int(0)])),
            ("stimulus_id", Value::from("compute-task-1")),
            (
                "who_has",
                Value::Map(
                    who_has
                        .iter()
                        .map(|(k, w)| (Value::from(*k), Value::Array(vec![Value::from(*w)])))
                        .collect(),
                ),
            ),
            ("nbytes", Value::Map(Vec::new())),
            ("run_spec", Value::Nil),
            ("resource_restrictions", Value::Nil),
            ("actor", Value::Bool(false)),
            ("annotations", Value::Map(Vec::new())),
            ("span_id", Value::Nil),
        ])
    }

    fn ops(o: &Outcome) -> Vec<&str> {
        o.out
            .iter()
            .filter_map(|m| m.get("op").and_then(Value::as_str))
            .collect()
    }

    #[test]
    fn compute_task_finishes_at_once_and_fetches_remote_deps() {
        let mut w = WorkerState::new(ME.into(), 1);
        let batch = Value::Array(vec![
            compute("a", 0, vec![]),
            compute("c", 1, vec![("a", ME), ("b", "tcp://other:1")]),
        ]);
        let o = w.handle_batch(batch, 5.0).expect("ok");
        assert_eq!(ops(&o), ["task-finished", "add-keys", "task-finished"]);
        assert_eq!((o.finished, o.computes), (2, 2));
        assert_eq!(o.out[2].get("run_id"), Some(&Value::Int(1)));
        assert_eq!(
            o.out[1].get("keys"),
            Some(&Value::Array(vec![Value::from("b")]))
        );
        assert_eq!(w.in_memory(), 3);
    }

    #[test]
    fn free_keys_release_only_held_keys() {
        let mut w = WorkerState::new(ME.into(), 1);
        w.handle_batch(compute("a", 0, vec![]), 1.0).expect("ok");
        let free = Value::map([
            ("op", Value::from("free-keys")),
            (
                "keys",
                Value::Array(vec![Value::from("a"), Value::from("zzz")]),
            ),
            ("stimulus_id", Value::from("client-releases-keys-1")),
        ]);
        let o = w.handle_batch(Value::Array(vec![free]), 2.0).expect("ok");
        assert_eq!(ops(&o), ["release-worker-data"]);
        assert_eq!(
            o.out[0].get("stimulus_id").and_then(Value::as_str),
            Some("client-releases-keys-1")
        );
        assert_eq!(w.in_memory(), 0);
    }

    #[test]
    fn steal_request_reports_memory_or_none() {
        let mut w = WorkerState::new(ME.into(), 1);
        w.handle_batch(compute("a", 0, vec![]), 1.0).expect("ok");
        let steal = |k: &str| {
            Value::map([
                ("op", Value::from("steal-request")),
                ("key", Value::from(k)),
                ("stimulus_id", Value::from("steal-1")),
            ])
        };
        let o = w
            .handle_batch(Value::Array(vec![steal("a"), steal("b")]), 2.0)
            .expect("ok");
        assert_eq!(
            o.out[0].get("state").and_then(Value::as_str),
            Some("memory")
        );
        assert_eq!(o.out[1].get("state"), Some(&Value::Nil));
        assert_eq!(
            o.out[1].get("stimulus_id").and_then(Value::as_str),
            Some("steal-1")
        );
    }

    #[test]
    fn acquire_replicas_announce_new_keys_once() {
        let mut w = WorkerState::new(ME.into(), 1);
        let acq = Value::map([
            ("op", Value::from("acquire-replicas")),
            (
                "who_has",
                Value::Map(vec![(
                    Value::Array(vec![Value::from("x"), Value::Int(0)]),
                    Value::Array(vec![Value::from("tcp://other:1")]),
                )]),
            ),
            ("nbytes", Value::Map(Vec::new())),
            ("stimulus_id", Value::from("acquire-1")),
        ]);
        let o = w.handle_batch(acq.clone(), 1.0).expect("ok");
        assert_eq!(ops(&o), ["add-keys"]);
        let o = w.handle_batch(acq, 1.0).expect("ok");
        assert!(o.out.is_empty());
    }

    #[test]
    fn close_and_unknown_ops() {
        let mut w = WorkerState::new(ME.into(), 1);
        let close = Value::map([
            ("op", Value::from("close")),
            ("reason", Value::from("scheduler-close")),
        ]);
        let o = w
            .handle_batch(Value::Array(vec![close, compute("a", 0, vec![])]), 1.0)
            .expect("ok");
        assert_eq!(o.stop, Some(Stop::Close("scheduler-close".into())));
        assert!(o.out.is_empty(), "nothing after close is handled");
        assert!(w
            .handle_batch(Value::map([("op", Value::from("bogus"))]), 1.0)
            .is_err());
        assert!(w.handle_batch(Value::Int(3), 1.0).is_err());
        let bad = Value::map([("op", Value::from("compute-task"))]);
        assert!(w.handle_batch(bad, 1.0).is_err());
    }
}
