//! Authentication: credentials, token verification with the cache, the
//! live-session check, in-line renewal, and token issuance.
//!
//! The per-request decision ([`authenticate`]) on a cache hit is: one keyed
//! hash of the token, one DashMap read for the cache, one for the session,
//! an atomic for activity, two `Arc` clones. No signature, no allocation
//! beyond those clones, no lock held across an await.

pub mod endpoints;
pub mod jwt;
pub mod login_page;
pub mod password;
pub mod throttle;
pub mod users;

use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::app::State;
use crate::session::memory::{RefreshPlan, RotationTicket};
use crate::session::{DenyReason, GrantError, IssuedTokens, Live, SessionId};
use jwt::{AccessClaims, Verified};

/// Where the credential came from (SPEC §3: Bearer wins, no fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Bearer,
    Cookie,
}

/// The one credential of a request.
pub fn credential<'a>(req: &'a RequestHeader, cookie_name: &str) -> Option<(&'a str, Via)> {
    if let Some(t) = crate::headers::bearer(req) {
        return Some((t, Via::Bearer));
    }
    crate::headers::cookie(req, cookie_name).map(|t| (t, Via::Cookie))
}

/// The request's credential, correctly signed (expiry not checked): names
/// the session for logout, even an expired one (SPEC §3).
pub fn signed_credential(st: &State, req: &RequestHeader) -> Option<(Verified, AccessClaims)> {
    credential(req, &st.config.auth.cookie.name).and_then(|(t, _)| st.keys.verify(t).ok())
}

/// True for a browser navigation (SPEC §3): `Sec-Fetch-Mode: navigate`, or
/// without that header a GET/HEAD accepting HTML and not sent by XHR.
pub fn is_navigation(req: &RequestHeader) -> bool {
    if let Some(mode) = req.headers.get("sec-fetch-mode") {
        return mode.as_bytes().eq_ignore_ascii_case(b"navigate");
    }
    let get = req.method == http::Method::GET || req.method == http::Method::HEAD;
    get && req.headers.get("x-requested-with").is_none()
        && req
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains("text/html")))
}

