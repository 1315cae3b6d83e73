//! The scheduler's HTTP endpoint. Stock `dask scheduler` always serves HTTP (`/health`,
//! `/info`, `/metrics`, the dashboard) and advertises its port as `services.dashboard`;
//! `Client.dashboard_link` needs that port. rask serves `/health`, a plain status page, the
//! JSON routes (`distributed/http/scheduler/json.py`) and the API the Kubernetes operator
//! scales through (`distributed/http/scheduler/api.py`; on by default here, where the stock
//! scheduler needs it enabled in its configuration).

use crate::error::RequestError;
use crate::event::{Event, Handle};
use crate::messages::{cluster, Rpc};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rask_protocol::Value;
use tokio::net::TcpListener;

/// Binds `host:port`; if the port is taken, falls back to a free one as Dask does.
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    match TcpListener::bind((host, port)).await {
        Ok(l) => Ok(l),
        Err(e) if port != 0 => {
            tracing::warn!("dashboard port {port} unavailable ({e}); using a free port instead");
            TcpListener::bind((host, 0)).await
        }
        Err(e) => Err(e),
    }
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, handle: Handle) {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/", get(status))
        .route("/status", get(status))
        .route("/json/identity.json", get(identity))
        .route("/json/index.html", get(json_index))
        .route("/api/v1", get(|| async { "API V1" }))
        .route("/api/v1/get_workers", get(get_workers))
        .route("/api/v1/adaptive_target", get(adaptive_target))
        .route("/api/v1/check_idle", get(check_idle))
        .route("/api/v1/retire_workers", post(retire_workers))
        .with_state(handle);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("http server stopped: {e}");
    }
}

async fn status(State(handle): State<Handle>) -> Html<String> {
    let text = match handle.ask(Event::Snapshot).await {
        Ok(s) => format!(
            "<h1>rask scheduler</h1><p>{}</p><p>workers: {} &middot; threads: {} &middot; \
             clients: {} &middot; tasks: {}</p><p>The rask dashboard is not written yet.</p>",
            s.address, s.workers, s.threads, s.clients, s.tasks
        ),
        Err(_) => "shutting down".into(),
    };
    Html(text)
}

// ---- JSON routes (json.py) --------------------------------------------------------------------

/// An answer of the state task as JSON; an error as the stock handlers' 500.
fn json_reply(answer: Result<serde_json::Value, RequestError>) -> Response {
    match answer {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal_error(&e.to_string()),
    }
}

/// The stock handlers' answer when they raise (`set_status(500)`, api.py).
fn internal_error(why: &str) -> Response {
    tracing::warn!("HTTP API request failed: {why}");
    let body = serde_json::json!({"Error": "Internal Server Error"});
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

/// `/json/identity.json`: `Scheduler.identity()`.
async fn identity(State(handle): State<Handle>) -> Response {
    let answer = handle.rpc(Rpc::Identity { n_workers: -1 }).await;
    json_reply(answer.map(|v| to_json(&v)))
}

/// `/json/index.html`: the JSON routes.
async fn json_index() -> Html<&'static str> {
    Html(
        "<html><head><title>Index of JSON routes</title></head><body>\
         <h1>Index of JSON routes</h1><ul>\
         <li><a href=\"identity.json\">identity.json</a></li>\
         </ul></body></html>",
    )
}

// ---- the API (api.py) -------------------------------------------------------------------------

/// `/api/v1/get_workers`: `{"num_workers", "workers": [{"name", "address"}]}`, in the order
/// the workers joined.
async fn get_workers(State(handle): State<Handle>) -> Response {
    let answer = handle.rpc(Rpc::Identity { n_workers: -1 }).await;
    json_reply(answer.map(|identity| {
        let workers: Vec<serde_json::Value> = identity
            .get("workers")
            .and_then(Value::as_map)
            .unwrap_or_default()
            .iter()
            .map(|(address, info)| {
                serde_json::json!({
                    "name": info.get("name").map_or(serde_json::Value::Null, to_json),
                    "address": to_json(address),
                })
            })
            .collect();
        serde_json::json!({"num_workers": workers.len(), "workers": workers})
    }))
}

/// `/api/v1/adaptive_target`: `{"workers": Scheduler.adaptive_target()}`.
async fn adaptive_target(State(handle): State<Handle>) -> Response {
    let request = Rpc::Cluster(cluster::Rpc::AdaptiveTarget {
        target_duration: None,
    });
    let answer = handle.rpc(request).await;
    json_reply(answer.map(|v| serde_json::json!({"workers": to_json(&v)})))
}

/// `/api/v1/check_idle`: `{"idle_since": Scheduler.check_idle()}`.
async fn check_idle(State(handle): State<Handle>) -> Response {
    let answer = handle.rpc(Rpc::Cluster(cluster::Rpc::CheckIdle)).await;
    json_reply(answer.map(|v| serde_json::json!({"idle_since": to_json(&v)})))
}

/// `POST /api/v1/retire_workers` with `{"n": N}` (the workers `workers_to_close` picks) or
/// `{"workers": [address, ...]}`: `retire_workers`' answer, `{address: worker info}`.
async fn retire_workers(State(handle): State<Handle>, body: String) -> Response {
    let params: serde_json::Value = match serde_json::from_str(&body) {
        Ok(p) => p,
        Err(e) => return internal_error(&format!("retire_workers: the body is not JSON: {e}")),
    };
    let n = params
        .get("n")
        .and_then(serde_json::Value::as_i64)
        .filter(|n| *n != 0);
    let workers = match n {
        Some(_) => None,
        None => Some(
            params
                .get("workers")
                .and_then(serde_json::Value::as_array)
                .map(|ws| {
                    ws.iter()
                        .filter_map(|w| w.as_str().map(Into::into))
                        .collect()
                })
                .unwrap_or_default(),
        ),
    };
    let request = Rpc::RetireWorkers {
        workers,
        names: None,
        n,
        close_workers: false,
        remove: true,
        stimulus_id: format!("retire-workers-{}", crate::translate::now()).into(),
    };
    json_reply(handle.rpc(request).await.map(|v| to_json(&v)))
}

/// A reply as JSON: the identity for `--scheduler-file` (`json.dump(self.identity())`) and
/// the HTTP routes' answers (tornado's `write(dict)`).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.to_string()),
        Value::Bin(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Opaque(_) => J::Null,
    }
}
