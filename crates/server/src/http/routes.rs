//! The endpoint's paths and their handlers. A route is one row of
//! [`ROUTES`]; a handler gets the hub and the request and returns a
//! response, reading the hub's state as it is at that moment.

use serde_json::{json, Value};

use super::metrics;
use super::request::{Request, Response};
use crate::hub::Hub;
use crate::stats::Health;

/// A path served.
pub(super) struct Route {
    /// The exact path.
    pub path: &'static str,
    /// What it answers.
    pub handler: fn(&Hub, &Request) -> Response,
}

/// Every path the endpoint serves (GET and HEAD).
pub(super) const ROUTES: &[Route] = &[
    Route {
        path: "/metrics",
        handler: metrics_route,
    },
    Route {
        path: "/healthz",
        handler: healthz,
    },
    Route {
        path: "/api/status",
        handler: api_status,
    },
];

/// Answers one request.
pub(super) fn handle(hub: &Hub, req: &Request) -> Response {
    let Some(route) = ROUTES.iter().find(|r| r.path == req.path) else {
        let paths: Vec<&str> = ROUTES.iter().map(|r| r.path).collect();
        return Response::text(
            404,
            &format!(
                "no such path; this endpoint serves {} and the dashboard at /\n",
                paths.join(", ")
            ),
        );
    };
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = Response::text(405, "only GET and HEAD are served\n");
            r.headers.push("Allow: GET, HEAD".into());
            return r;
        }
    };
    let mut response = (route.handler)(hub, req);
    response.head_only = head_only;
    response
}

/// Prometheus metrics: OpenMetrics when the client asks for it in
/// `Accept` (Prometheus does), else the classic text format (what
/// `promtool check metrics` and older tools parse).
fn metrics_route(hub: &Hub, req: &Request) -> Response {
    let openmetrics = req
        .accept
        .as_deref()
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (text, content_type) = metrics::render(hub, openmetrics);
    Response::new(200, content_type, text.into_bytes())
}

/// 200 while serving, 503 while starting or stopping; the body says which.
fn healthz(hub: &Hub, _req: &Request) -> Response {
    let health = hub.ops.health.get();
    let status = if health == Health::Serving { 200 } else { 503 };
    Response::text(status, &format!("{}\n", health.as_str()))
}

/// What the control requests `status()`, `showchannel()` and
/// `showpeers()` answer, in one object (`peers` is null without the
/// network). Neither holds keys or payloads. Like every `/api/` route,
/// it needs the bearer token when `http.token` is set.
fn api_status(hub: &Hub, req: &Request) -> Response {
    if !super::dashboard::authorized(hub, req.authorization.as_deref()) {
        let mut r = Response::text(
            401,
            "a bearer token is required (Authorization: Bearer <http.token>)\n",
        );
        r.headers
            .push("WWW-Authenticate: Bearer realm=\"netcluster\"".into());
        return r;
    }
    let peers = crate::net::driver(hub).map_or(Value::Null, |n| n.peers_json());
    let body = json!({
        "status": crate::control::status(hub),
        "channels": crate::control::show_channel(hub, &Value::Null).unwrap_or(Value::Null),
        "peers": peers,
    });
    let mut text = serde_json::to_vec_pretty(&body).expect("a Value always serializes");
    text.push(b'\n');
    Response::new(200, "application/json", text)
}
