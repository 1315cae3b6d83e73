//! The scheduler's HTTP endpoint. Stock `dask scheduler` always serves HTTP (`/health`,
//! `/info`, `/metrics`, the dashboard) and advertises its port as `services.dashboard`;
//! `Client.dashboard_link` needs that port. rask serves `/health` and a plain status page
//! until its dashboard exists.

use crate::event::{Event, Handle};
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
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
