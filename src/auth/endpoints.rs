//! The gateway's own endpoints under `auth.path_prefix` (SPEC §3):
//! signin, refresh, logout, session, activity, the login page, and JWKS.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::json;

use super::password::VerifyError;
use super::{authenticate, is_navigation};
use crate::app::State;
use crate::error::{body, fixed, unauthorized, Reply};
use crate::metrics;
use crate::session::memory::{ClientInfo, CreateError};
use crate::session::{DenyReason, EndReason, GrantError, IssuedTokens};

/// Largest accepted body of a gateway endpoint (a signin is < 1 KiB).
pub const MAX_BODY: usize = 16 * 1024;
/// A client has this long to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// `Retry-After` when the session store is full: sessions free as the
/// sweeper ends idle ones, so a client may retry soon.
const FULL_RETRY_AFTER_S: u64 = 30;

/// What a request to the gateway's own paths is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Signin,
    Refresh,
    Logout,
    Session,
    Activity,
    Login,
    ClientJs,
    Jwks,
    Unknown,
}

pub fn classify(st: &State, path: &str) -> Endpoint {
    let p = &st.paths;
    match path {
        _ if path == p.signin => Endpoint::Signin,
        _ if path == p.refresh => Endpoint::Refresh,
        _ if path == p.logout => Endpoint::Logout,
        _ if path == p.session => Endpoint::Session,
        _ if path == p.activity => Endpoint::Activity,
        _ if path == p.login => Endpoint::Login,
        _ if path == p.client_js => Endpoint::ClientJs,
        crate::config::JWKS_PATH => Endpoint::Jwks,
        _ => Endpoint::Unknown,
    }
}

/// Answers a request to one of the gateway's own paths.
pub async fn handle(
    st: &State,
    session: &mut Session,
    path: &str,
    client_ip: Option<IpAddr>,
) -> pingora::Result<()> {
    let method = session.req_header().method.clone();
    use http::Method;
    if method == Method::POST && !same_origin(st, session.req_header()) {
        tracing::info!(client = %crate::headers::show_ip(client_ip), path, "Refused a cross-origin POST to a gateway endpoint.");
        if classify(st, path) == Endpoint::Signin {
            metrics::SIGNIN.with_label_values(&["bad_request"]).inc();
        }
        return fixed(403, body::FORBIDDEN_ORIGIN).send(session).await;
    }
    let reply = match (classify(st, path), method) {
        (Endpoint::Signin, Method::POST) => signin(st, session, client_ip).await,
        (Endpoint::Refresh, Method::POST) => refresh(st, session).await,
        (Endpoint::Logout, Method::POST) => logout(st, session).await,
        (Endpoint::Logout, Method::GET | Method::HEAD) => super::login_page::logout_page(st),
        (Endpoint::Session, Method::GET | Method::HEAD) => session_info(st, session),
        (Endpoint::Activity, Method::POST) => activity(st, session),
        (Endpoint::Login, Method::GET | Method::HEAD) => {
            super::login_page::login_page(st, session.req_header())
        }
        (Endpoint::ClientJs, Method::GET | Method::HEAD) => {
            let mut r = Reply::json(200, st.client_js.clone());
            r.content_type = Some(crate::error::JS);
            r
        }
        (Endpoint::Jwks, Method::GET | Method::HEAD) => {
            Reply::json(200, Bytes::copy_from_slice(st.keys.jwks_json()))
        }
        (Endpoint::Unknown, _) => fixed(404, body::NOT_FOUND),
        (Endpoint::Signin | Endpoint::Refresh | Endpoint::Activity, _) => {
            fixed(405, body::METHOD_NOT_ALLOWED).with("allow", "POST")
        }
        (Endpoint::Logout, _) => fixed(405, body::METHOD_NOT_ALLOWED).with("allow", "GET, POST"),
        (_, _) => fixed(405, body::METHOD_NOT_ALLOWED).with("allow", "GET"),
    };
    reply.send(session).await
}

