//! The coordination extensions' messages: published datasets (`publish.py`), `Variable`
//! (`variable.py`), `Queue` (`queues.py`), `Event` (`event.py`), `Semaphore`/`Lock`
//! (`semaphore.py`) and `MultiLock` (`multi_lock.py`).

use rask_protocol::{Key, Value};
use std::sync::Arc;

/// A stored value: msgpack data or a future's key.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// plain data, stored and returned as it came
    Msgpack(Value),
    /// a future: the scheduler keeps its key alive
    Future(Key),
}

/// `queue_get(batch=...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// one item, waiting for it
    One,
    /// every item there is now, without waiting
    All,
    /// this many items, waiting for each
    N(i64),
}

/// The coordination extensions' RPCs.
#[derive(Debug, Clone)]
pub enum Rpc {
    /// `publish_put {names, keys, data, override, client, uid}`
    PublishPut {
        /// dataset names
        names: Vec<Key>,
        /// per dataset, the keys it holds
        keys: Vec<Vec<Key>>,
        /// per dataset, its data
        data: Vec<Value>,
        /// replace an existing dataset
        override_: bool,
        /// the publishing client
        client: Option<Arc<str>>,
        /// pairs this request with the client's `publish_flush_batched_send`
        uid: Key,
    },
    /// `publish_get {names}`
    PublishGet {
        /// dataset names
        names: Vec<Key>,
    },
    /// `publish_list`
    PublishList,
    /// `publish_delete {names, client, uid}`
    PublishDelete {
        /// dataset names
        names: Vec<Key>,
        /// the deleting client
        client: Option<Arc<str>>,
        /// pairs this request with the client's `publish_flush_batched_send`
        uid: Key,
    },
    /// `publish_put {keys, data, name, override, client}` of distributed <= 2026.3.0
    /// (`publish.py:46` there): one dataset, no flush wait (the client awaited
    /// `publish_wait_flush` first); replies `{"status": "OK", "name": name}`.
    PublishPutOne {
        /// the dataset name
        name: Key,
        /// the keys it holds
        keys: Vec<Key>,
        /// its data
        data: Value,
        /// replace an existing dataset
        override_: bool,
    },
    /// `publish_get {name, client}` of distributed <= 2026.3.0: the dataset or None.
    PublishGetOne {
        /// the dataset name
        name: Key,
    },
    /// `publish_delete {name}` of distributed <= 2026.3.0: no flush wait.
    PublishDeleteOne {
        /// the dataset name
        name: Key,
    },
    /// `publish_wait_flush {uid}` of distributed <= 2026.3.0 (`publish.py:43` there):
    /// answers once the client's `publish_flush_batched_send` with this uid is in.
    PublishWaitFlush {
        /// the uid of the client's flush
        uid: Key,
    },
    /// `variable_set {name, data | key, timeout}`
    VariableSet {
        /// the variable
        name: Key,
        /// the value
        record: Record,
        /// seconds to wait for a future's key to be known
        timeout: Option<f64>,
        /// when the state task first saw the request (it polls for the key)
        since: Option<f64>,
    },
    /// `variable_get {name, timeout}`
    VariableGet {
        /// the variable
        name: Key,
        /// seconds to wait for it to be set
        timeout: Option<f64>,
    },
    /// `queue_create {name, maxsize}`
    QueueCreate {
        /// the queue
        name: Key,
        /// 0: unbounded
        maxsize: usize,
    },
    /// `queue_put {name, data | key, timeout}`
    QueuePut {
        /// the queue
        name: Key,
        /// the item
        record: Record,
        /// seconds to wait for room (and for a future's key to be known)
        timeout: Option<f64>,
        /// when the state task first saw the request (it polls for the key)
        since: Option<f64>,
    },
    /// `queue_get {name, timeout, batch}`
    QueueGet {
        /// the queue
        name: Key,
        /// seconds to wait for an item
        timeout: Option<f64>,
        /// how many
        batch: Batch,
    },
    /// `queue_qsize {name}`
    QueueQsize {
        /// the queue
        name: Key,
    },
    /// `event_set {name}`
    EventSet {
        /// the event
        name: Key,
    },
    /// `event_clear {name}`
    EventClear {
        /// the event
        name: Key,
    },
    /// `event_is_set {name}`
    EventIsSet {
        /// the event
        name: Key,
    },
    /// `event_wait {name, timeout}`
    EventWait {
        /// the event
        name: Key,
        /// seconds
        timeout: Option<f64>,
    },
    /// `semaphore_register {name, max_leases, lease_timeout}`
    SemaphoreRegister {
        /// the semaphore
        name: Key,
        /// leases it hands out at once
        max_leases: i64,
        /// seconds without a refresh after which a lease expires
        lease_timeout: Option<f64>,
    },
    /// `semaphore_acquire {name, lease_id, timeout}`
    SemaphoreAcquire {
        /// the semaphore
        name: Key,
        /// the lease
        lease_id: Arc<str>,
        /// seconds
        timeout: Option<f64>,
    },
    /// `semaphore_release {name, lease_id}`
    SemaphoreRelease {
        /// the semaphore
        name: Key,
        /// the lease
        lease_id: Arc<str>,
    },
    /// `semaphore_refresh_leases {name, lease_ids}`
    SemaphoreRefreshLeases {
        /// the semaphore
        name: Key,
        /// the leases
        lease_ids: Vec<Arc<str>>,
    },
    /// `semaphore_value {name}`: leases held
    SemaphoreValue {
        /// the semaphore
        name: Key,
    },
    /// `semaphore_close {name}`
    SemaphoreClose {
        /// the semaphore
        name: Key,
    },
    /// `multi_lock_acquire {locks, id, num_locks, timeout}`
    MultiLockAcquire {
        /// lock names
        locks: Vec<Arc<str>>,
        /// the MultiLock
        id: Arc<str>,
        /// how many of the locks it needs
        num_locks: i64,
        /// seconds
        timeout: Option<f64>,
    },
    /// `multi_lock_release {id}`
    MultiLockRelease {
        /// the MultiLock
        id: Arc<str>,
    },
}

/// The coordination extensions' client stream ops.
#[derive(Debug, Clone)]
pub enum ClientOp {
    /// `publish_flush_batched_send {uid}`: the client's stream caught up to an RPC
    PublishFlush {
        /// the RPC's uid
        uid: Key,
    },
    /// `variable-future-received-confirm {name, key, token}`
    VariableConfirm {
        /// the variable
        name: Key,
        /// the future's key
        key: Key,
        /// the token `variable_get` handed out
        token: Option<Arc<str>>,
    },
    /// `variable_delete {name}`
    VariableDelete {
        /// the variable
        name: Key,
    },
    /// `queue-future-release {name, key}`: a getter took its own hold on the key
    QueueFutureRelease {
        /// the queue
        name: Key,
        /// the future's key
        key: Key,
    },
    /// `queue_release {name}`: a `Queue` object went away
    QueueRelease {
        /// the queue
        name: Key,
    },
}
