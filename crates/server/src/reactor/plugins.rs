//! Worker and nanny plugins (scheduler.py:8130-8190): the scheduler keeps each plugin,
//! pickled and opaque, by name; a registration goes to every current worker (or nanny) as
//! a `broadcast` job, and workers (nannies) that join later get them all in their
//! `register-worker` (`register_nanny`) reply (scheduler.py:4787, 4808).
//!
//! Scheduler plugins run in the plugin host (`host.rs`).

use super::Scheduler;
use crate::event::{Job, Replier};
use crate::messages::plugins::{Kind, Rpc};
use crate::messages::OnError;
use crate::outbox::Outbox;
use crate::translate::{plugins, reply};
use rask_protocol::Value;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// The registered plugins, in registration order (a dict in Dask).
#[derive(Default)]
pub(super) struct Plugins {
    /// `Scheduler.worker_plugins`: name -> pickled `WorkerPlugin`
    worker: Vec<(Arc<str>, Value)>,
    /// `Scheduler.nanny_plugins`: name -> pickled `NannyPlugin`
    nanny: Vec<(Arc<str>, Value)>,
    /// `Scheduler._starting_nannies`: nannies between `register_nanny` and their worker's
    /// start (a count per address, as one address may register again)
    starting_nannies: FxHashMap<Arc<str>, usize>,
    /// nanny-plugin registrations waiting for the starting nannies (scheduler.py:8167)
    waiting: Vec<(Arc<str>, Value, Replier)>,
}

impl Plugins {
    /// The plugins registered at start: the stock scheduler's P2P shuffle plugin
    /// (`ShuffleSchedulerPlugin.start` registers it like any other worker plugin, so a
    /// user can unregister or replace it).
    pub(super) fn new(worker_plugins: &Value) -> Plugins {
        let worker = match worker_plugins {
            Value::Map(entries) => entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().map(Arc::from)?, v.clone())))
                .collect(),
            _ => Vec::new(),
        };
        Plugins {
            worker,
            ..Plugins::default()
        }
    }

    /// `worker-plugins` of the `register-worker` reply.
    pub(super) fn worker_plugins(&self) -> Value {
        plugins::plugin_map(&self.worker)
    }

    fn of(&mut self, kind: Kind) -> &mut Vec<(Arc<str>, Value)> {
        match kind {
            Kind::Worker => &mut self.worker,
            Kind::Nanny => &mut self.nanny,
        }
    }
}

impl Scheduler {
    /// Serves a plugin RPC.
    pub(super) fn plugins_rpc(&mut self, r: Rpc, to: Replier, out: &mut dyn Outbox) {
        match r {
            Rpc::Register {
                kind,
                plugin,
                name,
                idempotent,
            } => {
                tracing::info!(%name, ?kind, "Registering plugin");
                let registered = self.plugins.of(kind);
                match registered.iter_mut().find(|(n, _)| *n == name) {
                    // scheduler.py:8135: an idempotent plugin already there is kept
                    Some(_) if idempotent => return out.reply(to, Ok(Value::Map(Vec::new()))),
                    // a dict assignment: same place, new plugin
                    Some(slot) => slot.1 = plugin.clone(),
                    None => registered.push((name.clone(), plugin.clone())),
                }
                if kind == Kind::Nanny && !self.plugins.starting_nannies.is_empty() {
                    // scheduler.py:8167: a nanny that got the plugins before this one
                    // and has not started its worker yet would miss it.
                    tracing::info!(
                        nannies = self.plugins.starting_nannies.len(),
                        "Waiting for Nannies to start"
                    );
                    self.plugins.waiting.push((name, plugin, to));
                    return;
                }
                let msg = plugins::plugin_add(kind, &name, &plugin);
                self.send_to_plugin_hosts(kind, msg, to, out);
            }
            Rpc::Unregister { kind, name } => {
                let registered = self.plugins.of(kind);
                let Some(i) = registered.iter().position(|(n, _)| *n == name) else {
                    return out.reply(to, Ok(plugins::unknown_plugin(kind, &name)));
                };
                registered.remove(i);
                let msg = plugins::plugin_remove(kind, &name);
                self.send_to_plugin_hosts(kind, msg, to, out);
            }
            Rpc::NannyStarting { address } => {
                *self.plugins.starting_nannies.entry(address).or_default() += 1;
                let plugins = plugins::plugin_map(&self.plugins.nanny);
                out.reply(to, Ok(reply::nanny_registered(plugins)));
            }
            Rpc::NannyStarted { address } => {
                if let Some(n) = self.plugins.starting_nannies.get_mut(&address) {
                    *n -= 1;
                    if *n == 0 {
                        self.plugins.starting_nannies.remove(&address);
                    }
                }
                out.reply(to, Ok(Value::Nil));
                if self.plugins.starting_nannies.is_empty() {
                    for (name, plugin, to) in std::mem::take(&mut self.plugins.waiting) {
                        let msg = plugins::plugin_add(Kind::Nanny, &name, &plugin);
                        self.send_to_plugin_hosts(Kind::Nanny, msg, to, out);
                    }
                }
            }
        }
    }

    /// `broadcast(msg)` to every worker, or `broadcast(msg, nanny=True)` to the nanny of
    /// every worker that has one (scheduler.py:6681); the answer is `{worker address:
    /// reply}`. A worker's or nanny's error reply (a plugin whose `setup` raised; rask
    /// worker's nanny, which runs no Python and so no nanny plugin) is passed on as it is:
    /// the client raises it.
    fn send_to_plugin_hosts(&self, kind: Kind, msg: Value, to: Replier, out: &mut dyn Outbox) {
        let mut targets: Vec<(Arc<str>, Arc<str>)> = self
            .core
            .workers()
            .filter_map(|(id, w)| {
                let dest = match kind {
                    Kind::Worker => w.address.clone(),
                    Kind::Nanny => Arc::from(self.workers.get(&id)?.registration.nanny.as_str()?),
                };
                Some((w.address.clone(), dest))
            })
            .collect();
        targets.sort();
        out.start(Job::Broadcast {
            targets,
            msg,
            on_error: OnError::Raise,
            reply: to,
        });
    }
}