/// CSRF defence for the gateway's own POST endpoints (login CSRF
/// included): a browser's `Origin` must be `public_url`'s origin; without
/// `Origin`, `Sec-Fetch-Site` must not say cross-site. Clients that send
/// neither (curl, servers) are not browsers and pass.
///
/// `Origin: null` (a privacy-sensitive context: a `no-referrer` page, a
/// sandboxed frame, a redirect chain) names no origin, so it is decided by
/// `Sec-Fetch-Site`, which browsers always set and scripts cannot forge; a
/// `null` without it is refused.
pub fn same_origin(st: &State, req: &pingora::http::RequestHeader) -> bool {
    let fetch_site = req.headers.get("sec-fetch-site").map(|v| v.as_bytes());
    let site_ok = |site: &[u8]| {
        site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none")
    };
    match req.headers.get(http::header::ORIGIN).map(|v| v.as_bytes()) {
        Some(b"null") => fetch_site.is_some_and(site_ok),
        Some(origin) => origin.eq_ignore_ascii_case(st.public_origin.as_bytes()),
        None => fetch_site.is_none_or(site_ok),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
}

enum BodyError {
    TooLarge,
    Unsupported,
    Read,
}

fn body_kind(session: &Session) -> Option<BodyKind> {
    let ct = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Some(BodyKind::Json)
    } else if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else {
        None
    }
}

/// Reads the whole body (bounded in size and time).
async fn read_body(session: &mut Session) -> Result<Vec<u8>, BodyError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        session.set_keepalive(None);
        return Err(BodyError::TooLarge);
    }
    let mut buf = Vec::new();
    let read = async {
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|_| BodyError::Read)?
        {
            if buf.len() + chunk.len() > MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(e)) => {
            session.set_keepalive(None);
            Err(e)
        }
        Err(_) => {
            session.set_keepalive(None);
            Err(BodyError::Read)
        }
    }
}

async fn read_typed_body(session: &mut Session) -> Result<(BodyKind, Vec<u8>), Reply> {
    let Some(kind) = body_kind(session) else {
        // Drain nothing: the connection is closed after this answer.
        session.set_keepalive(None);
        return Err(map_body_error(BodyError::Unsupported));
    };
    read_body(session)
        .await
        .map(|b| (kind, b))
        .map_err(map_body_error)
}

fn map_body_error(e: BodyError) -> Reply {
    match e {
        BodyError::TooLarge => fixed(413, body::TOO_LARGE),
        BodyError::Unsupported => fixed(415, body::UNSUPPORTED_MEDIA),
        BodyError::Read => fixed(400, body::INVALID_REQUEST),
    }
}

#[derive(Deserialize)]
struct SigninJson {
    username: String,
    password: String,
    #[serde(default)]
    delivery: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Body,
    Cookie,
    Both,
}

struct SigninRequest {
    username: String,
    password: String,
    delivery: Delivery,
    form: bool,
    rd: Option<String>,
}

fn parse_signin(kind: BodyKind, bytes: &[u8]) -> Option<SigninRequest> {
    match kind {
        BodyKind::Json => {
            let j: SigninJson = serde_json::from_slice(bytes).ok()?;
            let delivery = match j.delivery.as_deref() {
                None | Some("both") => Delivery::Both,
                Some("body") => Delivery::Body,
                Some("cookie") => Delivery::Cookie,
                Some(_) => return None,
            };
            Some(SigninRequest {
                username: j.username,
                password: j.password,
                delivery,
                form: false,
                rd: None,
            })
        }
        BodyKind::Form => {
            let (mut username, mut password, mut rd) = (None, None, None);
            for (k, v) in form_urlencoded::parse(bytes) {
                match &*k {
                    "username" => username = Some(v.into_owned()),
                    "password" => password = Some(v.into_owned()),
                    "rd" => rd = Some(v.into_owned()),
                    _ => {}
                }
            }
            Some(SigninRequest {
                username: username?,
                password: password?,
                delivery: Delivery::Cookie,
                form: true,
                rd,
            })
        }
    }
}

async fn signin(st: &State, session: &mut Session, client_ip: Option<IpAddr>) -> Reply {
    let started = Instant::now();
    let (reply, result) = signin_inner(st, session, client_ip).await;
    metrics::SIGNIN.with_label_values(&[result]).inc();
    metrics::SIGNIN_DURATION.observe(started.elapsed().as_secs_f64());
    reply
}

