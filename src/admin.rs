//! The admin listener (plain HTTP; keep it on loopback): `/metrics`,
//! `/healthz`, `/readyz`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::app::State;

pub struct AdminApp {
    state: Arc<State>,
}

impl AdminApp {
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

fn reply(status: u16, ctype: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let get = req.method == http::Method::GET || req.method == http::Method::HEAD;
        match (req.uri.path(), get) {
            ("/metrics", true) => reply(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                crate::metrics::render(),
            ),
            ("/healthz", true) => reply(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            ("/readyz", true) => {
                // Keys and users are loaded before any listener starts and
                // the memory store is always reachable: ready means serving.
                let users = self.state.users().len();
                let body = serde_json::json!({"status": "ready", "users": users, "sessions": self.state.store.len()});
                reply(
                    200,
                    "application/json",
                    serde_json::to_vec(&body).unwrap_or_default(),
                )
            }
            (_, false) => reply(
                405,
                "application/json",
                br#"{"error":"method_not_allowed"}"#.to_vec(),
            ),
            _ => reply(
                404,
                "application/json",
                br#"{"error":"not_found"}"#.to_vec(),
            ),
        }
    }
}
