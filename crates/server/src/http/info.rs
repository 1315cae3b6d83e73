//! The info pages (`distributed/http/scheduler/info.py`): plain HTML tables of the
//! workers, one worker, one task, and the scheduler's and a worker's logs. Server-rendered
//! text, so they work without JavaScript and read well with `curl`.

use super::{App, Watch};
use crate::event::Event;
use crate::messages::{inspect, Rpc};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use rask_protocol::Value;
use serde_json::Value as J;
use std::fmt::Write;

/// Text made safe for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A path segment made safe for a URL (`tornado.escape.url_escape`).
fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A page with the dashboard's navigation bar.
fn page(app: &App, title: &str, body: &str) -> Response {
    let p = &app.pages.prefix;
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:0}}nav{{background:#2b2b2b;padding:8px 16px}}\
         nav a{{color:#eee;margin-right:16px;text-decoration:none}}main{{padding:16px}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:4px 8px;\
         text-align:left;font-size:13px}}pre{{font-size:12px}}</style></head><body>\
         <nav><a href=\"{p}/status\"><b>rask</b></a><a href=\"{p}/status\">Status</a>\
         <a href=\"{p}/workers\">Workers</a><a href=\"{p}/tasks\">Tasks</a>\
         <a href=\"{p}/info/main/workers.html\">Info</a></nav><main><h1>{title}</h1>{body}\
         </main></body></html>",
        title = esc(title),
    ))
    .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404: Not Found").into_response()
}

/// The name in `/info/<kind>/<name>.html`.
fn html_name(name: &str) -> Option<&str> {
    name.strip_suffix(".html")
}

/// `/info/main/workers.html`: every worker, with links to its page and its logs.
pub(super) async fn workers(State(app): State<App>) -> Response {
    let Ok(picture) = app
        .handle
        .ask(|reply| Event::Watch(Watch::Dashboard { since: None, reply }))
        .await
    else {
        return not_found();
    };
    let p = &app.pages.prefix;
    let mut body = String::from(
        "<table><tr><th>Worker</th><th>Name</th><th>Threads</th><th>Memory</th>\
         <th>Memory limit</th><th>Processing</th><th>Stored</th><th>Logs</th></tr>",
    );
    for w in picture["workers"].as_array().into_iter().flatten() {
        let addr = w["address"].as_str().unwrap_or("");
        let _ = write!(
            body,
            "<tr><td><a href=\"{p}/info/worker/{u}.html\">{a}</a></td><td>{name}</td>\
             <td>{threads}</td><td>{mem}</td><td>{limit}</td><td>{proc}</td><td>{stored}</td>\
             <td><a href=\"{p}/info/logs/{u}.html\">logs</a></td></tr>",
            u = url_escape(addr),
            a = esc(addr),
            name = esc(w["name"].as_str().unwrap_or("")),
            threads = w["nthreads"],
            mem = w["memory"],
            limit = w["memory_limit"],
            proc = w["processing"],
            stored = w["stored"],
        );
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<p><a href=\"{p}/info/main/logs.html\">Scheduler logs</a></p>"
    );
    page(&app, "Workers", &body)
}

/// `/info/worker/<address>.html`: what the worker said about itself (its identity).
pub(super) async fn worker(State(app): State<App>, Path(name): Path<String>) -> Response {
    let Some(addr) = html_name(&name) else {
        return not_found();
    };
    let Ok(identity) = app.handle.rpc(Rpc::Identity { n_workers: -1 }).await else {
        return not_found();
    };
    let Some(info) = identity.get("workers").and_then(|w| w.get(addr)) else {
        return not_found();
    };
    let mut body = String::from("<table>");
    for (k, v) in info.as_map().unwrap_or_default() {
        let _ = write!(
            body,
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(&k.as_str().map_or_else(|| format!("{k:?}"), str::to_string)),
            esc(&super::to_json(v).to_string())
        );
    }
    let _ = write!(
        body,
        "</table><p><a href=\"{}/info/logs/{}.html\">Logs</a></p>",
        app.pages.prefix,
        url_escape(addr)
    );
    page(&app, &format!("Worker: {addr}"), &body)
}