async fn signin_inner(
    st: &State,
    session: &mut Session,
    client_ip: Option<IpAddr>,
) -> (Reply, &'static str) {
    let (kind, bytes) = match read_typed_body(session).await {
        Ok(b) => b,
        Err(r) => return (r, "bad_request"),
    };
    let Some(req) = parse_signin(kind, &bytes) else {
        return if kind == BodyKind::Form {
            (login_redirect(st, "invalid_request", None), "bad_request")
        } else {
            (fixed(400, body::INVALID_REQUEST), "bad_request")
        };
    };
    let fail = |error: &'static str, json: Reply| {
        if req.form {
            login_redirect(st, error, req.rd.as_deref())
        } else {
            json
        }
    };

    if let Some(wait) = st.throttle.check(&req.username, client_ip) {
        tracing::warn!(client = %crate::headers::show_ip(client_ip), "Signin throttled.");
        let r = fixed(429, body::RATE_LIMITED).with("retry-after", wait.to_string());
        return (fail("rate_limited", r), "rate_limited");
    }

    let users = st.users();
    let user = users.get(&req.username);
    let verified = st
        .verifier
        .verify(user.map(|u| u.password_hash.as_str()), &req.password)
        .await;
    let ok = match verified {
        Ok(ok) => ok,
        Err(VerifyError::Busy) => {
            let r = fixed(503, body::UNAVAILABLE).with("retry-after", "1");
            return (fail("unavailable", r), "unavailable");
        }
    };
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        _ => {
            st.throttle.record_failure(&req.username, client_ip);
            tracing::info!(client = %crate::headers::show_ip(client_ip), "Signin refused: invalid credentials.");
            return (
                fail("invalid_credentials", fixed(401, body::INVALID_CREDENTIALS)),
                "invalid_credentials",
            );
        }
    };
    st.throttle.record_success(&req.username, client_ip);

    // A credential of one of the user's own sessions: that session is
    // replaced instead of counted (double-clicked form, re-login).
    let own = super::signed_credential(st, session.req_header())
        .filter(|(_, claims)| claims.sub.eq_ignore_ascii_case(&user.username))
        .map(|(v, _)| v.sid);

    let ua = session
        .req_header()
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let client = ClientInfo::new(client_ip, ua);
    let created = match st.store.create(user, own, client) {
        Ok(c) => c,
        Err(CreateError::SessionActive { retry_after }) => {
            tracing::info!(user = %user.username, "Signin refused: a session is already active.");
            let r = Reply::json_value(
                409,
                &json!({"error": "session_active", "retry_after": retry_after}),
            )
            .with("retry-after", retry_after.to_string());
            return (fail("session_active", r), "session_active");
        }
        Err(CreateError::Full) => {
            tracing::warn!(
                max_total = st.config.auth.max_total,
                "Signin refused: the session store is full (auth.concurrent_sessions.max_total)."
            );
            let r =
                fixed(503, body::UNAVAILABLE).with("retry-after", FULL_RETRY_AFTER_S.to_string());
            return (fail("unavailable", r), "unavailable");
        }
    };
    // The users file may have been reloaded while the password was being
    // verified. The session is in the store now, so a reload from here on
    // sees it; check the file in force for anything that happened before.
    let verified = user;
    let current = st.users();
    let still = current.get(&verified.username).filter(|u| {
        !u.disabled && u.password_hash == verified.password_hash && u.username == verified.username
    });
    let Some(user) = still else {
        st.store.end(created.id, EndReason::Revoked);
        st.throttle.record_failure(&req.username, client_ip);
        tracing::info!(client = %crate::headers::show_ip(client_ip), "Signin refused: the user changed during verification.");
        return (
            fail("invalid_credentials", fixed(401, body::INVALID_CREDENTIALS)),
            "invalid_credentials",
        );
    };
    if user.roles != verified.roles {
        st.store.set_roles(&user.username, &user.roles);
    }
    let access = match super::sign_access(
        st,
        created.id,
        &user.username,
        &user.roles.list,
        created.now_s,
        created.expires_at,
    ) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "Signing an access token failed.");
            st.store.end(created.id, EndReason::Revoked);
            return (fixed(500, body::INTERNAL), "unavailable");
        }
    };
    tracing::info!(user = %user.username, session = %created.id.digest(), client = %crate::headers::show_ip(client_ip), "Signin succeeded.");
    let tokens = IssuedTokens {
        access_token: access,
        refresh_token: created.refresh_token,
        expires_at: created.expires_at,
    };

    if req.form {
        let target = safe_redirect(st, req.rd.as_deref());
        let mut r = Reply::redirect(303, &target);
        for c in super::deliver_cookies(st, &tokens) {
            r.header("set-cookie", c);
        }
        return (r, "success");
    }
    let mut r = Reply::json_value(
        200,
        &token_body(
            st,
            &tokens,
            created.now_s,
            req.delivery != Delivery::Cookie,
            true,
        ),
    );
    if req.delivery != Delivery::Body {
        for c in super::deliver_cookies(st, &tokens) {
            r.header("set-cookie", c);
        }
    }
    (r.with("pragma", "no-cache"), "success")
}

