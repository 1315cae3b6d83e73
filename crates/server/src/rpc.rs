//! Request/reply ops (`Scheduler.handlers`, PROTOCOL.md §3(a)). Each returns the reply value
//! or an error that becomes Dask's `uncaught-error` reply.

use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::{now, Scheduler};
use crate::translate::{field, keys_field, opt_str, opt_str_list, pickled_exception, str_field};
use futures::future::join_all;
use rask_comm::{Comm, CommConfig};
use rask_core::{ClientId, Stimulus, WorkerId};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long the scheduler waits to reach a worker for `get_data`/`update_data`/`run`.
const WORKER_RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one request.
pub async fn dispatch(op: &str, msg: Value, ctx: &Arc<Ctx>) -> Result<Value, ServerError> {
    let h = &ctx.handle;
    match op {
        "identity" => {
            let n = msg.get("n_workers").and_then(Value::as_i64).unwrap_or(-1);
            h.call(move |s| s.identity(n)).await
        }
        "heartbeat_worker" => {
            let address = str_field(&msg, "address")?;
            let metrics = msg.get("metrics").cloned();
            h.call(move |s| heartbeat_worker(s, &address, metrics))
                .await
        }
        "gather" => gather(ctx, keys_field(&msg, "keys")?).await,
        "scatter" => scatter(ctx, msg).await,
        "update_data" => {
            let who_has = field(&msg, "who_has")?.clone();
            let nbytes = msg.get("nbytes").cloned().unwrap_or(Value::Nil);
            let client = opt_str(&msg, "client")?;
            h.call(move |s| {
                let id = client.and_then(|c| s.client_ids.get(&c).copied());
                apply_update_data(s, id, &who_has, &nbytes);
                Value::Nil
            })
            .await
        }
        "ncores" | "ncores_running" => {
            let only_running = op == "ncores_running";
            let filter = opt_str_list(&msg, "workers")?;
            h.call(move |s| {
                let mut out: Vec<(Value, Value)> = s
                    .core
                    .workers()
                    .filter(|(_, w)| !only_running || w.status == rask_core::WorkerStatus::Running)
                    .filter(|(_, w)| filter.as_ref().is_none_or(|f| f.contains(&w.address)))
                    .map(|(_, w)| {
                        (
                            Value::Str(w.address.clone()),
                            Value::from(w.nthreads as u64),
                        )
                    })
                    .collect();
                out.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
                Value::Map(out)
            })
            .await
        }
        "who_has" => {
            let keys = match msg.get("keys") {
                None | Some(Value::Nil) => {
                    h.call(|s| s.core.tasks().map(|(_, t)| t.key.clone()).collect())
                        .await?
                }
                Some(_) => keys_field(&msg, "keys")?,
            };
            let who_has = holders(ctx, keys).await?;
            Ok(Value::Map(
                who_has
                    .into_iter()
                    .map(|(k, a)| {
                        (
                            k.to_value(),
                            Value::Array(a.into_iter().map(Value::Str).collect()),
                        )
                    })
                    .collect(),
            ))
        }
        "has_what" | "processing" => {
            let processing = op == "processing";
            let filter = opt_str_list(&msg, "workers")?;
            h.call(move |s| {
                let mut out: Vec<(Value, Value)> = s
                    .core
                    .workers()
                    .filter(|(_, w)| filter.as_ref().is_none_or(|f| f.contains(&w.address)))
                    .map(|(_, w)| {
                        let ids = if processing {
                            &w.processing
                        } else {
                            &w.has_what
                        };
                        let keys = ids.iter().filter_map(|id| {
                            s.core
                                .tasks()
                                .find(|(i, _)| i == id)
                                .map(|(_, t)| t.key.to_value())
                        });
                        (Value::Str(w.address.clone()), Value::Array(keys.collect()))
                    })
                    .collect();
                out.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
                Value::Map(out)
            })
            .await
        }
        "nbytes" => {
            let summary = msg.get("summary").is_none_or(Value::truthy);
            h.call(move |s| {
                let mut out: FxHashMap<Key, i64> = FxHashMap::default();
                let mut order = Vec::new();
                for (_, t) in s
                    .core
                    .tasks()
                    .filter(|(_, t)| t.state == rask_core::TaskStatus::Memory)
                {
                    let k = if summary {
                        Key::Str(t.prefix.clone())
                    } else {
                        t.key.clone()
                    };
                    let e = out.entry(k.clone()).or_insert_with(|| {
                        order.push(k);
                        0
                    });
                    *e += t.nbytes;
                }
                Value::Map(
                    order
                        .into_iter()
                        .map(|k| {
                            let n = out.get(&k).copied().unwrap_or(0);
                            (k.to_value(), Value::Int(n))
                        })
                        .collect(),
                )
            })
            .await
        }
        "get_task_status" => {
            let keys = keys_field(&msg, "keys")?;
            h.call(move |s| {
                Value::Map(
                    keys.into_iter()
                        .map(|k| {
                            let st = s
                                .core
                                .task(&k)
                                .map_or(Value::Nil, |t| Value::from(t.state.as_str()));
                            (k.to_value(), st)
                        })
                        .collect(),
                )
            })
            .await
        }
        "versions" => h.call(|s| s.versions.clone()).await,
        "unregister" => {
            let address = str_field(&msg, "address")?;
            let close = msg.get("close").is_none_or(Value::truthy);
            let expected = msg.get("expected").is_some_and(Value::truthy);
            h.call(move |s| {
                let Some(w) = s.worker_by_address(&address) else {
                    return Value::from("already-removed");
                };
                if close {
                    s.close_worker(w, "scheduler-remove-worker".into());
                }
                s.remove_worker(w, expected, format!("unregister-{}", now()).into());
                Value::from("OK")
            })
            .await
        }
        "retry" => {
            let keys = keys_field(&msg, "keys")?;
            h.call(move |s| {
                let (_, touched) = s.core.retry_plan(&keys);
                s.stimulus(Stimulus::Retry {
                    keys,
                    stimulus_id: format!("retry-{}", now()).into(),
                });
                Value::Array(touched.iter().map(Key::to_value).collect())
            })
            .await
        }
        "broadcast" => broadcast(ctx, msg).await,
        "echo" => Ok(msg.get("data").cloned().unwrap_or(Value::Nil)),
        other => {
            if let Some(r) = crate::admin::dispatch(other, &msg, h, &ctx.comm).await {
                return r;
            }
            match crate::extensions::rpc(other, &msg, ctx).await {
                Some(r) => r,
                None => Err(ServerError::UnknownOp(format!(
                    "rask scheduler does not support the operation {other:?} yet"
                ))),
            }
        }
    }
}

