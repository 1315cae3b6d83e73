//! The scheduler's HTTP endpoint. Stock `dask scheduler` always serves HTTP (`/health`,
//! `/info`, `/metrics`, the dashboard) and advertises its port as `services.dashboard`;
//! `Client.dashboard_link` needs that port. rask serves the same routes: `/health`,
//! `/metrics` (the stock families and rask's own), the JSON routes
//! (`distributed/http/scheduler/json.py`), the info pages (`info.py`), the API the
//! Kubernetes operator scales through (`api.py`; on by default here, where the stock
//! scheduler needs it enabled in its configuration), and a live dashboard built into the
//! binary (`assets/dashboard/`: no Bokeh, no CDN) that updates by server-sent events.

use crate::error::RequestError;
use crate::event::{Event, Handle, Watch};
use crate::messages::{cluster, Rpc};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rask_protocol::Value;
use std::sync::Arc;
use tokio::net::TcpListener;

mod info;

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

/// Which pages the HTTP server serves, and under which prefix.
#[derive(Debug, Clone, Default)]
pub struct Pages {
    /// the dashboard's pages (off with `--no-dashboard`)
    pub dashboard: bool,
    /// `--dashboard-prefix`, normalized: empty or `/name` without a trailing slash
    pub prefix: String,
}

/// The dashboard's pages: path (under the prefix) and the title `/individual-plots.json`
/// gives the single panels.
const DASHBOARD_PAGES: [(&str, &str); 9] = [
    ("status", ""),
    ("workers", ""),
    ("tasks", ""),
    ("individual-task-stream", "Individual Task Stream"),
    ("individual-progress", "Individual Progress"),
    ("individual-workers-memory", "Individual Workers Memory"),
    ("individual-nprocessing", "Individual Nprocessing"),
    ("individual-workers", "Individual Workers"),
    ("individual-cluster-counters", "Individual Cluster Counters"),
];

/// The routes that are always served, for `/sitemap.json`.
const ROUTES: [&str; 18] = [
    "/health",
    "/metrics",
    "/sitemap.json",
    "/json/counts.json",
    "/json/identity.json",
    "/json/index.html",
    "/api/v1",
    "/api/v1/get_workers",
    "/api/v1/adaptive_target",
    "/api/v1/check_idle",
    "/api/v1/retire_workers",
    "/info",
    "/info/main/workers.html",
    "/info/main/logs.html",
    "/info/worker/(.*).html",
    "/info/task/(.*).html",
    "/info/logs/(.*).html",
    "/individual-plots.json",
];

#[derive(Clone)]
struct App {
    handle: Handle,
    pages: Arc<Pages>,
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, handle: Handle, pages: Pages) {
    let prefix = pages.prefix.clone();
    let app = App {
        handle,
        pages: Arc::new(pages),
    };
    let mut routes = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/sitemap.json", get(sitemap))
        .route("/json/counts.json", get(counts))
        .route("/json/identity.json", get(identity))
        .route("/json/index.html", get(json_index))
        .route("/api/v1", get(|| async { "API V1" }))
        .route("/api/v1/get_workers", get(get_workers))
        .route("/api/v1/adaptive_target", get(adaptive_target))
        .route("/api/v1/check_idle", get(check_idle))
        .route("/api/v1/retire_workers", post(retire_workers))
        .route(
            "/info",
            get(|State(app): State<App>| async move { redirect(&app, "/info/main/workers.html") }),
        )
        .route("/info/main/workers.html", get(info::workers))
        .route("/info/main/logs.html", get(info::logs))
        .route("/info/worker/{*name}", get(info::worker))
        .route("/info/task/{*name}", get(info::task))
        .route("/info/logs/{*name}", get(info::worker_logs))
        .route("/individual-plots.json", get(individual_plots));
    if app.pages.dashboard {
        routes = routes
            .route(
                "/",
                get(|State(app): State<App>| async move { redirect(&app, "/status") }),
            )
            .route(
                "/dashboard/dashboard.js",
                get(|| async { asset(DASHBOARD_JS, "text/javascript") }),
            )
            .route(
                "/dashboard/dashboard.css",
                get(|| async { asset(DASHBOARD_CSS, "text/css") }),
            )
            .route("/dashboard/state.json", get(dashboard_state))
            .route("/dashboard/events", get(dashboard_events));
        for (page, _) in DASHBOARD_PAGES {
            routes = routes.route(
                &format!("/{page}"),
                get(move |State(app): State<App>| async move { dashboard_page(&app, page) }),
            );
        }
    }
    let router: Router = if prefix.is_empty() {
        routes.with_state(app)
    } else if app.pages.dashboard {
        // `/` still leads to the dashboard, as Dask's prefix redirect does
        Router::new()
            .nest(&prefix, routes)
            .route(
                "/",
                get(move |State(app): State<App>| async move { redirect(&app, "/status") }),
            )
            .with_state(app)
    } else {
        Router::new().nest(&prefix, routes).with_state(app)
    };
    if let Err(e) = axum::serve(listener, router).await {
        tracing::warn!("http server stopped: {e}");
    }
}

/// A redirect to `path` under the prefix.
fn redirect(app: &App, path: &str) -> Response {
    axum::response::Redirect::to(&format!("{}{path}", app.pages.prefix)).into_response()
}

/// A stored asset with its content type.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

// ---- the dashboard (assets/dashboard/) ----------------------------------------------------------

const DASHBOARD_HTML: &str = include_str!("../assets/dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../assets/dashboard/dashboard.css");