fn token_body(
    st: &State,
    t: &IssuedTokens,
    now_s: u64,
    with_access: bool,
    with_refresh: bool,
) -> serde_json::Value {
    let mut v = json!({
        "token_type": "Bearer",
        "expires_in": t.expires_at.saturating_sub(now_s),
        "session_expires_at": t.expires_at,
        "idle_timeout": st.config.auth.idle_timeout.as_secs(),
    });
    if with_access {
        v["access_token"] = json!(t.access_token);
    }
    if with_refresh && with_access {
        v["refresh_token"] = json!(t.refresh_token);
    }
    v
}

fn login_redirect(st: &State, error: &str, rd: Option<&str>) -> Reply {
    let mut loc = format!("{}?error={error}", st.paths.login);
    if let Some(rd) = rd {
        loc.push_str("&rd=");
        loc.push_str(&crate::error::query_encode(&safe_redirect(st, Some(rd))));
    }
    Reply::redirect(303, &loc)
}

/// SPEC §3 "safe redirect target": resolved against `public_url`, honoured
/// only on the same origin; the Location is the parser's path + query.
pub fn safe_redirect(st: &State, rd: Option<&str>) -> String {
    safe_redirect_for(&st.config.server.public_url, rd)
}

pub fn safe_redirect_for(base: &url::Url, rd: Option<&str>) -> String {
    let Some(rd) = rd.filter(|r| !r.is_empty()) else {
        return "/".into();
    };
    match base.join(rd) {
        // A path the parser resolved to `//host/...` (from `/.//host`,
        // `/..//host`, `https://us//host`) is same-origin as a URL, but as a
        // Location without scheme and host a browser reads it as another
        // host.
        Ok(u) if u.origin() == base.origin() && !u.path().starts_with("//") => {
            let mut s = u.path().to_string();
            if let Some(q) = u.query() {
                s.push('?');
                s.push_str(q);
            }
            s
        }
        _ => "/".into(),
    }
}

#[derive(Deserialize)]
struct RefreshJson {
    refresh_token: String,
}

async fn refresh(st: &State, session: &mut Session) -> Reply {
    let from_cookie =
        crate::headers::cookie(session.req_header(), &st.config.auth.cookie.refresh_name)
            .map(str::to_string);
    let has_body = body_kind(session) == Some(BodyKind::Json);
    let from_body = if has_body {
        match read_body(session).await {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => None,
            Ok(b) => match serde_json::from_slice::<RefreshJson>(&b) {
                Ok(j) => Some(j.refresh_token),
                Err(_) => {
                    metrics::REFRESH.with_label_values(&["invalid_grant"]).inc();
                    return fixed(400, body::INVALID_REQUEST);
                }
            },
            Err(e) => return map_body_error(e),
        }
    } else {
        None
    };
    let (token, via_cookie) = match (from_body, from_cookie) {
        (Some(t), _) => (t, false),
        (None, Some(c)) => (c, true),
        (None, None) => return grant_error(GrantError::Invalid),
    };
    match super::refresh(st, &token) {
        Ok((tokens, replay)) => {
            if !replay {
                metrics::REFRESH.with_label_values(&["success"]).inc();
            }
            let now_s = st.clock.now_s();
            let mut r = Reply::json_value(200, &token_body(st, &tokens, now_s, true, !via_cookie))
                .with("pragma", "no-cache");
            if via_cookie {
                for c in super::deliver_cookies(st, &tokens) {
                    r.header("set-cookie", c);
                }
            }
            r
        }
        Err(e) => {
            let label = if e == GrantError::Reuse {
                "reuse"
            } else {
                "invalid_grant"
            };
            metrics::REFRESH.with_label_values(&[label]).inc();
            grant_error(e)
        }
    }
}

fn grant_error(e: GrantError) -> Reply {
    Reply::json_value(
        401,
        &json!({"error": "invalid_grant", "reason": e.reason()}),
    )
}