/// `/info/task/<key>.html`: a task's state, placement and neighbours.
pub(super) async fn task(State(app): State<App>, Path(name): Path<String>) -> Response {
    let Some(key) = html_name(&name) else {
        return not_found();
    };
    let key = key.to_string();
    let Ok(Some(info)) = app
        .handle
        .ask(|reply| {
            Event::Watch(Watch::Task {
                key: key.clone(),
                reply,
            })
        })
        .await
    else {
        return not_found();
    };
    let p = &app.pages.prefix;
    // a link to the info page of a task or worker
    let link = |kind: &str, v: &J| {
        let v = v.as_str().unwrap_or("");
        format!(
            "<a href=\"{p}/info/{kind}/{}.html\">{}</a>",
            url_escape(v),
            esc(v)
        )
    };
    let link_task = |k: &J| link("task", k);
    let link_worker = |w: &J| link("worker", w);
    let list = |v: &J, f: &dyn Fn(&J) -> String| -> String {
        v.as_array()
            .into_iter()
            .flatten()
            .map(f)
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let mut body = String::from("<table>");
    for field in [
        "key",
        "prefix",
        "group",
        "state",
        "priority",
        "nbytes",
        "retries",
        "suspicious",
    ] {
        let v = &info[field];
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        let _ = write!(body, "<tr><th>{field}</th><td>{}</td></tr>", esc(&text));
    }
    let processing = match &info["processing_on"] {
        J::Null => String::new(),
        w => link_worker(w),
    };
    let _ = write!(
        body,
        "<tr><th>processing_on</th><td>{processing}</td></tr>\
         <tr><th>who_has</th><td>{}</td></tr><tr><th>dependencies</th><td>{}</td></tr>\
         <tr><th>dependents</th><td>{}</td></tr></table>",
        list(&info["who_has"], &link_worker),
        list(&info["dependencies"], &link_task),
        list(&info["dependents"], &link_task),
    );
    page(&app, &format!("Task: {key}"), &body)
}

/// Log lines `[level, text]` as a preformatted block.
fn log_lines(lines: &Value) -> String {
    let mut out = String::from("<pre>");
    for line in lines.as_array().unwrap_or_default() {
        let parts = line.as_array().unwrap_or_default();
        let text: Vec<String> = parts
            .iter()
            .map(|p| {
                p.as_str()
                    .map_or_else(|| super::to_json(p).to_string(), str::to_string)
            })
            .collect();
        out.push_str(&esc(&text.join(" ")));
        out.push('\n');
    }
    out.push_str("</pre>");
    out
}

/// `/info/main/logs.html`: the scheduler's recent log lines.
pub(super) async fn logs(State(app): State<App>) -> Response {
    let request = Rpc::Inspect(inspect::Rpc::Logs {
        start: 0.0,
        n: None,
        timestamps: false,
    });
    match app.handle.rpc(request).await {
        Ok(lines) => page(&app, "Logs", &log_lines(&lines)),
        Err(_) => not_found(),
    }
}

/// `/info/logs/<address>.html`: a worker's recent log lines (asked of the worker).
pub(super) async fn worker_logs(State(app): State<App>, Path(name): Path<String>) -> Response {
    let Some(addr) = html_name(&name) else {
        return not_found();
    };
    let request = Rpc::Inspect(inspect::Rpc::WorkerLogs {
        n: Value::Nil,
        workers: Some(vec![addr.into()]),
        nanny: false,
    });
    match app.handle.rpc(request).await {
        Ok(answer) => match answer.get(addr) {
            Some(lines) => page(&app, &format!("Logs: {addr}"), &log_lines(lines)),
            None => not_found(),
        },
        Err(_) => not_found(),
    }
}
