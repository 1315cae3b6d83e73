//! One accepted connection (`Server._handle_comm`, `distributed/core.py:706-841`): a
//! sequence of `{"op": ...}` requests, each looked up in the op table and answered unless
//! `reply=False`; the registration ops turn it into a long-lived stream.

use crate::error::{Invalid, RequestError};
use crate::messages::{plugins, Rpc};
use crate::ops::{self, ConnectionOp, Serve};
use crate::session::{ConnectionError, Ctx};
use crate::streams;
use crate::translate::{client, reply, worker};
use rask_comm::tls::TlsError;
use rask_comm::{Accepted, Comm, CommError};
use rask_protocol::Value;
use std::sync::Arc;
use std::time::Duration;

/// Serves one connection until the peer closes it, errs, or it becomes a stream that ends.
pub async fn handle_connection(stream: tokio::net::TcpStream, ctx: Arc<Ctx>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let result = async {
        match Comm::accept_listener(stream, &ctx.comm).await? {
            Accepted::Ready(comm) => serve_requests(comm, &ctx).await,
            Accepted::Plaintext(comm) => refuse_plaintext(comm).await,
        }
    }
    .await;
    match result {
        Ok(()) => {}
        // A peer going away is ordinary (Dask closes pooled connections with a reset when
        // a process exits); thousands of them must not flood the log. The connection
        // logged the limits it enforced itself, naming them.
        Err(ConnectionError::Comm(e)) if e.is_disconnect() || e.is_logged_limit() => {
            tracing::debug!(%peer, "connection closed: {e}")
        }
        Err(e) => tracing::warn!(%peer, "closing connection: {e}"),
    }
}

/// A plain Dask peer on a `tls://` listener: answers its first request with an error it
/// can show its user (instead of a TLS alert it cannot parse and a retry loop until its
/// connect timeout), then closes. Nothing it sends is acted upon.
async fn refuse_plaintext(mut comm: Comm) -> Result<(), ConnectionError> {
    let refused = TlsError::PlainTcp;
    let text = refused.to_string();
    if let Ok(Ok(Some(msg))) =
        tokio::time::timeout(Duration::from_secs(5), comm.reader.read()).await
    {
        let answer = match msg.get("op").and_then(Value::as_str) {
            // `Client._ensure_connected` raises the stream-start's "error"
            Some("register-client") => Value::Array(vec![client::stream_start("", &text)]),
            // `Worker._register_with_scheduler` raises on a status other than "OK"
            Some("register-worker") => worker::refused(&text),
            _ => rask_comm::reply::raised("RuntimeError", &text),
        };
        let _ = comm.writer.write(&answer).await;
    }
    Err(CommError::from(refused).into())
}

/// Answers `e` to the peer; the connection ends if the peer was at fault.
async fn answer_error(comm: &mut Comm, op: &str, e: RequestError) -> Result<bool, ConnectionError> {
    tracing::warn!(peer = %comm.peer, %op, "request failed: {e}");
    comm.writer.write(&reply::error(&e)).await?;
    if e.is_peer_fault() {
        return Err(e.into());
    }
    Ok(true)
}

async fn serve_requests(mut comm: Comm, ctx: &Arc<Ctx>) -> Result<(), ConnectionError> {
    loop {
        let Some(mut msg) = comm.reader.read().await? else {
            return Ok(());
        };
        let op = match msg.take("op") {
            Some(Value::Str(op)) => op,
            _ => {
                let e = if matches!(msg, Value::Map(_)) {
                    Invalid::NoOp
                } else {
                    Invalid::NotADict(msg.type_name())
                };
                answer_error(&mut comm, "?", e.into()).await?;
                continue;
            }
        };
        let wants_reply = msg.take("reply").is_none_or(|v| v.truthy());
        let close = msg.take("close").is_some_and(|v| v.truthy());
        // core.py:761,788: `serializers` goes back in only for the handlers that take it;
        // `gather` and `broadcast` pass it on to the workers (scheduler.py:6404, 6699), and
        // `run_function` serializes its result with it (worker.py `run`, core.py:816)
        let serializers = msg.take("serializers");
        if let Some(s) =
            serializers.filter(|_| matches!(&*op, "gather" | "broadcast" | "run_function"))
        {
            msg.set("serializers", s);
        }
        let Some(entry) = ops::rpc_op(&op) else {
            let e = RequestError::UnknownOp {
                kind: "RPC",
                op: op.to_string(),
            };
            answer_error(&mut comm, &op, e).await?;
            continue;
        };
        let request = match entry.serve {
            Serve::Connection(ConnectionOp::RegisterClient) => {
                return streams::client_stream(comm, msg, ctx.clone()).await
            }
            Serve::Connection(ConnectionOp::RegisterWorker) => {
                return streams::worker_stream(comm, msg, ctx.clone()).await
            }
            Serve::Connection(ConnectionOp::RegisterNanny) => {
                match rask_comm::fields::str_field(&msg, "address") {
                    Ok(address) => return register_nanny(comm, address, ctx).await,
                    Err(e) => Err(e.into()),
                }
            }
            Serve::Connection(ConnectionOp::SubscribeWorkerStatus) => {
                return streams::worker_status_stream(comm, ctx.clone()).await
            }
            Serve::Connection(ConnectionOp::Feed) => {
                return streams::feed_stream(comm, &msg, ctx.clone()).await
            }
            Serve::Connection(ConnectionOp::Close | ConnectionOp::CloseStream) => {
                if wants_reply {
                    comm.writer.write(&Value::from("OK")).await?;
                }
                return Ok(());
            }
            Serve::NotSupported(reason) => Err(RequestError::NotSupported {
                op: entry.name,
                reason,
            }),
            Serve::Rpc(parse) => parse(&msg),
            // the RPC table has no stream ops
            Serve::Client(_) | Serve::Worker(_) => Err(RequestError::UnknownOp {
                kind: "RPC",
                op: op.to_string(),
            }),
        };
        let then = request.as_ref().ok().and_then(Rpc::after_answer);
        let answer = match request {
            Ok(request) => ctx.handle.rpc(request).await,
            Err(e) => Err(e),
        };
        // a failed request has nothing to follow it
        let then = then.filter(|_| answer.is_ok());
        match answer {
            Ok(v) if wants_reply => comm.writer.write(&v).await?,
            Ok(_) => {}
            Err(e) => {
                answer_error(&mut comm, &op, e).await?;
            }
        }
        if let Some(then) = then {
            // what could fail was the first half's, already answered
            let _ = ctx.handle.rpc(then).await;
        }
        if close {
            return Ok(());
        }
    }
}

/// `register_nanny` (`Scheduler.add_nanny`, scheduler.py:4802-4815): the nanny reads our
/// reply with the nanny plugins, runs them, then sends one status message once its worker
/// process started. Meanwhile it counts as starting, and `register_nanny_plugin` waits
/// for it so that it does not miss a plugin registered in between.
async fn register_nanny(
    mut comm: Comm,
    address: Arc<str>,
    ctx: &Arc<Ctx>,
) -> Result<(), ConnectionError> {
    let starting = Rpc::Plugins(plugins::Rpc::NannyStarting {
        address: address.clone(),
    });
    let answer = ctx.handle.rpc(starting).await;
    let written = match answer {
        Ok(reply) => comm.writer.write(&reply).await,
        Err(e) => comm.writer.write(&reply::error(&e)).await,
    };
    if written.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(600), comm.reader.read()).await;
    }
    let _ = ctx
        .handle
        .rpc(Rpc::Plugins(plugins::Rpc::NannyStarted { address }))
        .await;
    written.map_err(Into::into)
}