async fn logout(st: &State, session: &mut Session) -> Reply {
    let kind = body_kind(session);
    // Small bodies only (a form's rd, or a JSON refresh token).
    let bytes = match kind {
        Some(_) => read_body(session).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut rd = None;
    let mut body_refresh = None;
    match kind {
        Some(BodyKind::Form) => {
            rd = form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == "rd")
                .map(|(_, v)| v.into_owned());
        }
        Some(BodyKind::Json) => {
            body_refresh = serde_json::from_slice::<RefreshJson>(&bytes)
                .ok()
                .map(|j| j.refresh_token);
        }
        None => {}
    }
    let req = session.req_header();
    // The access token names the session even when expired, if correctly signed.
    let sid = super::signed_credential(st, req)
        .map(|(v, _)| v.sid)
        .or_else(|| {
            body_refresh
                .as_deref()
                .or_else(|| crate::headers::cookie(req, &st.config.auth.cookie.refresh_name))
                .and_then(|t| st.store.session_of_refresh_token(t))
        });
    if let Some(sid) = sid {
        st.store.end(sid, EndReason::Logout);
    }
    let mut r = if kind == Some(BodyKind::Form) || is_navigation(req) {
        let target = match rd.as_deref() {
            Some(rd) => safe_redirect(st, Some(rd)),
            None => format!("{}?reason=logout", st.paths.login),
        };
        Reply::redirect(303, &target)
    } else {
        Reply::new(204)
    };
    for c in super::clearing_cookies(st) {
        r.header("set-cookie", c);
    }
    r
}

fn session_info(st: &State, session: &mut Session) -> Reply {
    match authenticate(st, session.req_header(), |_| false) {
        Ok(a) => {
            let info = st.store.get(a.sid, |s, set| {
                json!({
                    "user": &*s.user,
                    "roles": &s.roles.list,
                    "session_expires_at": s.expires_at,
                    "idle_expires_at": (s.last_activity() + set.idle_ms) / 1000,
                    "refresh_expires_at": s.refresh_deadline(set) / 1000,
                    "idle_timeout": set.idle_ms / 1000,
                    "now": st.clock.now_s(),
                })
            });
            match info {
                Some(v) => with_renewal(st, Reply::json_value(200, &v), &a.renewed),
                None => unauthorized(DenyReason::Invalid),
            }
        }
        Err(reason) => unauthorized(reason),
    }
}

fn activity(st: &State, session: &mut Session) -> Reply {
    match authenticate(st, session.req_header(), |_| true) {
        Ok(a) => with_renewal(st, Reply::new(204), &a.renewed),
        Err(reason) => unauthorized(reason),
    }
}

fn with_renewal(st: &State, mut r: Reply, renewed: &Option<std::sync::Arc<IssuedTokens>>) -> Reply {
    if let Some(t) = renewed {
        for c in super::deliver_cookies(st, t) {
            r.header("set-cookie", c);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_our_origin() {
        let base = url::Url::parse("https://gw.example:8443").unwrap();
        let ok = [
            ("/app/page?a=1&b=2", "/app/page?a=1&b=2"),
            ("/a/../b", "/b"),
            ("https://gw.example:8443/x", "/x"),
            ("relative", "/relative"),
            // a backslash is a slash to the parser: one, so a local path
            ("/.\\evil.example", "/evil.example"),
        ];
        for (rd, want) in ok {
            assert_eq!(safe_redirect_for(&base, Some(rd)), want, "{rd}");
        }
        for rd in [
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "https://gw.example:8443@evil.example/",
            "http://gw.example:8443/",
            "/\t/evil.example",
            "javascript:alert(1)",
            "https://gw.example.evil.example/",
            "",
            // same origin, but the path the parser resolves starts with
            // `//`: as a Location, that is another host
            "/.//evil.example",
            "/..//evil.example",
            "/a/..//evil.example",
            "https://gw.example:8443//evil.example",
            "/%2e//evil.example",
            "\t/\t/evil.example",
        ] {
            assert_eq!(safe_redirect_for(&base, Some(rd)), "/", "{rd:?}");
        }
    }

    #[test]
    fn signin_bodies() {
        assert!(parse_signin(BodyKind::Json, br#"{"username":"a","password":"b"}"#).is_some());
        for bad in [
            &br#"{"username": "alice", "password": "#[..],
            b"not json",
            br#"["alice"]"#,
            br#"{"username": 1}"#,
            br#"{"username":"a","password":"b","delivery":"x"}"#,
        ] {
            assert!(
                parse_signin(BodyKind::Json, bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let f = parse_signin(BodyKind::Form, b"username=a&password=b%26c&rd=%2Fx").unwrap();
        assert_eq!(
            (f.password.as_str(), f.rd.as_deref(), f.delivery),
            ("b&c", Some("/x"), Delivery::Cookie)
        );
    }
}