fn heartbeat_worker(s: &mut Scheduler, address: &str, metrics: Option<Value>) -> Value {
    let Some(w) = s.worker_by_address(address) else {
        return Value::map([("status", Value::from("missing"))]);
    };
    let interval = s.heartbeat_interval();
    if let Some(info) = s.workers.get_mut(&w) {
        info.last_seen = now();
        if let Some(m) = metrics {
            info.metrics = m;
        }
    }
    Value::map([
        ("status", Value::from("OK")),
        ("time", Value::Float(now())),
        ("heartbeat-interval", Value::Float(interval)),
    ])
}

/// Applies `update_data` (`who_has: {key: [addr]}`, `nbytes: {key: int}`) on the state task.
pub fn apply_update_data(
    s: &mut Scheduler,
    client: Option<ClientId>,
    who_has: &Value,
    nbytes: &Value,
) {
    let Some(entries) = who_has.as_map() else {
        return;
    };
    let sizes: FxHashMap<Key, i64> = nbytes
        .as_map()
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| Some((Key::from_value(k)?, v.as_i64()?)))
        .collect();
    let data = entries
        .iter()
        .filter_map(|(k, addrs)| {
            let key = Key::from_value(k)?;
            let workers: Vec<WorkerId> = addrs
                .as_array()
                .unwrap_or_default()
                .iter()
                .filter_map(|a| s.worker_by_address(a.as_str()?))
                .collect();
            let n = sizes.get(&key).copied().unwrap_or(0);
            Some((key, workers, n))
        })
        .collect();
    s.stimulus(Stimulus::UpdateData {
        client,
        data,
        stimulus_id: format!("update-data-{}", now()).into(),
    });
}

