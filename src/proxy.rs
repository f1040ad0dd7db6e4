//! The `ProxyHttp` implementation: phase wiring only; each hook delegates.
//!
//! ```text
//!  client ──TLS──▶ request_filter ──────────────────────────────┐
//!                  │ 1 framing + limits, normalize path          │ answered here:
//!                  │   (400/414/431 if ambiguous or too large)   │
//!                  │ 2 gateway endpoints (/auth/*, JWKS)  ───────┤ endpoints, 400,
//!                  │ 3 route match (404 if none)                 │ 401/302 denials,
//!                  │ 4 public path? → forward without identity   │ 403
//!                  │ 5 credential → token (cached) → session     │
//!                  │   → activity → required_roles               │
//!                  ▼                                             │
//!                upstream_peer (route's resolved address)        │
//!                  ▼                                             │
//!                upstream_request_filter                         │
//!                  │ normalized path, x-auth-* stripped,         │
//!                  │ Connection defused, our cookies removed,    │
//!                  │ Authorization dropped, X-Forwarded-*,       │
//!                  │ identity injected                           │
//!                  ▼                                             │
//!                response_filter (renewed cookies, app logout)   │
//!                  ▼                                             ▼
//!                logging (metrics, deferred session end) ◀───────┘
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::app::State;
use crate::auth::{self, Via};
use crate::config::ActivityMode;
use crate::error::{body, fixed, unauthorized, Reply};
use crate::metrics;
use crate::routes::{normalize_path, under};
use crate::session::{DenyReason, EndReason, IssuedTokens, Live, SessionId};

/// The error that cuts a long-lived connection whose session ended.
const SESSION_ENDED: &str = "session ended";

/// Upstream connect timeout: a dead upstream answers 502 quickly.
const UPSTREAM_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// A pooled upstream connection idle for this long is closed (see
/// docs/operations.md: apps should keep idle connections open longer).
const UPSTREAM_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// An upstream that goes silent for this long mid-response is given up.
const UPSTREAM_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub struct Gateway {
    state: Arc<State>,
}

impl Gateway {
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Public,
    Denied,
    Forbidden,
    BadRequest,
    UpstreamError,
    /// The gateway's own endpoints (not counted in `requests_total`).
    Own,
    NotFound,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Public => "public",
            Self::Denied => "denied",
            Self::Forbidden => "forbidden",
            Self::BadRequest | Self::NotFound => "bad_request",
            Self::UpstreamError => "upstream_error",
            Self::Own => "own",
        }
    }
}

/// Per-request state.
pub struct Ctx {
    outcome: Outcome,
    route: Option<usize>,
    /// The normalized path + query when it differs from what the client
    /// sent (then it replaces the request target; else nothing allocates).
    rewritten: Option<String>,
    identity: Option<(SessionId, Live)>,
    renewed: Option<Arc<IssuedTokens>>,
    /// End this session after the response (logout paths, `X-Auth-Logout`).
    end_after: Option<SessionId>,
    client_ip: Option<IpAddr>,
    peer_trusted: bool,
    /// Rewrites this HTML response to include the browser client.
    injector: Option<crate::inject::Injector>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            outcome: Outcome::BadRequest,
            route: None,
            rewritten: None,
            identity: None,
            renewed: None,
            end_after: None,
            client_ip: None,
            peer_trusted: false,
            injector: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let st = &*self.state;
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let trusted = &st.config.server.trusted_proxies;
        ctx.peer_trusted = peer.is_some_and(|p| trusted.iter().any(|n| n.contains(&p)));
        ctx.client_ip = crate::headers::client_ip(session.req_header(), peer, trusted);

