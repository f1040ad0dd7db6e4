//! `authgate whoami`: a tiny upstream that answers every request with JSON
//! of what it received (method, path, query, every header line in order,
//! body size). The demo config runs it in-process; tests use it as a real
//! upstream to see exactly what the gateway forwarded.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

/// Bodies beyond this are counted, not kept.
const MAX_BODY_READ: usize = 1 << 20;

pub struct Whoami;

#[async_trait]
impl ServeHttp for Whoami {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let method = req.method.to_string();
        let path = req.uri.path().to_string();
        let query = req.uri.query().unwrap_or("").to_string();
        let mut body_len = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_len += chunk.len();
            if body_len > MAX_BODY_READ {
                break;
            }
        }
        let user = headers
            .iter()
            .find(|(k, _)| k == "x-auth-user")
            .map(|(_, v)| v.clone());
        let body = serde_json::to_vec_pretty(&json!({
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "body_bytes": body_len,
            "user": user,
        }))
        .unwrap_or_default();
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

/// Runs whoami alone (`authgate whoami --listen ADDR`); never returns.
pub fn run(listen: &str) -> ! {
    let conf = pingora::server::configuration::ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = pingora::server::Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::services::listening::Service::new("whoami".to_string(), Whoami);
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever()
}
