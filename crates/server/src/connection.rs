//! One accepted connection (`Server._handle_comm`, `distributed/core.py:706-841`): a
//! sequence of `{"op": ...}` requests, each answered unless `reply=False`; the
//! registration ops turn it into a long-lived stream.

use crate::error::ServerError;
use crate::helper::HelperPool;
use crate::runtime::Handle;
use crate::{rpc, streams};
use rask_comm::tls::TlsError;
use rask_comm::{Accepted, Comm, CommConfig};
use rask_protocol::Value;
use std::sync::Arc;

/// What every connection task needs.
pub struct Ctx {
    /// the state task
    pub handle: Handle,
    /// graph helpers
    pub helpers: HelperPool,
    /// caps, timeouts and TLS of accepted connections
    pub comm: Arc<CommConfig>,
}

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
        // a process exits); thousands of them must not flood the log.
        Err(e) if is_disconnect(&e) => tracing::debug!(%peer, "connection closed: {e}"),
        // the connection logged these itself, naming the limit
        Err(ServerError::Comm(e)) if e.is_logged_limit() => {
            tracing::debug!(%peer, "connection closed: {e}")
        }
        Err(e) => tracing::warn!(%peer, "closing connection: {e}"),
    }
}

/// Whether `e` only says the peer went away.
fn is_disconnect(e: &ServerError) -> bool {
    matches!(e, ServerError::Comm(e) if e.is_disconnect())
}

/// A plain Dask peer on a `tls://` listener: answers its first request with an error it
/// can show its user (instead of a TLS alert it cannot parse and a retry loop until its
/// connect timeout), then closes. Nothing it sends is acted upon.
async fn refuse_plaintext(mut comm: Comm) -> Result<(), ServerError> {
    let refused = TlsError::PlainTcp;
    let text = refused.to_string();
    if let Ok(Ok(Some(mut msg))) =
        tokio::time::timeout(std::time::Duration::from_secs(5), comm.reader.read()).await
    {
        let reply = match msg.take("op").as_ref().and_then(Value::as_str) {
            // `Client._ensure_connected` raises the stream-start's "error"
            Some("register-client") => Value::Array(vec![Value::map([
                ("op", Value::from("stream-start")),
                ("error", Value::from(text)),
                ("warning", Value::from("")),
            ])]),
            // `Worker._register_with_scheduler` raises on a status other than "OK"
            Some("register-worker") => Value::map([
                ("status", Value::from("error")),
                ("message", Value::from(text)),
                ("time", Value::Float(crate::runtime::now())),
            ]),
            _ => crate::translate::raised("RuntimeError", &text),
        };
        let _ = comm.writer.write(&reply).await;
    }
    Err(rask_comm::CommError::from(refused).into())
}

/// The error reply Dask's `error_message` builds (`core.py:1596-1640`), with a pickled
/// exception so the client raises the right type.
pub fn error_reply(e: &ServerError) -> Value {
    let text = e.to_string();
    let kind = match e {
        ServerError::UnknownOp(_) => "ValueError",
        ServerError::BadMessage(_) | ServerError::Field(_) | ServerError::Comm(_) => "TypeError",
        ServerError::Timeout(..) => "TimeoutError",
        _ => "RuntimeError",
    };
    crate::translate::raised(kind, &text)
}

async fn serve_requests(mut comm: Comm, ctx: &Arc<Ctx>) -> Result<(), ServerError> {
    loop {
        let Some(mut msg) = comm.reader.read().await? else {
            return Ok(());
        };
        let op = match msg.take("op") {
            Some(Value::Str(op)) => op,
            _ if !matches!(msg, Value::Map(_)) => {
                let e = ServerError::BadMessage(format!(
                    "expected a dict with an 'op', got {}",
                    msg.type_name()
                ));
                let _ = comm.writer.write(&error_reply(&e)).await;
                return Err(e);
            }
            _ => {
                let e = ServerError::BadMessage("message has no 'op' string".into());
                let _ = comm.writer.write(&error_reply(&e)).await;
                return Err(e);
            }
        };
        let reply = msg.take("reply").is_none_or(|v| v.truthy());
        let close = msg.take("close").is_some_and(|v| v.truthy());
        msg.take("serializers");
        match &*op {
            "register-client" => return streams::client_stream(comm, msg, ctx.clone()).await,
            "register-worker" => return streams::worker_stream(comm, msg, ctx.clone()).await,
            "register_nanny" => {
                // The nanny reads our reply, then sends one status message once its worker
                // process started (scheduler.py:4802-4815).
                comm.writer
                    .write(&Value::map([
                        ("status", Value::from("OK")),
                        ("nanny-plugins", Value::Map(Vec::new())),
                    ]))
                    .await?;
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(600), comm.reader.read())
                        .await;
                return Ok(());
            }
            "close" => {
                if reply {
                    comm.writer.write(&Value::from("OK")).await?;
                }
                return Ok(());
            }
            _ => {}
        }
        match rpc::dispatch(&op, msg, ctx).await {
            Ok(v) => {
                if reply {
                    comm.writer.write(&v).await?;
                }
            }
            Err(e) => {
                tracing::warn!(peer = %comm.peer, %op, "request failed: {e}");
                comm.writer.write(&error_reply(&e)).await?;
                if e.is_peer_fault() {
                    return Ok(());
                }
            }
        }
        if close {
            return Ok(());
        }
    }
}