/// A dashboard page: the one document, told its page and prefix.
fn dashboard_page(app: &App, page: &str) -> Response {
    let html = DASHBOARD_HTML
        .replace("__RASK_PREFIX__", &app.pages.prefix)
        .replace("__RASK_PAGE__", page);
    Html(html).into_response()
}

/// How often a dashboard gets a new picture.
const DASHBOARD_PERIOD: std::time::Duration = std::time::Duration::from_millis(500);

/// `/dashboard/state.json`: the picture now, with the recent task stream.
async fn dashboard_state(State(app): State<App>) -> Response {
    let answer = app
        .handle
        .ask(|reply| {
            Event::Watch(Watch::Dashboard {
                since: Some(0),
                reply,
            })
        })
        .await;
    json_reply(answer)
}

/// `/dashboard/events`: a picture every [`DASHBOARD_PERIOD`] as server-sent events, each
/// with the task stream's records since the previous one. Ends when the scheduler does.
async fn dashboard_events(State(app): State<App>) -> Response {
    let tick = tokio::time::interval(DASHBOARD_PERIOD);
    let stream = futures::stream::unfold(
        (app.handle.clone(), 0, tick),
        |(handle, since, mut tick)| async move {
            tick.tick().await;
            let picture = handle
                .ask(|reply| {
                    Event::Watch(Watch::Dashboard {
                        since: Some(since),
                        reply,
                    })
                })
                .await
                .ok()?;
            let since = picture["stream"]["index"].as_i64().unwrap_or(since);
            let event = axum::response::sse::Event::default().data(picture.to_string());
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (handle, since, tick),
            ))
        },
    );
    axum::response::sse::Sse::new(stream)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response()
}

/// `/individual-plots.json`: title -> path of each single panel (for JupyterLab).
async fn individual_plots(State(app): State<App>) -> Response {
    let mut plots = serde_json::Map::new();
    if app.pages.dashboard {
        for (page, title) in DASHBOARD_PAGES.iter().filter(|(_, t)| !t.is_empty()) {
            plots.insert(
                (*title).into(),
                format!("{}/{page}", app.pages.prefix).into(),
            );
        }
    }
    Json(plots).into_response()
}

/// `/sitemap.json`: `{"paths": [...]}`, every route, sorted.
async fn sitemap(State(app): State<App>) -> Response {
    let mut paths: Vec<String> = ROUTES
        .iter()
        .map(|r| format!("{}{r}", app.pages.prefix))
        .collect();
    if app.pages.dashboard {
        for (page, _) in DASHBOARD_PAGES {
            paths.push(format!("{}/{page}", app.pages.prefix));
        }
        for path in [
            "/",
            "/dashboard/dashboard.js",
            "/dashboard/dashboard.css",
            "/dashboard/state.json",
            "/dashboard/events",
        ] {
            paths.push(format!("{}{path}", app.pages.prefix));
        }
    }
    paths.sort();
    Json(serde_json::json!({ "paths": paths })).into_response()
}

/// `/metrics`: the stock scheduler's families and rask's, in Prometheus' text format.
async fn metrics(State(app): State<App>) -> Response {
    match app.handle.ask(|tx| Event::Watch(Watch::Metrics(tx))).await {
        Ok(families) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            crate::monitor::encode(&families),
        )
            .into_response(),
        Err(e) => internal_error(&e.to_string()),
    }
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

/// `/json/counts.json`: task and worker counts (json.py `CountsJSON`).
async fn counts(State(app): State<App>) -> Response {
    json_reply(app.handle.ask(|tx| Event::Watch(Watch::Counts(tx))).await)
}

/// `/json/identity.json`: `Scheduler.identity()`.
async fn identity(State(App { handle, .. }): State<App>) -> Response {
    let answer = handle.rpc(Rpc::Identity { n_workers: -1 }).await;
    json_reply(answer.map(|v| to_json(&v)))
}

/// `/json/index.html`: the JSON routes.
async fn json_index() -> Html<&'static str> {
    Html(
        "<html><head><title>Index of JSON routes</title></head><body>\
         <h1>Index of JSON routes</h1><ul>\
         <li><a href=\"counts.json\">counts.json</a></li>\
         <li><a href=\"identity.json\">identity.json</a></li>\
         </ul></body></html>",
    )
}

// ---- the API (api.py) -------------------------------------------------------------------------

/// `/api/v1/get_workers`: `{"num_workers", "workers": [{"name", "address"}]}`, in the order
/// the workers joined.
async fn get_workers(State(App { handle, .. }): State<App>) -> Response {
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
async fn adaptive_target(State(App { handle, .. }): State<App>) -> Response {
    let request = Rpc::Cluster(cluster::Rpc::AdaptiveTarget {
        target_duration: None,
    });
    let answer = handle.rpc(request).await;
    json_reply(answer.map(|v| serde_json::json!({"workers": to_json(&v)})))
}

/// `/api/v1/check_idle`: `{"idle_since": Scheduler.check_idle()}`.
async fn check_idle(State(App { handle, .. }): State<App>) -> Response {
    let answer = handle.rpc(Rpc::Cluster(cluster::Rpc::CheckIdle)).await;
    json_reply(answer.map(|v| serde_json::json!({"idle_since": to_json(&v)})))
}

/// `POST /api/v1/retire_workers` with `{"n": N}` (the workers `workers_to_close` picks) or
/// `{"workers": [address, ...]}`: `retire_workers`' answer, `{address: worker info}`.
async fn retire_workers(State(App { handle, .. }): State<App>, body: String) -> Response {
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
