//! The state task's side of the plugin host (docs/plugin-host.md): scheduler plugins,
//! `run_on_scheduler` with `dask_scheduler`, progress-bar feeds and `performance_report`
//! run in a Python process beside the scheduler, on a mirror of its state.
//!
//! The host is *active* while it holds a plugin, runs a feed or has a request in flight;
//! only then does the core report every transition and the state task stream the changes
//! (the first of them the whole state, `reset`). Changes gathered while handling one event
//! leave as one batch at its end, in the order they were made; a request to the host is
//! sent after the changes that came before it.

use super::Scheduler;
use crate::error::{HelperError, RequestError};
use crate::event::{AfterHost, Job, Replier};
use crate::outbox::Outbox;
use crate::plugin_host::{HostNote, HostReply, ToHost};
use crate::translate::{host, reply};
use rask_core::{Command, TaskStatus};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What the state task keeps about the plugin host.
#[derive(Default)]
pub(super) struct HostState {
    /// scheduler plugins clients registered, in order, to register again in a new host
    registered: Vec<(Arc<str>, Value)>,
    /// how many plugins the host holds (its last word)
    plugins: usize,
    /// open feeds
    feeds: FxHashSet<i64>,
    next_feed: i64,
    /// requests in flight
    in_flight: usize,
    /// the host has the state and hears of every change
    active: bool,
    /// changes not yet sent
    pending: Vec<Value>,
    /// `--preload`: the host keeps the state for as long as the scheduler runs (a preload
    /// may read the scheduler at any time, as a dask-gateway-like server does)
    always: bool,
    /// the `task-finished`/`task-erred` being handled, with its fields: the kwargs of its
    /// transition's hooks
    pub(super) current: Option<(Key, Value)>,
}

impl HostState {
    /// Whether changes are being streamed.
    pub(super) fn active(&self) -> bool {
        self.active
    }
}

impl Scheduler {
    /// The host runs preloads: it has the state from the start, and always.
    pub fn keep_host_active(&mut self) {
        self.host.always = true;
        self.host_activate();
    }

    /// The host must have the state: the core reports transitions from now on, and the
    /// host first gets all of it.
    fn host_activate(&mut self) {
        if self.host.active {
            return;
        }
        self.host.active = true;
        self.core.set_report_transitions(true);
        self.ext.events.mirror = true;
        let tasks = self
            .core
            .tasks()
            .map(|(id, t)| host::task(&self.core, id, t))
            .collect();
        let workers = self
            .core
            .workers()
            .map(|(id, w)| host::worker(w, self.nanny_of(id)))
            .collect();
        let clients = self.core_client_names();
        self.host.pending = vec![host::reset(tasks, workers, clients)];
    }

    /// Nothing runs in the host any more: the changes stop (the host drops its mirror).
    fn host_maybe_idle(&mut self) {
        let h = &mut self.host;
        if h.active && !h.always && h.plugins == 0 && h.feeds.is_empty() && h.in_flight == 0 {
            h.active = false;
            h.current = None;
            h.pending.push(host::drop_state());
            self.core.set_report_transitions(false);
            self.ext.events.mirror = false;
            self.ext.events.published.clear();
        }
    }

    /// A change for the host's mirror, if it keeps one.
    pub(super) fn host_event(&mut self, make: impl FnOnce(&Scheduler) -> Value) {
        let at = self.host.pending.len();
        self.host_event_at(at, make);
    }

    /// A change that goes before those from `mark` on ([`Scheduler::host_mark`]): a hook
    /// the stock scheduler calls before the transitions of the same stimulus.
    pub(super) fn host_event_at(&mut self, mark: usize, make: impl FnOnce(&Scheduler) -> Value) {
        if self.host.active {
            let event = make(self);
            let at = mark.min(self.host.pending.len());
            self.host.pending.insert(at, event);
        }
    }

    /// Sends the changes gathered so far.
    pub(super) fn host_flush(&mut self, out: &mut dyn Outbox) {
        if !self.host.pending.is_empty() {
            out.to_host(ToHost::Events(std::mem::take(&mut self.host.pending)));
        }
    }

    /// A request to the host, after the changes before it.
    fn host_request(&mut self, request: Value, then: AfterHost, out: &mut dyn Outbox) {
        self.host_send(|reply| ToHost::Request { request, reply }, then, out);
    }

    /// Sends what `message` makes of the reply's sender, after the changes before it, and
    /// waits for the reply as a job.
    fn host_send(
        &mut self,
        message: impl FnOnce(oneshot::Sender<HostReply>) -> ToHost,
        then: AfterHost,
        out: &mut dyn Outbox,
    ) {
        self.host.in_flight += 1;
        self.host_flush(out);
        let (tx, rx) = oneshot::channel();
        out.to_host(message(tx));
        out.start(Job::Host { reply: rx, then });
    }