/// Current holders of each key (empty for unknown keys).
async fn holders(ctx: &Arc<Ctx>, keys: Vec<Key>) -> Result<Vec<(Key, Vec<Arc<str>>)>, ServerError> {
    ctx.handle
        .call(move |s| {
            keys.into_iter()
                .map(|k| {
                    let addrs = s
                        .core
                        .task_id(&k)
                        .map(|id| s.core.who_has_addrs(id))
                        .unwrap_or_default();
                    (k, addrs)
                })
                .collect()
        })
        .await
}

/// `gather` (scheduler.py:6380-6420): fetch from holders with `get_data`, ack with `"OK"`,
/// relay the serialized values untouched. Keys a worker did not deliver are tried again
/// (another holder first) before they are reported missing.
async fn gather(ctx: &Arc<Ctx>, keys: Vec<Key>) -> Result<Value, ServerError> {
    let mut data: Vec<(Value, Value)> = Vec::with_capacity(keys.len());
    let mut missing: Vec<Key> = Vec::new();
    let mut pending = keys;
    for attempt in 0..3usize {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
        }
        let mut by_worker: FxHashMap<Arc<str>, Vec<Key>> = FxHashMap::default();
        for (k, addrs) in holders(ctx, std::mem::take(&mut pending)).await? {
            match addrs.get(attempt % addrs.len().max(1)) {
                Some(a) => by_worker.entry(a.clone()).or_default().push(k),
                None => missing.push(k),
            }
        }
        let results = join_all(by_worker.into_iter().map(|(addr, ks)| async move {
            let r = get_data(&addr, &ks, &ctx.comm).await;
            (addr, ks, r)
        }))
        .await;
        for (addr, ks, r) in results {
            match r {
                Ok(found) => {
                    let mut found: FxHashMap<Key, Value> = found
                        .into_iter()
                        .filter_map(|(k, v)| Some((Key::from_value(&k)?, v)))
                        .collect();
                    for k in ks {
                        match found.remove(&k) {
                            Some(v) => data.push((k.to_value(), v)),
                            None => pending.push(k),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = %addr, "get_data failed: {e}");
                    pending.extend(ks);
                }
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    missing.extend(pending);
    if !missing.is_empty() {
        return Ok(Value::map([
            ("status", Value::from("error")),
            (
                "keys",
                Value::Array(missing.iter().map(Key::to_value).collect()),
            ),
        ]));
    }
    Ok(Value::map([
        ("status", Value::from("OK")),
        ("data", Value::Map(data)),
    ]))
}

/// Worker `get_data`; retries while the worker answers `busy`.
async fn get_data(
    addr: &str,
    keys: &[Key],
    config: &CommConfig,
) -> Result<Vec<(Value, Value)>, ServerError> {
    let mut comm = Comm::connect(addr, WORKER_RPC_TIMEOUT, config).await?;
    let req = Value::map([
        ("op", Value::from("get_data")),
        (
            "keys",
            Value::Array(keys.iter().map(Key::to_value).collect()),
        ),
        ("who", Value::Nil),
        ("reply", Value::Bool(true)),
    ]);
    for attempt in 0..20u64 {
        let reply = tokio::time::timeout(WORKER_RPC_TIMEOUT, comm.request(&req))
            .await
            .map_err(|_| ServerError::Timeout(WORKER_RPC_TIMEOUT, "get_data"))??;
        match reply.get("status").and_then(Value::as_str) {
            Some("OK") => {
                // The worker holds the data for us until it sees this ack (worker.py:1690).
                comm.writer.write(&Value::from("OK")).await?;
                let data = reply
                    .get("data")
                    .and_then(Value::as_map)
                    .unwrap_or_default()
                    .to_vec();
                comm.close().await;
                return Ok(data);
            }
            Some("busy") => tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await,
            _ => {
                return Err(ServerError::Worker(
                    addr.into(),
                    format!("get_data replied {reply:?}"),
                ))
            }
        }
    }
    Err(ServerError::Worker(addr.into(), "stayed busy".into()))
}

/// `scatter` (scheduler.py:6335-6378): put client data on workers with `update_data`.
async fn scatter(ctx: &Arc<Ctx>, msg: Value) -> Result<Value, ServerError> {
    let data = match field(&msg, "data")? {
        Value::Map(m) => m.clone(),
        other => {
            return Err(ServerError::BadMessage(format!(
                "scatter: data must be a dict, not {}",
                other.type_name()
            )))
        }
    };
    let only = opt_str_list(&msg, "workers")?;
    let client = opt_str(&msg, "client")?;
    let broadcast = msg.get("broadcast").is_some_and(Value::truthy);
    let timeout = msg
        .get("timeout")
        .and_then(crate::translate::parse_timedelta)
        .unwrap_or(2.0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
    let targets: Vec<Arc<str>> = loop {
        let only = only.clone();
        let t: Vec<Arc<str>> = ctx
            .handle
            .call(move |s| {
                let mut v: Vec<Arc<str>> = s
                    .core
                    .workers()
                    .filter(|(_, w)| w.status == rask_core::WorkerStatus::Running)
                    .filter(|(_, w)| {
                        only.as_ref()
                            .is_none_or(|o| o.contains(&w.address) || o.contains(&w.name))
                    })
                    .map(|(_, w)| w.address.clone())
                    .collect();
                v.sort();
                v
            })
            .await?;
        if !t.is_empty() {
            break t;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServerError::Timeout(
                Duration::from_secs_f64(timeout),
                "workers to scatter to (No valid workers found)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut per_worker: Vec<Vec<(Value, Value)>> = vec![Vec::new(); targets.len()];
    for (i, (k, v)) in data.iter().enumerate() {
        if broadcast {
            for w in per_worker.iter_mut() {
                w.push((k.clone(), v.clone()));
            }
        } else {
            per_worker[i % targets.len()].push((k.clone(), v.clone()));
        }
    }
    let results = join_all(
        targets
            .iter()
            .zip(per_worker)
            .filter(|(_, d)| !d.is_empty())
            .map(|(addr, d)| async move {
                let keys: Vec<Value> = d.iter().map(|(k, _)| k.clone()).collect();
                let r = update_data(addr, d, &ctx.comm).await;
                (addr.clone(), keys, r)
            }),
    )
    .await;
    // Holders per key, in the order of `data` (a key sits on one worker, or on all of them
    // for a broadcast); sizes as the workers reported them.
    let position: FxHashMap<Key, usize> = data
        .iter()
        .enumerate()
        .filter_map(|(i, (k, _))| Some((Key::from_value(k)?, i)))
        .collect();
    let mut holders: Vec<Vec<Value>> = vec![Vec::new(); data.len()];
    let mut nbytes: Vec<(Value, Value)> = Vec::with_capacity(data.len());
    for (addr, keys, r) in results {
        // a broadcast key is reported by every worker; `apply_update_data` keeps one size
        nbytes.extend(r?);
        for k in keys {
            if let Some(i) = Key::from_value(&k).and_then(|k| position.get(&k).copied()) {
                holders[i].push(Value::Str(addr.clone()));
            }
        }
    }
    let who_has = Value::Map(
        data.iter()
            .zip(holders)
            .map(|((k, _), h)| (k.clone(), Value::Array(h)))
            .collect(),
    );
    let nbytes = Value::Map(nbytes);
    let keys: Vec<Value> = data.iter().map(|(k, _)| k.clone()).collect();
    ctx.handle
        .call(move |s| {
            let id = client.and_then(|c| s.client_ids.get(&c).copied());
            apply_update_data(s, id, &who_has, &nbytes);
        })
        .await?;
    Ok(Value::Array(keys))
}

async fn update_data(
    addr: &str,
    data: Vec<(Value, Value)>,
    config: &CommConfig,
) -> Result<Vec<(Value, Value)>, ServerError> {
    let mut comm = Comm::connect(addr, WORKER_RPC_TIMEOUT, config).await?;
    let reply = comm
        .request(&Value::map([
            ("op", Value::from("update_data")),
            ("data", Value::Map(data)),
            ("reply", Value::Bool(true)),
        ]))
        .await?;
    comm.close().await;
    match reply.get("status").and_then(Value::as_str) {
        Some("OK") => Ok(reply
            .get("nbytes")
            .and_then(Value::as_map)
            .unwrap_or_default()
            .to_vec()),
        _ => Err(ServerError::Worker(
            addr.into(),
            format!("update_data replied {reply:?}"),
        )),
    }
}

/// `broadcast` (scheduler.py): send one message to many workers (or their nannies) and
/// collect `{address: reply}`. `Client.run` uses it.
async fn broadcast(ctx: &Arc<Ctx>, msg: Value) -> Result<Value, ServerError> {
    let mut inner = field(&msg, "msg")?.clone();
    if !matches!(inner, Value::Map(_)) {
        return Err(ServerError::BadMessage(
            "broadcast: msg must be a dict".into(),
        ));
    }
    inner.set("close", Value::Bool(false));
    inner.set("reply", Value::Bool(true));
    let only = opt_str_list(&msg, "workers")?;
    let hosts = opt_str_list(&msg, "hosts")?;
    let nanny = msg.get("nanny").is_some_and(Value::truthy);
    let on_error = opt_str(&msg, "on_error")?.unwrap_or_else(|| "message".into());
    let targets: Vec<(Arc<str>, Option<Arc<str>>)> = ctx
        .handle
        .call(move |s| {
            let mut v: Vec<(Arc<str>, Option<Arc<str>>)> = s
                .core
                .workers()
                .filter(|(_, w)| only.as_ref().is_none_or(|o| o.contains(&w.address)))
                .filter(|(_, w)| hosts.as_ref().is_none_or(|h| h.contains(&w.host)))
                .map(|(id, w)| {
                    let nanny_addr = s
                        .workers
                        .get(&id)
                        .and_then(|i| i.nanny.as_str().map(Arc::from));
                    (w.address.clone(), nanny_addr)
                })
                .collect();
            v.sort();
            v
        })
        .await?;
    let results = join_all(targets.into_iter().map(|(addr, nanny_addr)| {
        let inner = inner.clone();
        async move {
            let dest = if nanny {
                nanny_addr.unwrap_or_else(|| addr.clone())
            } else {
                addr.clone()
            };
            let r = async {
                let mut comm = Comm::connect(&dest, WORKER_RPC_TIMEOUT, &ctx.comm).await?;
                let reply = comm.request(&inner).await?;
                comm.close().await;
                Ok::<Value, ServerError>(reply)
            }
            .await;
            (addr, r)
        }
    }))
    .await;
    let mut out = Vec::new();
    for (addr, r) in results {
        match r {
            Ok(v) => out.push((Value::Str(addr), v)),
            Err(e) => match &*on_error {
                "ignore" => {}
                "return" | "return_pickle" => out.push((
                    Value::Str(addr),
                    Value::Bin(pickled_exception("OSError", &e.to_string())),
                )),
                _ => return Err(e),
            },
        }
    }
    Ok(Value::Map(out))
}