        let req = session.req_header();
        if let Err(refusal) = crate::framing::check(req) {
            tracing::info!(client = %crate::headers::show_ip(ctx.client_ip), why = refusal.why(), "Refused a request's framing.");
            ctx.outcome = Outcome::BadRequest;
            session.set_keepalive(None);
            fixed(refusal.status(), refusal.body())
                .send(session)
                .await?;
            return Ok(true);
        }
        // Methods are case-sensitive, but some upstreams fold them: `trace`
        // must not become TRACE behind our back. Standard methods are
        // upper-case; anything else is refused.
        let method = req.method.as_str();
        if method.bytes().any(|b| b.is_ascii_lowercase()) {
            ctx.outcome = Outcome::BadRequest;
            session.set_keepalive(None);
            fixed(400, body::INVALID_REQUEST).send(session).await?;
            return Ok(true);
        }
        if req.method == http::Method::TRACE || req.method == http::Method::CONNECT {
            ctx.outcome = Outcome::BadRequest;
            fixed(405, body::METHOD_NOT_ALLOWED).send(session).await?;
            return Ok(true);
        }
        let path = match normalize_path(req.uri.path()) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(client = %crate::headers::show_ip(ctx.client_ip), error = %e, "Refused an ambiguous path.");
                ctx.outcome = Outcome::BadRequest;
                session.set_keepalive(None);
                fixed(400, body::INVALID_REQUEST).send(session).await?;
                return Ok(true);
            }
        };

        if under(&path, &st.paths.prefix) || path == crate::config::JWKS_PATH {
            ctx.outcome = Outcome::Own;
            auth::endpoints::handle(st, session, &path, ctx.client_ip).await?;
            return Ok(true);
        }
        // `/AUTH/session`, `/auth;x/...`: routes match leniently (as IIS or
        // Tomcat read paths), so such spellings would reach an app as if
        // they were the gateway's own paths. They are nobody's.
        if crate::routes::lenient_under(&path, &st.paths.prefix) {
            ctx.outcome = Outcome::NotFound;
            fixed(404, body::NOT_FOUND).send(session).await?;
            return Ok(true);
        }

        let Some(route) = st.routes.find(&path) else {
            ctx.outcome = Outcome::NotFound;
            fixed(404, body::NOT_FOUND).send(session).await?;
            return Ok(true);
        };
        ctx.route = Some(route.index);
        // Absolute form (`GET http://host/x`) goes out in origin form: the
        // upstream sees exactly the normalized path, never a client's
        // scheme and authority in the request line.
        if path != req.uri.path() || req.raw_path().first() != Some(&b'/') {
            ctx.rewritten = Some(match req.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            });
        }
        if route.is_public(&path) {
            ctx.outcome = Outcome::Public;
            // A legacy app's logout URL is often public: it still logs the
            // holder of a valid token out of the gateway.
            if route.is_logout_path(&path) {
                ctx.end_after = auth::signed_credential(st, req).map(|(v, _)| v.sid);
            }
            return Ok(false);
        }

        let unsafe_method = auth::is_unsafe_method(&req.method);
        // CSRF: a cookie rides along with cross-site requests (SameSite=Lax
        // stops cross-site POSTs, not same-site ones from a sibling host):
        // refused before the session is touched, so it counts as nothing.
        if unsafe_method
            && route.config.csrf_protection
            && !auth::endpoints::same_origin(st, req)
            && matches!(
                auth::credential(req, &st.config.auth.cookie.name),
                Some((_, Via::Cookie))
            )
        {
            tracing::info!(client = %crate::headers::show_ip(ctx.client_ip), route = route.name(), "Refused a cross-origin request that relies on the cookie.");
            ctx.outcome = Outcome::Forbidden;
            fixed(403, body::FORBIDDEN_ORIGIN).send(session).await?;
            return Ok(true);
        }
        let started = Instant::now();
        let navigation = auth::is_navigation(req);
        let ignored = st
            .config
            .auth
            .activity_ignore_paths
            .iter()
            .any(|p| crate::routes::lenient_under(&path, p));
        let mode = route.activity();
        let decision = auth::authenticate(st, req, |via| {
            !ignored
                && match (via, mode) {
                    (Via::Bearer, _) => true,
                    (Via::Cookie, ActivityMode::All) => true,
                    (Via::Cookie, ActivityMode::None) => false,
                    (Via::Cookie, ActivityMode::Interactive) => navigation || unsafe_method,
                }
        });
        metrics::AUTH_DECISION.observe(started.elapsed().as_secs_f64());

        let authed = match decision {
            Ok(a) => a,
            Err(reason) => {
                ctx.outcome = Outcome::Denied;
                deny(st, session, reason, navigation, &path)
                    .send(session)
                    .await?;
                return Ok(true);
            }
        };
        if !authed.live.roles.satisfies(&route.config.required_roles) {
            ctx.outcome = Outcome::Forbidden;
            let mut r = if navigation {
                Reply::html(403, "<!doctype html><title>Forbidden</title><h1>Forbidden</h1><p>Your account lacks the role this page needs.</p>".into())
            } else {
                fixed(403, body::FORBIDDEN)
            };
            add_renewal_cookies(st, &mut r.headers, &authed.renewed);
            r.send(session).await?;
            return Ok(true);
        }
        if route.is_logout_path(&path) {
            ctx.end_after = Some(authed.sid);
        }
        ctx.outcome = Outcome::Allowed;
        ctx.renewed = authed.renewed;
        ctx.identity = Some((authed.sid, authed.live));
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .and_then(|i| self.state.routes.get(i))
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let mut peer = HttpPeer::new(route.config.upstream, false, String::new());
        peer.options.connection_timeout = Some(UPSTREAM_CONNECT_TIMEOUT);
        peer.options.read_timeout = Some(UPSTREAM_READ_TIMEOUT);
        // Kept, although pingora arms a timer for it each time a connection
        // goes back to the pool (~1% of the instructions per request):
        // without it, an idle flow that a NAT or firewall dropped silently
        // stays pooled forever and hangs the request that reuses it, and an
        // app's own keep-alive close always races the next request.
        peer.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let st = &*self.state;
        // Fail closed: a request that was not decided must never go out.
        if !matches!(ctx.outcome, Outcome::Allowed | Outcome::Public) {
            return Err(Error::new(ErrorType::InternalError));
        }
        let route = ctx
            .route
            .and_then(|i| st.routes.get(i))
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        if let Some(target) = &ctx.rewritten {
            let uri: http::Uri = target
                .parse()
                .map_err(|_| Error::new(ErrorType::InternalError))?;
            up.set_uri(uri);
        }
        crate::headers::strip_reserved(up);
        crate::headers::sanitize_connection(up, session.is_upgrade_req());
        let c = &st.config.auth.cookie;
        crate::headers::strip_cookies(up, [c.name.as_str(), c.refresh_name.as_str()]);
        if route.config.inject_client && ctx.identity.is_some() {
            // The page is rewritten on its way out: ask for it uncompressed.
            up.remove_header(&http::header::ACCEPT_ENCODING);
        }
        if !route.config.forward_authorization {
            up.remove_header(&http::header::AUTHORIZATION);
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        crate::headers::strip_url_overrides(up);
        crate::headers::set_forwarded(up, peer, ctx.peer_trusted, &st.forwarded);
        match (&ctx.identity, ctx.outcome) {
            (Some((_, live)), Outcome::Allowed) => crate::headers::inject_identity(up, live)?,
            (None, Outcome::Public) => {}
            _ => return Err(Error::new(ErrorType::InternalError)),
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let st = &*self.state;
        let app_logout = resp
            .headers
            .get("x-auth-logout")
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
        resp.remove_header("x-auth-logout");
        // The gateway's cookies are the gateway's: an app (a public one
        // included) must not set, fix or clear them for the browser.
        crate::headers::strip_set_cookies(
            resp,
            [
                st.config.auth.cookie.name.as_str(),
                st.config.auth.cookie.refresh_name.as_str(),
            ],
        );
        if app_logout && ctx.end_after.is_none() {
            ctx.end_after = match &ctx.identity {
                Some((sid, _)) => Some(*sid),
                // a public path: the credential, if any, names the session
                None => auth::signed_credential(st, session.req_header()).map(|(v, _)| v.sid),
            };
        }
        let inject = ctx.identity.is_some()
            && ctx
                .route
                .and_then(|i| st.routes.get(i))
                .is_some_and(|r| r.config.inject_client);
        if inject && crate::inject::is_rewritable_html(resp) {
            resp.remove_header(&http::header::CONTENT_LENGTH);
            ctx.injector = Some(crate::inject::Injector::new(crate::inject::script_tag(
                &st.paths.prefix,
            )));
        }
        if let Some(sid) = ctx.end_after {
            // The upstream has answered: end the session before the client
            // can send its next request (logging() runs after the response
            // is written and only covers the case of a failed upstream).
            st.store.end(sid, EndReason::Logout);
            for c in auth::clearing_cookies(st) {
                resp.append_header("set-cookie", c)?;
            }
        } else if let Some(t) = &ctx.renewed {
            for c in auth::deliver_cookies(st, t) {
                resp.append_header("set-cookie", c)?;
            }
        }
        Ok(())
    }

    /// Upstream → client chunks, including upgraded (WebSocket) traffic:
    /// a connection of a session that ended is cut at its next frame.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        self.session_still_alive(ctx, body)?;
        if let Some(injector) = &ctx.injector {
            injector.process(body, end_of_stream);
        }
        Ok(None)
    }

    /// Client → upstream chunks: the same rule in the other direction.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.session_still_alive(ctx, body)
    }

    /// What pingora prints in its error lines: method and path only, never
    /// the query (it may carry tokens).
    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }

    /// Errors a client causes (bad framing, hop-by-hop abuse, resets) are
    /// not the operator's problem: logged at info by us, not as ERROR.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        if error.etype() == &ErrorType::Custom(SESSION_ENDED) {
            tracing::info!("Closed a stream or WebSocket whose session ended.");
            return true;
        }
        if error.esource() == &pingora::ErrorSource::Downstream {
            tracing::info!(error = ?error.etype(), "Client request failed.");
            true
        } else {
            false
        }
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => 502,
                pingora::ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        if code == 502 || e.esource() == &pingora::ErrorSource::Upstream {
            ctx.outcome = Outcome::UpstreamError;
        } else if e.esource() == &pingora::ErrorSource::Downstream {
            ctx.outcome = Outcome::BadRequest;
        }
        // A response that already started (a stream cut because its session
        // ended) cannot get another status line: just close.
        let code = if session.response_written().is_some() {
            0
        } else {
            code
        };
        if code > 0 {
            // The connection is not reused (below): say so, rather than
            // `keep-alive` on a connection about to close.
            session.set_keepalive(None);
            let body = match code {
                502 => body::BAD_GATEWAY,
                400 => body::INVALID_REQUEST,
                _ => body::INTERNAL,
            };
            let mut reply = fixed(code, body);
            // Tokens renewed for this request must reach the browser even
            // when the upstream failed, or its cookies fall behind.
            add_renewal_cookies(&self.state, &mut reply.headers, &ctx.renewed);
            if let Err(err) = reply.send(session).await {
                tracing::debug!(error = %err, "Could not send the error response.");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, _session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let st = &*self.state;
        if let Some(sid) = ctx.end_after {
            st.store.end(sid, EndReason::Logout);
        }
        let route = ctx.route.and_then(|i| st.routes.get(i));
        if ctx.outcome == Outcome::UpstreamError {
            if let Some(r) = route {
                metrics::UPSTREAM_ERRORS
                    .with_label_values(&[r.name()])
                    .inc();
                tracing::warn!(
                    route = r.name(),
                    error = e.map_or("-", |e| e.etype().as_str()),
                    "Upstream request failed."
                );
            }
        }
        if ctx.outcome != Outcome::Own {
            let name = route.map_or("none", |r| r.name());
            metrics::REQUESTS
                .with_label_values(&[name, ctx.outcome.label()])
                .inc();
        }
    }
}