    /// `update_graph`'s hooks, before the transitions of its stimulus (whose changes
    /// start at `mark`): the graph's tasks as they are now, as new ones.
    pub(super) fn host_graph(
        &mut self,
        mark: usize,
        client: rask_core::ClientId,
        keys: &[Key],
        tasks: &[Key],
        sid: &Arc<str>,
    ) {
        if !self.host.active {
            return;
        }
        let Some(client) = self.core.client(client).map(|c| c.name.clone()) else {
            return;
        };
        let records = tasks
            .iter()
            .filter_map(|k| {
                let id = self.core.task_id(k)?;
                let mut t = host::task(&self.core, id, self.core.task_by_id(id)?);
                // its transitions follow, from released
                t.set("state", Value::from("released"));
                t.set("who_has", Value::Array(Vec::new()));
                t.set("processing_on", Value::Nil);
                Some(t)
            })
            .collect();
        self.host_event_at(mark, |_| host::graph(&client, keys, records, sid));
    }

    /// Where the next change goes (for [`Scheduler::host_graph`]).
    pub(super) fn host_mark(&self) -> usize {
        self.host.pending.len()
    }

    /// The core's transition notes, as `transition` events.
    pub(super) fn host_transitions(&mut self, commands: &[Command]) {
        if !self.host.active {
            return;
        }
        for c in commands {
            if let Command::Transition(note) = c {
                let kwargs = match &self.host.current {
                    Some((key, record))
                        if *key == note.key
                            && note.start == TaskStatus::Processing
                            && matches!(note.finish, TaskStatus::Memory | TaskStatus::Erred) =>
                    {
                        Some(record.clone())
                    }
                    _ => None,
                };
                self.host.pending.push(host::transition(note, kwargs));
            }
        }
    }

