//! Worker and nanny plugins (`Scheduler.register_worker_plugin` and friends,
//! scheduler.py:8130-8190): the scheduler keeps each pickled plugin, opaque to rask, and
//! hands it to every worker (or nanny) now and to those that join later.

use rask_protocol::Value;
use std::sync::Arc;

/// Which kind of plugin: a `WorkerPlugin` runs in the worker, a `NannyPlugin` in its nanny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `WorkerPlugin`: sent as `plugin-add`/`plugin-remove` to the workers, and in the
    /// `register-worker` reply
    Worker,
    /// `NannyPlugin`: sent as `plugin_add`/`plugin_remove` to the workers' nannies, and in
    /// the `register_nanny` reply
    Nanny,
}

/// The plugin RPCs, and a stock nanny's `register_nanny` announcement.
#[derive(Debug, Clone)]
pub enum Rpc {
    /// `register_worker_plugin` / `register_nanny_plugin {plugin, name, idempotent}`
    Register {
        /// worker or nanny plugin
        kind: Kind,
        /// the pickled plugin, as the client sent it
        plugin: Value,
        /// its name
        name: Arc<str>,
        /// keep an already registered plugin of that name and answer `{}`
        idempotent: bool,
    },
    /// `unregister_worker_plugin` / `unregister_nanny_plugin {name}`
    Unregister {
        /// worker or nanny plugin
        kind: Kind,
        /// its name
        name: Arc<str>,
    },
    /// `register_nanny {address}` (`Scheduler.add_nanny`, scheduler.py:4802): a stock nanny
    /// is starting; the answer is the reply it gets, with the nanny plugins. Until
    /// [`Rpc::NannyStarted`], `register_nanny_plugin` waits for it.
    NannyStarting {
        /// the nanny's address
        address: Arc<str>,
    },
    /// The nanny that sent `register_nanny` has started its worker (or given up).
    NannyStarted {
        /// the nanny's address
        address: Arc<str>,
    },
}