impl Gateway {
    fn session_still_alive(&self, ctx: &Ctx, body: &mut Option<bytes::Bytes>) -> Result<()> {
        // A response that itself logs out (logout path, X-Auth-Logout) is
        // delivered in full.
        if ctx.end_after.is_some() {
            return Ok(());
        }
        if let Some((sid, _)) = &ctx.identity {
            if !self.state.store.alive(*sid) {
                *body = None;
                return Err(Error::explain(
                    ErrorType::Custom(SESSION_ENDED),
                    "the session of this connection ended",
                ));
            }
        }
        Ok(())
    }
}

/// The denial of SPEC §3: browsers are sent to the login page, everything
/// else gets 401 JSON.
fn deny(st: &State, session: &Session, reason: DenyReason, navigation: bool, path: &str) -> Reply {
    if navigation {
        let target = match session.req_header().uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let status = if session.req_header().method == http::Method::GET
            || session.req_header().method == http::Method::HEAD
        {
            302
        } else {
            303
        };
        let loc = format!(
            "{}?rd={}&reason={}",
            st.paths.login,
            crate::error::query_encode(&target),
            reason.as_str()
        );
        Reply::redirect(status, &loc)
    } else {
        unauthorized(reason)
    }
}

fn add_renewal_cookies(
    st: &State,
    headers: &mut Vec<(&'static str, http::HeaderValue)>,
    renewed: &Option<Arc<IssuedTokens>>,
) {
    if let Some(t) = renewed {
        for c in auth::deliver_cookies(st, t) {
            if let Ok(v) = http::HeaderValue::from_str(&c) {
                headers.push(("set-cookie", v));
            }
        }
    }
}