    /// The names of the core's clients (pseudo-clients included, as in Dask's `clients`).
    fn core_client_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.client_ids.keys().cloned().collect();
        names.sort();
        names
    }

    /// A worker's nanny address, if it has one.
    pub(super) fn nanny_of(&self, id: rask_core::WorkerId) -> Option<&str> {
        self.workers.get(&id)?.registration.nanny.as_str()
    }

    // ---- requests --------------------------------------------------------------------------

    /// `register_scheduler_plugin` (scheduler.py:6242): a plugin of that name already
    /// registered and `idempotent` is kept; otherwise the host starts it and adds it.
    pub(super) fn register_scheduler_plugin(
        &mut self,
        plugin: Value,
        name: Option<Arc<str>>,
        idempotent: bool,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        let known = |n: &Arc<str>| self.host.registered.iter().any(|(r, _)| r == n);
        if idempotent && name.as_ref().is_some_and(known) {
            return out.reply(to, Ok(Value::Nil));
        }
        self.host_activate();
        let request = host::register(plugin.clone(), name, idempotent);
        let then = AfterHost::Register {
            plugin,
            reply: Some(to),
        };
        self.host_request(request, then, out);
    }

    /// `unregister_scheduler_plugin` (`Scheduler.remove_plugin`, scheduler.py:6225).
    pub(super) fn unregister_scheduler_plugin(
        &mut self,
        name: Option<Arc<str>>,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        match name {
            Some(name) if self.host.plugins > 0 => self.host_request(
                host::unregister(&name),
                AfterHost::Unregister { name, reply: to },
                out,
            ),
            name => {
                let name = name.map_or("None".to_string(), |n| format!("'{n}'"));
                let msg =
                    format!("Could not find plugin {name} among the current scheduler plugins");
                out.reply(to, Ok(rask_comm::reply::raised("ValueError", &msg)));
            }
        }
    }

    /// `run_function` of a function that takes `dask_scheduler` (the graph helper said so):
    /// it runs in the host, on the facade.
    pub(super) fn run_on_facade(&mut self, request: Value, to: Replier, out: &mut dyn Outbox) {
        self.host_activate();
        let then = AfterHost::Relay {
            run_function: true,
            reply: to,
        };
        self.host_request(request, then, out);
    }

    /// `performance_report` (scheduler.py:8270): the stock report, made in the host.
    pub(super) fn performance_report(&mut self, request: Value, to: Replier, out: &mut dyn Outbox) {
        self.host_activate();
        let then = AfterHost::Relay {
            run_function: false,
            reply: to,
        };
        self.host_request(request, then, out);
    }

    /// `feed` (scheduler.py:7788): its responses go to `responses`; the reply (once its
    /// `setup` ran) is the feed's number, for [`Scheduler::feed_closed`].
    pub(super) fn feed_open(
        &mut self,
        request: Value,
        responses: mpsc::UnboundedSender<Value>,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        self.host.next_feed += 1;
        let feed = self.host.next_feed;
        self.host.feeds.insert(feed);
        self.host_activate();
        let request = host::feed_start(feed, request);
        self.host_send(
            |reply| ToHost::Feed {
                request,
                reply,
                responses,
            },
            AfterHost::Feed { feed, reply: to },
            out,
        );
    }

    /// The feed's connection closed: its `teardown` runs.
    pub(super) fn feed_closed(&mut self, feed: i64, out: &mut dyn Outbox) {
        if self.host.feeds.remove(&feed) {
            self.host_request(host::feed_stop(feed), AfterHost::FeedStopped, out);
        }
    }

    // ---- the host's answers ----------------------------------------------------------------

    pub(super) fn host_done(
        &mut self,
        result: Result<Value, HelperError>,
        then: AfterHost,
        out: &mut dyn Outbox,
    ) {
        self.host.in_flight = self.host.in_flight.saturating_sub(1);
        let answer = result
            .map_err(RequestError::from)
            .and_then(host::for_client);
        match then {
            AfterHost::Register { plugin, reply } => {
                let answer = match answer {
                    Ok((true, r)) => {
                        if let Some(name) = r.get("name").and_then(Value::as_str) {
                            let name: Arc<str> = name.into();
                            tracing::info!(%name, "Registered scheduler plugin");
                            match self.host.registered.iter_mut().find(|(n, _)| *n == name) {
                                Some(slot) => slot.1 = plugin,
                                None => self.host.registered.push((name, plugin)),
                            }
                        }
                        Ok(Value::Nil)
                    }
                    Ok((false, r)) => Ok(r),
                    Err(e) => Err(e),
                };
                match (reply, answer) {
                    (Some(to), answer) => out.reply(to, answer),
                    (None, Ok(Value::Nil)) => {}
                    (None, Ok(r)) => tracing::error!(
                        "a scheduler plugin failed to start again in the new plugin host: {}",
                        r.get("exception_text")
                            .and_then(|t| t.as_str())
                            .unwrap_or("?")
                    ),
                    (None, Err(e)) => tracing::error!(
                        "a scheduler plugin could not be registered again in the new plugin \
                         host: {e}"
                    ),
                }
            }
            AfterHost::Unregister { name, reply } => {
                if matches!(answer, Ok((true, _))) {
                    self.host.registered.retain(|(n, _)| *n != name);
                }
                out.reply(reply, answer.map(|(ok, r)| if ok { Value::Nil } else { r }));
            }
            AfterHost::Relay {
                run_function,
                reply: to,
            } => {
                let answer = answer.and_then(|(ok, mut r)| {
                    if run_function {
                        if !ok {
                            // `run_function` answers its error as the worker's `run` does
                            r.set("status", Value::from("error"));
                        }
                        reply::run_function(r)
                    } else if ok {
                        Ok(r.take("html").unwrap_or(Value::Nil))
                    } else {
                        Ok(r)
                    }
                });
                out.reply(to, answer);
            }
            AfterHost::Feed { feed, reply: to } => {
                let started = matches!(answer, Ok((true, _)));
                if !started {
                    self.host.feeds.remove(&feed);
                }
                out.reply(
                    to,
                    answer.map(|(ok, r)| if ok { Value::Int(feed) } else { r }),
                );
            }
            AfterHost::FeedStopped => {}
        }
        self.host_maybe_idle();
    }

    /// The host's news.
    pub(super) fn host_note(&mut self, note: HostNote, out: &mut dyn Outbox) {
        match note {
            HostNote::Plugins(n) => {
                self.host.plugins = n;
                // plugins added in the host itself (a preload's, a function's
                // `add_plugin`) hear of every change from now on
                if n > 0 {
                    self.host_activate();
                }
                self.host_maybe_idle();
            }
            HostNote::Died { status } => {
                // its mirror and feeds are gone; its plugins are registered again
                self.host.active = false;
                self.host.plugins = 0;
                self.host.feeds.clear();
                self.host.pending.clear();
                self.host.current = None;
                self.core.set_report_transitions(false);
                self.ext.events.mirror = false;
                self.ext.events.published.clear();
                let registered = self.host.registered.clone();
                if self.host.always {
                    // the new host runs the preloads again, on the state
                    self.host_activate();
                }
                if registered.is_empty() {
                    return;
                }
                tracing::error!(
                    plugins = registered.len(),
                    "the plugin host died ({status}): its scheduler plugins are registered \
                     again in a new one; they missed what happened meanwhile"
                );
                self.host_activate();
                for (name, plugin) in registered {
                    let request = host::register(plugin.clone(), Some(name), false);
                    let then = AfterHost::Register {
                        plugin,
                        reply: None,
                    };
                    self.host_request(request, then, out);
                }
            }
        }
    }
}
