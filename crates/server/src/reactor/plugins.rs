//! Worker and nanny plugins (scheduler.py:8130-8190): the scheduler keeps each plugin,
//! pickled and opaque, by name; a registration goes to every current worker (or nanny) as
//! a `broadcast` job, and workers (nannies) that join later get them all in their
//! `register-worker` (`register_nanny`) reply (scheduler.py:4787, 4808).
//!
//! Scheduler plugins: rask has no Python `Scheduler` whose hooks a `SchedulerPlugin` could
//! use, but the stock plugins that do all their work in `start` (`Client.upload_file`'s
//! `SchedulerUploadFile`, `InstallPlugin`/`PipInstall`/`CondaInstall`, `UploadDirectory`)
//! are started in a graph helper, against a stand-in that registers their worker and
//! nanny plugins here by RPC; any other is refused.

use super::Scheduler;
use crate::error::{HelperError, RequestError};
use crate::event::{AfterHelper, Job, Replier, RpcResult};
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
    /// names of the scheduler plugins started (in a graph helper; `Scheduler.plugins`)
    scheduler: Vec<Arc<str>>,
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

    /// `register_scheduler_plugin` (scheduler.py:6242): a plugin of that name already
    /// started and `idempotent` is kept; otherwise a graph helper starts it.
    pub(super) fn register_scheduler_plugin(
        &mut self,
        plugin: Value,
        name: Option<Arc<str>>,
        idempotent: bool,
        to: Replier,
        out: &mut dyn Outbox,
    ) {
        if idempotent
            && name
                .as_ref()
                .is_some_and(|n| self.plugins.scheduler.contains(n))
        {
            return out.reply(to, Ok(Value::Nil));
        }
        let request = plugins::scheduler_plugin_start(plugin, name, &self.identity.address);
        out.start(Job::Helper {
            request,
            then: AfterHelper::SchedulerPlugin { reply: to },
        });
    }

    /// A graph helper ran (or refused) a scheduler plugin's `start`.
    pub(super) fn scheduler_plugin_started(
        &mut self,
        result: Result<Value, HelperError>,
    ) -> RpcResult {
        match plugins::scheduler_plugin_started(result.map_err(RequestError::from)?)? {
            plugins::Started::Ok(name) => {
                tracing::info!(%name, "Started scheduler plugin in a graph helper");
                // `add_plugin` (scheduler.py:6215): a new plugin of a known name replaces it
                if !self.plugins.scheduler.contains(&name) {
                    self.plugins.scheduler.push(name);
                }
                Ok(Value::Nil)
            }
            plugins::Started::Unsupported => Ok(rask_comm::reply::raised(
                "NotImplementedError",
                NO_SCHEDULER_PLUGINS,
            )),
            plugins::Started::Failed(error) => Ok(error),
        }
    }

    /// `unregister_scheduler_plugin` (`Scheduler.remove_plugin`, scheduler.py:6225): it
    /// forgets the plugin, calling none of its methods.
    pub(super) fn unregister_scheduler_plugin(&mut self, name: Option<&str>) -> Value {
        let known = name.and_then(|n| self.plugins.scheduler.iter().position(|s| &**s == n));
        match known {
            Some(i) => {
                self.plugins.scheduler.remove(i);
                Value::Nil
            }
            None => {
                let name = match name {
                    Some(n) => format!("'{n}'"),
                    None => "None".to_string(),
                };
                rask_comm::reply::raised(
                    "ValueError",
                    &format!("Could not find plugin {name} among the current scheduler plugins"),
                )
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

/// Why rask cannot take other scheduler plugins; the client raises this as
/// `NotImplementedError`.
const NO_SCHEDULER_PLUGINS: &str = "rask does not run scheduler plugins: it is a Rust scheduler \
     with no Python Scheduler object whose hooks (transition, add_worker, update_graph, ...) a \
     SchedulerPlugin could observe or change. Only the stock plugins that do all their work \
     when they start are run (client.upload_file, PipInstall, CondaInstall, InstallPlugin, \
     UploadDirectory). Use a WorkerPlugin (client.register_plugin(WorkerPlugin())) or the \
     event log (client.subscribe_topic / get_events) instead, or run the stock \
     `dask scheduler` if you need scheduler plugins.";