pub fn is_unsafe_method(m: &http::Method) -> bool {
    !matches!(
        *m,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// Signature and claims of `token`, from the cache when this exact token was
/// verified before. Time claims are checked by the caller.
pub fn verify_token(st: &State, token: &str) -> Result<Verified, DenyReason> {
    if let Some(v) = st.tokens.get(token) {
        return Ok(v);
    }
    let (v, claims) = st.keys.verify(token).map_err(|_| DenyReason::Invalid)?;
    // The token must name the session's user; checked once, then cached
    // (a session's user never changes).
    let same_user = st.store.get(v.sid, |s, _| *s.user == *claims.sub);
    match same_user {
        Some(true) => st.tokens.insert(token, v),
        Some(false) => return Err(DenyReason::Invalid),
        // Unknown session (e.g. after a restart): not cached.
        None => {}
    }
    Ok(v)
}

/// An authenticated request.
#[derive(Debug)]
pub struct Authed {
    pub sid: SessionId,
    pub live: Live,
    pub via: Via,
    /// Tokens renewed in line (cookie auto-refresh): set as cookies.
    pub renewed: Option<Arc<IssuedTokens>>,
}

/// The per-request decision (SPEC §3, §4). `activity` says whether this
/// request counts as activity (decided by the caller from the route mode).
pub fn authenticate(
    st: &State,
    req: &RequestHeader,
    activity: impl Fn(Via) -> bool,
) -> Result<Authed, DenyReason> {
    let (token, via) = credential(req, &st.config.auth.cookie.name).ok_or(DenyReason::Missing)?;
    let v = verify_token(st, token)?;
    let now_s = st.clock.now_s();
    let leeway = st.config.auth.jwt.leeway.as_secs();
    if v.nbf > now_s + leeway {
        return Err(DenyReason::Invalid);
    }
    let counts = activity(via);
    let auto = via == Via::Cookie && st.config.auth.cookie_auto_refresh;
    match st.store.check(v.sid, v.exp, counts) {
        Ok(live) => {
            // Renew in the last fifth of the token's life (SPEC §4).
            let renewed = if auto && now_s + (v.exp.saturating_sub(v.nbf)) / 5 >= v.exp {
                renew(st, v.sid, v.exp)
            } else {
                None
            };
            let live = match &renewed {
                Some(t) => Live {
                    expires_at: t.expires_at,
                    ..live
                },
                None => live,
            };
            Ok(Authed {
                sid: v.sid,
                live,
                via,
                renewed,
            })
        }
        Err(DenyReason::Expired) if auto => {
            let renewed = renew(st, v.sid, v.exp).ok_or(DenyReason::Expired)?;
            let live = st.store.check(v.sid, renewed.expires_at, counts)?;
            Ok(Authed {
                sid: v.sid,
                live,
                via,
                renewed: Some(renewed),
            })
        }
        Err(reason) => Err(reason),
    }
}

/// Renews a cookie session in line; the caller sets the result as cookies.
fn renew(st: &State, sid: SessionId, token_exp: u64) -> Option<Arc<IssuedTokens>> {
    match st.store.plan_renewal(sid, token_exp)? {
        RefreshPlan::Replay(t) => Some(t),
        RefreshPlan::Rotate(ticket) => {
            let t = issue(st, &ticket).ok()?;
            crate::metrics::REFRESH
                .with_label_values(&["success"])
                .inc();
            Some(t)
        }
    }
}

/// Signs a token pair for a rotation and installs it (or returns the pair a
/// concurrent rotation installed first).
pub fn issue(st: &State, ticket: &RotationTicket) -> Result<Arc<IssuedTokens>, GrantError> {
    let access_token = sign_access(
        st,
        ticket.id,
        &ticket.user,
        &ticket.roles.list,
        ticket.now_s,
        ticket.expires_at,
    )
    .map_err(|_| GrantError::Invalid)?;
    let (refresh_token, _) = crate::session::new_refresh_token(ticket.id);
    st.store.install(
        ticket,
        IssuedTokens {
            access_token,
            refresh_token,
            expires_at: ticket.expires_at,
        },
    )
}

/// Runs a refresh with a presented refresh token.
pub fn refresh(st: &State, refresh_token: &str) -> Result<(Arc<IssuedTokens>, bool), GrantError> {
    match st.store.plan_refresh(refresh_token)? {
        RefreshPlan::Replay(t) => Ok((t, true)),
        RefreshPlan::Rotate(ticket) => issue(st, &ticket).map(|t| (t, false)),
    }
}

pub fn sign_access(
    st: &State,
    sid: SessionId,
    user: &str,
    roles: &[String],
    now_s: u64,
    exp: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    st.keys.sign(&AccessClaims {
        iss: st.keys.issuer.clone(),
        aud: st.keys.audience.clone(),
        sub: user.to_string(),
        sid: sid.to_b64(),
        iat: now_s,
        nbf: now_s,
        exp,
        jti: jwt::random_b64::<16>(),
        roles: roles.to_vec(),
    })
}

/// `Set-Cookie` values for a token pair (SPEC §2), and the record that this
/// pair went to the browser's cookies: only the newest cookie token of a
/// session is renewed in line (`MemoryStore::plan_renewal`). Every token
/// cookie is written through here, so the record cannot be forgotten.
pub fn deliver_cookies(st: &State, t: &IssuedTokens) -> [String; 2] {
    if let Some((sid, _)) = crate::session::parse_refresh_token(&t.refresh_token) {
        st.store.mark_cookie_delivery(sid, t.expires_at);
    }
    let a = &st.config.auth;
    [
        format!(
            "{}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
            a.cookie.name,
            t.access_token,
            a.max_session_lifetime.as_secs()
        ),
        format!(
            "{}={}; Path={}; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            a.cookie.refresh_name,
            t.refresh_token,
            st.paths.refresh,
            a.refresh_token_ttl.as_secs()
        ),
    ]
}

/// `Set-Cookie` values that delete both cookies.
pub fn clearing_cookies(st: &State) -> [String; 2] {
    let a = &st.config.auth;
    [
        format!(
            "{}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
            a.cookie.name
        ),
        format!(
            "{}=; Path={}; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
            a.cookie.refresh_name, st.paths.refresh
        ),
    ]
}
