//! The admin listener (plain HTTP; keep it on loopback): `/metrics`,
//! `/healthz`, `/readyz`, and with `server.admin_token_file` the session
//! API (SPEC §6):
//!
//! * `GET /admin/sessions?user=U` — live sessions (all, or one user's) by
//!   digest: a hash of the session id (raw ids never leave the gateway);
//! * `DELETE /admin/sessions/{digest}` — end one (reason `revoked`);
//! * `DELETE /admin/users/{user}/sessions` — end all of a user's.

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

/// How long /readyz waits for the gateway listener to accept.
const READY_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Most sessions one listing returns.
const MAX_LISTED: usize = 10_000;

impl AdminApp {
    async fn listener_accepts(&self) -> bool {
        let mut addr = self.state.config.server.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        matches!(
            tokio::time::timeout(READY_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        )
    }

    fn admin_api(&self, session: &ServerSession) -> Response<Vec<u8>> {
        let json = |status: u16, v: serde_json::Value| {
            reply(
                status,
                "application/json",
                serde_json::to_vec(&v).unwrap_or_default(),
            )
        };
        let Some(expected) = self.state.admin_token.as_deref() else {
            return json(
                404,
                serde_json::json!({"error": "not_found", "hint": "the admin API is off: set server.admin_token_file"}),
            );
        };
        let req = session.req_header();
        let presented = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool =
            subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), expected.as_bytes()).into();
        if !ok {
            let mut r = json(401, serde_json::json!({"error": "unauthorized"}));
            r.headers_mut().insert(
                "www-authenticate",
                http::HeaderValue::from_static(r#"Bearer realm="authgate-admin""#),
            );
            return r;
        }
        let store = &self.state.store;
        let path = req.uri.path();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (&req.method, segments.as_slice()) {
            (&http::Method::GET, ["admin", "sessions"]) => {
                let user = req
                    .uri
                    .query()
                    .and_then(|q| {
                        form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "user")
                            .map(|(_, v)| v.into_owned())
                    })
                    .filter(|u| !u.is_empty());
                let mut list = store.list(user.as_deref());
                list.sort_by_key(|s| s.created_at);
                list.truncate(MAX_LISTED);
                let sessions: Vec<serde_json::Value> = list
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "id": s.digest,
                            "user": &*s.user,
                            "created_at": s.created_at / 1000,
                            "last_activity": s.last_activity / 1000,
                            "expires_at": s.expires_at,
                            "client_ip": s.client.ip.map(|ip| ip.to_string()),
                            "user_agent": &*s.client.user_agent,
                        })
                    })
                    .collect();
                json(200, serde_json::json!({"sessions": sessions}))
            }
            (&http::Method::DELETE, ["admin", "sessions", digest]) => {
                if store.end_by_digest(
                    &digest.to_ascii_lowercase(),
                    crate::session::EndReason::Revoked,
                ) {
                    tracing::info!(session = %digest, "Session revoked by an administrator.");
                    reply(204, "application/json", Vec::new())
                } else {
                    json(404, serde_json::json!({"error": "not_found"}))
                }
            }
            (&http::Method::DELETE, ["admin", "users", user, "sessions"]) => {
                let user = percent_encoding::percent_decode_str(user).decode_utf8_lossy();
                let ended = store.end_user(&user, crate::session::EndReason::Revoked);
                tracing::info!(user = %user, ended, "User's sessions revoked by an administrator.");
                json(200, serde_json::json!({"ended": ended}))
            }
            _ => json(404, serde_json::json!({"error": "not_found"})),
        }
    }
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
            (p, _) if p.starts_with("/admin/") || p == "/admin" => self.admin_api(session),
            ("/healthz", true) => reply(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            ("/readyz", true) => {
                // Keys and users are loaded before any listener starts and the
                // memory store is always reachable; what can still be wrong
                // is the gateway listener itself.
                let listening = self.listener_accepts().await;
                let body = serde_json::json!({
                    "status": if listening { "ready" } else { "not_ready" },
                    "listener": listening,
                    "users": self.state.users().len(),
                    "sessions": self.state.store.len(),
                });
                reply(
                    if listening { 200 } else { 503 },
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
