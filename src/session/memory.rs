//! The in-process session store: a [`DashMap`] of sessions plus a per-user
//! index used to count concurrent logins atomically with the insert.
//!
//! Lock order: a `by_user` entry may be held while `sessions` is locked,
//! never the reverse. [`MemoryStore::end`] therefore touches only
//! `sessions`; stale ids in `by_user` are pruned under the user's entry (at
//! signin) and by the sweeper.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::*;
use crate::auth::users::User;
use crate::clock::{Millis, SharedClock};
use crate::config::{AuthConfig, ConcurrentPolicy};
use crate::metrics;

/// Rotated-out refresh token hashes remembered per session for reuse
/// detection; older ones are merely unknown (refused without revoking).
const RETIRED_REFRESH_HASHES: usize = 32;

/// How many re-logins in a row a double-submitted form may follow.
const MAX_RELOGIN_CHAIN: usize = 4;

/// Ended sessions are kept (as small tombstones) at least this long.
pub const TOMBSTONE_MIN_MS: u64 = 12 * 3600 * 1000;

/// Durations of [`AuthConfig`] in the units the store computes with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub access_ttl_s: u64,
    pub refresh_ttl_ms: u64,
    pub idle_ms: u64,
    pub lifetime_ms: u64,
    pub leeway_s: u64,
    pub grace_ms: u64,
    pub policy: ConcurrentPolicy,
    pub max_per_user: usize,
    pub max_total: usize,
}

impl Settings {
    pub fn from_config(a: &AuthConfig) -> Self {
        Self {
            access_ttl_s: a.access_token_ttl.as_secs().max(1),
            refresh_ttl_ms: a.refresh_token_ttl.as_millis() as u64,
            idle_ms: a.idle_timeout.as_millis() as u64,
            lifetime_ms: a.max_session_lifetime.as_millis() as u64,
            leeway_s: a.jwt.leeway.as_secs(),
            grace_ms: a.refresh_reuse_grace.as_millis() as u64,
            policy: a.policy,
            max_per_user: a.max_per_user as usize,
            max_total: usize::try_from(a.max_total).unwrap_or(usize::MAX),
        }
    }
}

#[derive(Debug)]
struct Rotation {
    /// Hash of the token that was rotated out.
    prev_hash: [u8; 32],
    at: Millis,
    successor: Arc<IssuedTokens>,
}

#[derive(Debug)]
pub struct Session {
    pub user: Arc<str>,
    user_key: Arc<str>,
    pub roles: Arc<Roles>,
    pub created_at: Millis,
    last_activity: AtomicU64,
    /// Unix seconds: the `exp` of the newest access token.
    pub expires_at: u64,
    refresh_hash: [u8; 32],
    rotated_at: Millis,
    rotation: Option<Rotation>,
    retired: Vec<[u8; 32]>,
    pub ended: Option<(EndReason, Millis)>,
    digest: [u8; 16],
    pub client: ClientInfo,
    /// Set when a re-login of the same client replaced this session, so a
    /// double-submitted form that still carries this session's cookie
    /// replaces the newer one instead of hitting the limit.
    replaced_by: Option<SessionId>,
    /// Unix seconds: the `exp` of the newest access token that went to the
    /// browser as a cookie (0: none). Only that token is renewed in line:
    /// an access token seen elsewhere (a bearer header, a log, an upstream
    /// with `forward_authorization`) cannot be turned into a refresh token
    /// by sending it as the cookie.
    cookie_exp: u64,
}

/// Where a session was created from (shown to administrators).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    /// The signin request's `User-Agent`, truncated.
    pub user_agent: Box<str>,
}

/// Longest `User-Agent` kept per session.
const MAX_USER_AGENT: usize = 256;

impl ClientInfo {
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        let ua = user_agent.unwrap_or("");
        let mut end = ua.len().min(MAX_USER_AGENT);
        while !ua.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            ip,
            user_agent: ua[..end].into(),
        }
    }
}

impl Session {
    pub fn last_activity(&self) -> Millis {
        self.last_activity.load(Ordering::Relaxed)
    }

    fn idle_deadline(&self, s: &Settings) -> Millis {
        self.last_activity() + s.idle_ms
    }

    fn lifetime_end(&self, s: &Settings) -> Millis {
        self.created_at + s.lifetime_ms
    }

    /// The last moment a refresh is accepted.
    pub fn refresh_deadline(&self, s: &Settings) -> Millis {
        (self.rotated_at + s.refresh_ttl_ms).min(self.lifetime_end(s))
    }

    /// Past `expires_at` plus the leeway.
    fn is_expired(&self, s: &Settings, now: Millis) -> bool {
        now > (self.expires_at + s.leeway_s) * 1000
    }

    /// The reason this session must end now, if any (precedence: lifetime,
    /// idle, refresh deadline).
    fn due_end(&self, s: &Settings, now: Millis) -> Option<EndReason> {
        if now > self.lifetime_end(s) {
            Some(EndReason::Lifetime)
        } else if now > self.idle_deadline(s) {
            Some(EndReason::Idle)
        } else if now > self.refresh_deadline(s) {
            Some(EndReason::Expired)
        } else {
            None
        }
    }

    /// Not ended, not due to end, not expired: counts against `max_per_user`.
    fn is_live(&self, s: &Settings, now: Millis) -> bool {
        self.ended.is_none() && self.due_end(s, now).is_none() && !self.is_expired(s, now)
    }

    /// When this live session stops blocking a new login (ms).
    fn frees_at(&self, s: &Settings) -> Millis {
        self.idle_deadline(s)
            .min((self.expires_at + s.leeway_s) * 1000)
    }
}

/// The outcome of a signin against the concurrent-login policy.
#[derive(Debug)]
pub struct Created {
    pub id: SessionId,
    pub refresh_token: String,
    pub expires_at: u64,
    pub now_s: u64,
    /// Sessions this login ended (`replace_oldest`, or the user's own).
    pub replaced: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateError {
    /// `reject` and the user is at `max_per_user`; seconds until one frees.
    SessionActive { retry_after: u64 },
    /// The store holds `max_total` sessions: no new one until the sweeper
    /// frees some.
    Full,
}

/// What a refresh has to do, decided under a read lock.
#[derive(Debug)]
pub enum RefreshPlan {
    /// Sign a new token pair for this session, then [`MemoryStore::install`].
    Rotate(RotationTicket),
    /// The predecessor within the grace: hand out the same successor.
    Replay(Arc<IssuedTokens>),
}

#[derive(Debug, Clone)]
pub struct RotationTicket {
    pub id: SessionId,
    pub user: Arc<str>,
    pub roles: Arc<Roles>,
    /// The hash the rotation replaces (compare-and-swap).
    expected: [u8; 32],
    pub now_s: u64,
    /// `exp` for the new access token (already shortened to the lifetime).
    pub expires_at: u64,
}

/// A session as listed to administrators.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub digest: String,
    pub user: Arc<str>,
    pub created_at: Millis,
    pub last_activity: Millis,
    pub expires_at: u64,
    pub client: ClientInfo,
}

pub struct MemoryStore {
    sessions: DashMap<SessionId, Session>,
    by_user: DashMap<Arc<str>, Vec<SessionId>>,
    /// Sessions not ended yet (live or renewable): bounded by `max_total`.
    open: AtomicUsize,
    settings: Settings,
    clock: SharedClock,
}

impl MemoryStore {
    pub fn new(settings: Settings, clock: SharedClock) -> Self {
        Self {
            sessions: DashMap::new(),
            by_user: DashMap::new(),
            open: AtomicUsize::new(0),
            settings,
            clock,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The per-request check (SPEC §3, §4). `token_exp` is the `exp` of the
    /// presented token (its signature and user were verified). On success the session's activity is recorded when
    /// `activity` is true. Idle or over-lifetime sessions are ended here.
    pub fn check(&self, id: SessionId, token_exp: u64, activity: bool) -> Result<Live, DenyReason> {
        let now = self.clock.now_ms();
        let s = &self.settings;
        let due = {
            let sess = self.sessions.get(&id).ok_or(DenyReason::Invalid)?;
            if let Some((reason, _)) = sess.ended {
                return Err(reason.deny_reason());
            }
            match sess.due_end(s, now) {
                Some(reason) => reason,
                None => {
                    if sess.is_expired(s, now) || now > (token_exp + s.leeway_s) * 1000 {
                        return Err(DenyReason::Expired);
                    }
                    if activity {
                        sess.last_activity.fetch_max(now, Ordering::Relaxed);
                    }
                    return Ok(Live {
                        user: sess.user.clone(),
                        roles: sess.roles.clone(),
                        expires_at: sess.expires_at,
                    });
                }
            }
        };
        self.end(id, due);
        Err(due.deny_reason())
    }

    /// True while a session may keep a long-lived connection (WebSocket,
    /// stream) open: it exists and has not ended. A session that is due to
    /// end (idle, lifetime, refresh deadline) is ended here. An expired but
    /// refreshable session stays alive.
    pub fn alive(&self, id: SessionId) -> bool {
        let now = self.clock.now_ms();
        let due = match self.sessions.get(&id) {
            None => return false,
            Some(s) if s.ended.is_some() => return false,
            Some(s) => s.due_end(&self.settings, now),
        };
        match due {
            None => true,
            Some(reason) => {
                self.end(id, reason);
                false
            }
        }
    }

    /// Records activity without any other check (the caller just checked).
    pub fn touch(&self, id: SessionId) {
        if let Some(sess) = self.sessions.get(&id) {
            sess.last_activity
                .fetch_max(self.clock.now_ms(), Ordering::Relaxed);
        }
    }

    /// A snapshot of a session (for `GET /auth/session`).
    pub fn get<R>(&self, id: SessionId, f: impl FnOnce(&Session, &Settings) -> R) -> Option<R> {
        self.sessions.get(&id).map(|sess| f(&sess, &self.settings))
    }

    /// Ends a session; true if it was live until now. Idempotent.
    pub fn end(&self, id: SessionId, reason: EndReason) -> bool {
        let now = self.clock.now_ms();
        let Some(mut sess) = self.sessions.get_mut(&id) else {
            return false;
        };
        if sess.ended.is_some() {
            return false;
        }
        sess.ended = Some((reason, now));
        // A tombstone keeps what answers "why" and recognises the session's
        // recent refresh tokens (see `issued`); the rest is dropped.
        let prev = sess.rotation.take().map(|r| r.prev_hash);
        sess.retired.clear();
        sess.retired.extend(prev);
        sess.retired.shrink_to_fit();
        sess.client.user_agent = Box::from("");
        let user = sess.user.clone();
        drop(sess);
        metrics::SESSIONS_ENDED
            .with_label_values(&[reason.metric_label()])
            .inc();
        metrics::SESSIONS_ACTIVE.dec();
        self.open.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(user = %user, session = %id.digest(), reason = reason.metric_label(), "Session ended.");
        true
    }

    /// Creates a session for `user` under the concurrent-login policy.
    /// `own` is a session the client proved to hold (its token came with the
    /// signin): it is replaced rather than counted (SPEC §4).
    pub fn create(
        &self,
        user: &User,
        own: Option<SessionId>,
        client: ClientInfo,
    ) -> Result<Created, CreateError> {
        let s = &self.settings;
        // Concurrent signins may overshoot by at most the number of
        // signins in flight, which the argon2 limit bounds.
        if self.open.load(Ordering::Relaxed) >= s.max_total {
            return Err(CreateError::Full);
        }
        let now = self.clock.now_ms();
        let key: Arc<str> = Arc::from(user.username.to_ascii_lowercase());
        let mut ids = self.by_user.entry(key.clone()).or_default();
        let mut replaced = 0;
        let id = SessionId::random();
        // Follow re-logins: the client's session may itself have just been
        // replaced by a first click of the same form.
        let own = own.map(|mut o| {
            for _ in 0..MAX_RELOGIN_CHAIN {
                let next = self.sessions.get(&o).and_then(|sess| match sess.ended {
                    Some((EndReason::Replaced, _)) => sess.replaced_by,
                    _ => None,
                });
                match next {
                    Some(n) => o = n,
                    None => break,
                }
            }
            o
        });

        // Prune what is gone, end the user's own session, list the live ones.
        let mut live: Vec<(SessionId, Millis, Millis)> = Vec::new();
        let mut keep = Vec::with_capacity(ids.len() + 1);
        for &existing in ids.iter() {
            let Some(info) = self.sessions.get(&existing).map(|sess| {
                (
                    sess.ended.is_none(),
                    sess.is_live(s, now),
                    sess.last_activity(),
                    sess.frees_at(s),
                )
            }) else {
                continue;
            };
            let (not_ended, is_live, last, frees) = info;
            if Some(existing) == own && not_ended {
                if self.end(existing, EndReason::Replaced) {
                    replaced += 1;
                    if let Some(mut sess) = self.sessions.get_mut(&existing) {
                        sess.replaced_by = Some(id);
                    }
                }
                continue;
            }
            if not_ended {
                keep.push(existing);
            }
            if is_live {
                live.push((existing, last, frees));
            }
        }

        match s.policy {
            ConcurrentPolicy::Allow => {}
            ConcurrentPolicy::Reject => {
                if live.len() >= s.max_per_user {
                    let frees = live.iter().map(|l| l.2).min().unwrap_or(now);
                    *ids = keep;
                    let retry_after = frees.saturating_sub(now).div_ceil(1000).max(1);
                    return Err(CreateError::SessionActive { retry_after });
                }
            }
            ConcurrentPolicy::ReplaceOldest => {
                live.sort_by_key(|l| l.1);
                let excess = (live.len() + 1).saturating_sub(s.max_per_user);
                for &(oldest, _, _) in live.iter().take(excess) {
                    if self.end(oldest, EndReason::Replaced) {
                        replaced += 1;
                    }
                    keep.retain(|k| *k != oldest);
                }
            }
        }

        let (refresh_token, refresh_hash) = new_refresh_token(id);
        let now_s = now / 1000;
        let expires_at = (now_s + s.access_ttl_s).min((now + s.lifetime_ms) / 1000);
        self.sessions.insert(
            id,
            Session {
                user: user.username.clone(),
                user_key: key,
                roles: user.roles.clone(),
                created_at: now,
                last_activity: AtomicU64::new(now),
                expires_at,
                refresh_hash,
                rotated_at: now,
                rotation: None,
                retired: Vec::new(),
                ended: None,
                digest: id.digest_bytes(),
                client,
                replaced_by: None,
                cookie_exp: 0,
            },
        );
        keep.push(id);
        *ids = keep;
        self.open.fetch_add(1, Ordering::Relaxed);
        metrics::SESSIONS_ACTIVE.inc();
        Ok(Created {
            id,
            refresh_token,
            expires_at,
            now_s,
            replaced,
        })
    }

    /// Decides a refresh with the presented refresh token.
    pub fn plan_refresh(&self, token: &str) -> Result<RefreshPlan, GrantError> {
        let (id, hash) = parse_refresh_token(token).ok_or(GrantError::Invalid)?;
        self.plan(id, hash)
    }

    /// Decides an in-line renewal of a cookie session (SPEC §4 "browsers are
    /// never bounced"): a rotation of the session's current refresh token,
    /// except that a request with an older token within the grace of the
    /// last rotation gets that rotation's pair, so parallel requests of one
    /// page all carry the same new cookies. `None`: nothing to do.
    pub fn plan_renewal(&self, id: SessionId, token_exp: u64) -> Option<RefreshPlan> {
        let now = self.clock.now_ms();
        let hash = {
            let sess = self.sessions.get(&id)?;
            // Parallel requests of one page at the renewal moment: the
            // first rotated, the others get its result (its cookies may not
            // have reached the browser yet, so `cookie_exp` can still be
            // the old token's).
            if sess.expires_at != token_exp && sess.cookie_exp > 0 {
                if let Some(r) = sess
                    .rotation
                    .as_ref()
                    .filter(|r| now <= r.at + self.settings.grace_ms)
                {
                    return Some(RefreshPlan::Replay(r.successor.clone()));
                }
            }
            if sess.cookie_exp != token_exp || token_exp == 0 {
                // Not the newest token this session set as a cookie: a
                // superseded cookie, or a token that only ever travelled
                // as a bearer. Not renewed.
                return None;
            }
            // The browser's cookie, even when another client of the session
            // (a script using the JSON API) refreshed since: rotate, so an
            // active browser is not bounced.
            sess.refresh_hash
        };
        self.plan(id, hash).ok()
    }

    /// Records that the access token expiring at `exp` was set as a cookie
    /// (signin, cookie refresh, renewal in line).
    pub fn mark_cookie_delivery(&self, id: SessionId, exp: u64) {
        if let Some(mut sess) = self.sessions.get_mut(&id) {
            sess.cookie_exp = sess.cookie_exp.max(exp);
        }
    }

    fn plan(&self, id: SessionId, hash: [u8; 32]) -> Result<RefreshPlan, GrantError> {
        let s = &self.settings;
        let now = self.clock.now_ms();
        let outcome = {
            let sess = self.sessions.get(&id).ok_or(GrantError::Invalid)?;
            // Only a token this session really issued learns anything about
            // it: a forged one (right session id, random rest) is "invalid".
            if !sess.issued(&hash) {
                return Err(GrantError::Invalid);
            }
            if let Some((reason, _)) = sess.ended {
                return Err(GrantError::Ended(reason.deny_reason()));
            }
            if let Some(reason) = sess.due_end(s, now) {
                Err(reason)
            } else if ct_eq(&sess.refresh_hash, &hash) {
                sess.ticket(id, hash, s, now).map(Some)
            } else if let Some(rot) = sess
                .rotation
                .as_ref()
                .filter(|r| ct_eq(&r.prev_hash, &hash))
            {
                if now <= rot.at + s.grace_ms {
                    metrics::REFRESH.with_label_values(&["grace_replay"]).inc();
                    return Ok(RefreshPlan::Replay(rot.successor.clone()));
                }
                Ok(None)
            } else if sess.retired.iter().any(|h| ct_eq(h, &hash)) {
                Ok(None)
            } else {
                return Err(GrantError::Invalid);
            }
        };
        match outcome {
            Err(reason) => {
                self.end(id, reason);
                Err(GrantError::Ended(reason.deny_reason()))
            }
            Ok(None) => {
                // A rotated-out token after the grace: whoever holds it, the
                // session can no longer be trusted.
                self.end(id, EndReason::RefreshReuse);
                Err(GrantError::Reuse)
            }
            Ok(Some(ticket)) => {
                self.check_renewal_limit(&ticket, now)?;
                Ok(RefreshPlan::Rotate(ticket))
            }
        }
    }

    /// Under `reject`, renewing an expired session must not make the user
    /// exceed `max_per_user` live sessions.
    fn check_renewal_limit(&self, t: &RotationTicket, now: Millis) -> Result<(), GrantError> {
        let s = &self.settings;
        if s.policy != ConcurrentPolicy::Reject {
            return Ok(());
        }
        let already_live = self
            .sessions
            .get(&t.id)
            .is_some_and(|sess| sess.is_live(s, now));
        if already_live {
            return Ok(());
        }
        let key = t.user.to_ascii_lowercase();
        let others = self.by_user.get(key.as_str()).map_or(0, |ids| {
            ids.iter()
                .filter(|id| **id != t.id)
                .filter(|id| self.sessions.get(id).is_some_and(|o| o.is_live(s, now)))
                .count()
        });
        if others >= s.max_per_user {
            return Err(GrantError::SessionActive);
        }
        Ok(())
    }

    /// Installs a rotation signed from `ticket` unless another request
    /// rotated first, in which case that request's successor is returned
    /// (both callers then hand out the same pair).
    pub fn install(
        &self,
        ticket: &RotationTicket,
        tokens: IssuedTokens,
    ) -> Result<Arc<IssuedTokens>, GrantError> {
        let now = self.clock.now_ms();
        let new_hash = token_hash(&tokens.refresh_token);
        let mut sess = self
            .sessions
            .get_mut(&ticket.id)
            .ok_or(GrantError::Invalid)?;
        if let Some((reason, _)) = sess.ended {
            return Err(GrantError::Ended(reason.deny_reason()));
        }
        if ct_eq(&sess.refresh_hash, &ticket.expected) {
            let tokens = Arc::new(tokens);
            if let Some(old) = sess.rotation.take() {
                if sess.retired.len() >= RETIRED_REFRESH_HASHES {
                    sess.retired.remove(0);
                }
                sess.retired.push(old.prev_hash);
            }
            sess.rotation = Some(Rotation {
                prev_hash: ticket.expected,
                at: now,
                successor: tokens.clone(),
            });
            sess.refresh_hash = new_hash;
            sess.rotated_at = now;
            sess.expires_at = tokens.expires_at;
            return Ok(tokens);
        }
        match &sess.rotation {
            Some(rot) if ct_eq(&rot.prev_hash, &ticket.expected) => {
                metrics::REFRESH.with_label_values(&["grace_replay"]).inc();
                Ok(rot.successor.clone())
            }
            _ => Err(GrantError::Invalid),
        }
    }

    /// Lists sessions (admin API): all of one user's, or every one.
    pub fn list(&self, user: Option<&str>) -> Vec<SessionInfo> {
        let key = user.map(str::to_ascii_lowercase);
        self.sessions
            .iter()
            .filter(|e| e.ended.is_none() && key.as_deref().is_none_or(|k| &*e.user_key == k))
            .map(|e| SessionInfo {
                digest: hex(&e.digest),
                user: e.user.clone(),
                created_at: e.created_at,
                last_activity: e.last_activity(),
                expires_at: e.expires_at,
                client: e.client.clone(),
            })
            .collect()
    }

    /// The session a presented refresh token really belongs to (logout by
    /// refresh token); None for unknown or forged tokens.
    pub fn session_of_refresh_token(&self, token: &str) -> Option<SessionId> {
        let (id, hash) = parse_refresh_token(token)?;
        self.sessions
            .get(&id)
            .filter(|s| s.issued(&hash))
            .map(|_| id)
    }

    /// Ends the session with this digest (admin API); false if none is live.
    pub fn end_by_digest(&self, digest: &str, reason: EndReason) -> bool {
        let id = self
            .sessions
            .iter()
            .find(|e| e.ended.is_none() && hex(&e.digest) == digest)
            .map(|e| *e.key());
        id.is_some_and(|id| self.end(id, reason))
    }

    /// Gives every session of `user` new roles (users-file reload); they
    /// apply from the next request on. Returns how many sessions changed.
    pub fn set_roles(&self, user: &str, roles: &Arc<Roles>) -> usize {
        let key = user.to_ascii_lowercase();
        let ids: Vec<SessionId> = self
            .by_user
            .get(key.as_str())
            .map(|v| v.clone())
            .unwrap_or_default();
        ids.into_iter()
            .filter(|id| {
                self.sessions.get_mut(id).is_some_and(|mut s| {
                    s.roles = roles.clone();
                    true
                })
            })
            .count()
    }

    /// Ends every live session of `user` with `reason`; returns how many.
    pub fn end_user(&self, user: &str, reason: EndReason) -> usize {
        let key = user.to_ascii_lowercase();
        let ids: Vec<SessionId> = self
            .by_user
            .get(key.as_str())
            .map(|v| v.clone())
            .unwrap_or_default();
        ids.into_iter().filter(|id| self.end(*id, reason)).count()
    }

    /// Ends sessions that are due (idle, refresh deadline, lifetime), drops
    /// tombstones whose last token has expired, prunes the user index and
    /// recounts the active gauge. Returns the number of sessions ended.
    pub fn sweep(&self) -> usize {
        let s = &self.settings;
        let now = self.clock.now_ms();
        let due: Vec<(SessionId, EndReason)> = self
            .sessions
            .iter()
            .filter(|e| e.ended.is_none())
            .filter_map(|e| e.due_end(s, now).map(|r| (*e.key(), r)))
            .collect();
        let ended = due.into_iter().filter(|(id, r)| self.end(*id, *r)).count();
        // A tombstone answers "why" until the session's last token expired,
        // and at least TOMBSTONE_MIN_MS, so that a user coming back after an
        // idle or lifetime end is told so rather than "invalid".
        self.sessions.retain(|_, sess| match sess.ended {
            None => true,
            Some((_, at)) => !sess.is_expired(s, now) || now < at + TOMBSTONE_MIN_MS,
        });
        // Tombstones are bounded too (a loop of signins under
        // replace_oldest makes one per signin): beyond `max_total`, the
        // oldest go first and their tokens are then answered as `invalid`.
        let tombstones = self
            .sessions
            .len()
            .saturating_sub(self.open.load(Ordering::Relaxed));
        if tombstones > s.max_total {
            let mut ended: Vec<(Millis, SessionId)> = self
                .sessions
                .iter()
                .filter_map(|e| e.ended.map(|(_, at)| (at, *e.key())))
                .collect();
            ended.sort_unstable_by_key(|e| e.0);
            for (_, id) in ended.iter().take(tombstones - s.max_total) {
                self.sessions.remove(id);
            }
        }
        self.by_user.retain(|_, ids| {
            ids.retain(|id| {
                self.sessions
                    .get(id)
                    .is_some_and(|sess| sess.ended.is_none())
            });
            !ids.is_empty()
        });
        metrics::SESSIONS_ACTIVE.set(self.open.load(Ordering::Relaxed) as i64);
        ended
    }
}

impl Session {
    /// True if `hash` is of a refresh token this session issued: the
    /// current one, its predecessor, or a retired one.
    fn issued(&self, hash: &[u8; 32]) -> bool {
        ct_eq(&self.refresh_hash, hash)
            || self
                .rotation
                .as_ref()
                .is_some_and(|r| ct_eq(&r.prev_hash, hash))
            || self.retired.iter().any(|h| ct_eq(h, hash))
    }

    fn ticket(
        &self,
        id: SessionId,
        expected: [u8; 32],
        s: &Settings,
        now: Millis,
    ) -> Result<RotationTicket, EndReason> {
        let now_s = now / 1000;
        let expires_at = (now_s + s.access_ttl_s).min(self.lifetime_end(s) / 1000);
        if expires_at <= now_s {
            return Err(EndReason::Lifetime);
        }
        Ok(RotationTicket {
            id,
            user: self.user.clone(),
            roles: self.roles.clone(),
            expected,
            now_s,
            expires_at,
        })
    }
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    subtle::ConstantTimeEq::ct_eq(&a[..], &b[..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    const T0: u64 = 1_700_000_000_000;

    fn settings(policy: ConcurrentPolicy, max: usize) -> Settings {
        Settings {
            access_ttl_s: 60,
            refresh_ttl_ms: 3_600_000,
            idle_ms: 30_000,
            lifetime_ms: 7_200_000,
            leeway_s: 2,
            grace_ms: 10_000,
            policy,
            max_per_user: max,
            max_total: 1_000,
        }
    }

    fn user(name: &str) -> User {
        User {
            username: Arc::from(name),
            password_hash: String::new(),
            roles: Arc::new(Roles::new(vec!["user".into()])),
            disabled: false,
        }
    }

    fn store(policy: ConcurrentPolicy, max: usize) -> (MemoryStore, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(T0));
        (
            MemoryStore::new(settings(policy, max), clock.clone()),
            clock,
        )
    }

    fn rotate(st: &MemoryStore, refresh: &str) -> Result<Arc<IssuedTokens>, GrantError> {
        match st.plan_refresh(refresh)? {
            RefreshPlan::Replay(t) => Ok(t),
            RefreshPlan::Rotate(ticket) => {
                let (rt, _) = new_refresh_token(ticket.id);
                st.install(
                    &ticket,
                    IssuedTokens {
                        access_token: "a".into(),
                        refresh_token: rt,
                        expires_at: ticket.expires_at,
                    },
                )
            }
        }
    }

    #[test]
    fn the_store_refuses_new_sessions_at_max_total_until_some_are_swept() {
        let clock = Arc::new(ManualClock::new(T0));
        let mut s = settings(ConcurrentPolicy::Allow, 1);
        s.max_total = 3;
        let st = MemoryStore::new(s, clock.clone());
        for i in 0..3 {
            st.create(&user(&format!("u{i}")), None, ClientInfo::default())
                .unwrap();
        }
        let err = st.create(&user("late"), None, ClientInfo::default());
        assert_eq!(err.err(), Some(CreateError::Full));
        // Idle sessions are ended and dropped by the sweeper: room again.
        clock.advance_ms(31_000);
        st.sweep();
        st.create(&user("late"), None, ClientInfo::default())
            .unwrap();
    }

    #[test]
    fn tombstones_are_bounded_by_max_total_oldest_first() {
        let clock = Arc::new(ManualClock::new(T0));
        let mut s = settings(ConcurrentPolicy::ReplaceOldest, 1);
        s.max_total = 3;
        let st = MemoryStore::new(s, clock.clone());
        let mut ids = Vec::new();
        for _ in 0..10 {
            clock.advance_ms(10);
            ids.push(
                st.create(&user("loop"), None, ClientInfo::default())
                    .unwrap()
                    .id,
            );
        }
        // One open session: the cap never refused the loop...
        assert_eq!(st.open.load(Ordering::Relaxed), 1);
        st.sweep();
        // ...and only the 3 newest tombstones are kept beside it.
        assert_eq!(st.sessions.len(), 4);
        assert!(st.sessions.contains_key(&ids[9]));
        for old in &ids[..6] {
            assert!(!st.sessions.contains_key(old));
        }
        assert!(st.sessions.contains_key(&ids[6]));
    }

    #[test]
    fn expires_at_is_token_exp_and_moves_with_refresh() {
        let (st, clock) = store(ConcurrentPolicy::Allow, 1);
        let c = st
            .create(&user("demo"), None, ClientInfo::default())
            .unwrap();
        assert_eq!(c.expires_at, T0 / 1000 + 60);
        clock.advance_ms(20_000);
        let t = rotate(&st, &c.refresh_token).unwrap();
        assert_eq!(t.expires_at, T0 / 1000 + 80);
        assert_eq!(st.get(c.id, |s, _| s.expires_at), Some(T0 / 1000 + 80));
    }

    #[test]
    fn idle_session_is_refused_with_idle_and_busy_one_survives() {
        let (st, clock) = store(ConcurrentPolicy::Allow, 1);
        let idle = st.create(&user("a"), None, ClientInfo::default()).unwrap();
        let busy = st.create(&user("a"), None, ClientInfo::default()).unwrap();
        for _ in 0..4 {
            clock.advance_ms(10_000);
            assert!(st.check(busy.id, busy.expires_at, true).is_ok());
        }
        assert_eq!(
            st.check(idle.id, idle.expires_at, true).unwrap_err(),
            DenyReason::Idle
        );
        // the reason stays answerable
        assert_eq!(
            st.check(idle.id, idle.expires_at, true).unwrap_err(),
            DenyReason::Idle
        );
        assert!(st.check(busy.id, busy.expires_at, false).is_ok());
    }

    #[test]
    fn activity_false_does_not_extend_idle() {
        let (st, clock) = store(ConcurrentPolicy::Allow, 1);
        let c = st.create(&user("a"), None, ClientInfo::default()).unwrap();
        clock.advance_ms(20_000);
        assert!(st.check(c.id, c.expires_at, false).is_ok());
        clock.advance_ms(20_000);
        assert_eq!(
            st.check(c.id, c.expires_at, false).unwrap_err(),
            DenyReason::Idle
        );
    }

    #[test]
    fn expired_session_is_refused_but_refreshable_and_sweeper_leaves_it() {
        let (st, clock) = store(ConcurrentPolicy::Allow, 1);
        let c = st.create(&user("a"), None, ClientInfo::default()).unwrap();
        clock.advance_ms(25_000);
        st.touch(c.id);
        clock.advance_ms(25_000);
        st.touch(c.id);
        clock.advance_ms(15_000); // 65 s: past exp + leeway, not idle
        assert_eq!(
            st.check(c.id, c.expires_at, false).unwrap_err(),
            DenyReason::Expired
        );
        assert_eq!(st.sweep(), 0);
        let t = rotate(&st, &c.refresh_token).unwrap();
        assert!(st.check(c.id, t.expires_at, true).is_ok());
    }

    #[test]
    fn refresh_is_single_use_with_grace_replay_then_reuse_revokes() {
        let (st, clock) = store(ConcurrentPolicy::Allow, 1);
        let c = st.create(&user("a"), None, ClientInfo::default()).unwrap();
        let first = rotate(&st, &c.refresh_token).unwrap();
        clock.advance_ms(5_000);
        let replay = rotate(&st, &c.refresh_token).unwrap();
        assert_eq!(
            first, replay,
            "inside the grace the same successor comes back"
        );
        clock.advance_ms(6_000);
        st.touch(c.id);
        assert_eq!(
            rotate(&st, &c.refresh_token).unwrap_err(),
            GrantError::Reuse
        );
        assert_eq!(
            st.check(c.id, first.expires_at, true).unwrap_err(),
            DenyReason::Revoked
        );
        assert!(rotate(&st, &first.refresh_token).is_err());
    }

    #[test]
    fn forged_refresh_tokens_learn_nothing_and_end_nothing() {
        let (st, _) = store(ConcurrentPolicy::Allow, 1);
        let c = st.create(&user("a"), None, ClientInfo::default()).unwrap();
        let (forged, _) = new_refresh_token(c.id);
        assert_eq!(st.session_of_refresh_token(&forged), None);
        assert_eq!(st.session_of_refresh_token(&c.refresh_token), Some(c.id));
        assert_eq!(rotate(&st, &forged).unwrap_err(), GrantError::Invalid);
        assert!(
            st.check(c.id, c.expires_at, false).is_ok(),
            "a forged token ended the session"
        );
        st.end(c.id, EndReason::Logout);
        assert_eq!(rotate(&st, &forged).unwrap_err(), GrantError::Invalid);
        assert_eq!(
            rotate(&st, &c.refresh_token).unwrap_err(),
            GrantError::Ended(DenyReason::Logout)
        );
    }

    #[test]
    fn a_lost_race_returns_the_winners_successor() {
        let (st, _) = store(ConcurrentPolicy::Allow, 1);
        let c = st.create(&user("a"), None, ClientInfo::default()).unwrap();
        let RefreshPlan::Rotate(t1) = st.plan_refresh(&c.refresh_token).unwrap() else {
            panic!()
        };
        let RefreshPlan::Rotate(t2) = st.plan_refresh(&c.refresh_token).unwrap() else {
            panic!()
        };
        let mk = |t: &RotationTicket| IssuedTokens {
            access_token: "x".into(),
            refresh_token: new_refresh_token(t.id).0,
            expires_at: t.expires_at,
        };
        let w = st.install(&t1, mk(&t1)).unwrap();
        let l = st.install(&t2, mk(&t2)).unwrap();
        assert_eq!(w, l);
    }

    #[test]
    fn reject_policy_counts_live_sessions_and_own_session_is_replaced() {
        let (st, clock) = store(ConcurrentPolicy::Reject, 1);
        let first = st
            .create(&user("Demo"), None, ClientInfo::default())
            .unwrap();
        let err = st
            .create(&user("Demo"), None, ClientInfo::default())
            .unwrap_err();
        assert_eq!(err, CreateError::SessionActive { retry_after: 30 });
        let again = st
            .create(&user("Demo"), Some(first.id), ClientInfo::default())
            .unwrap();
        assert_eq!(again.replaced, 1);
        assert_eq!(
            st.check(first.id, first.expires_at, true).unwrap_err(),
            DenyReason::Replaced
        );
        // once the live one goes idle, a new login is possible
        clock.advance_ms(31_000);
        assert!(st
            .create(&user("Demo"), None, ClientInfo::default())
            .is_ok());
    }

    #[test]
    fn a_double_submitted_relogin_replaces_the_first_clicks_session() {
        let (st, _) = store(ConcurrentPolicy::Reject, 1);
        let first = st.create(&user("u"), None, ClientInfo::default()).unwrap();
        // two clicks, both carrying the first session's cookie
        let a = st
            .create(&user("u"), Some(first.id), ClientInfo::default())
            .unwrap();
        let b = st
            .create(&user("u"), Some(first.id), ClientInfo::default())
            .unwrap();
        assert_eq!(b.replaced, 1);
        assert!(st.check(b.id, b.expires_at, false).is_ok());
        assert_eq!(
            st.check(a.id, a.expires_at, false).unwrap_err(),
            DenyReason::Replaced
        );
    }

    #[test]
    fn replace_oldest_ends_least_recently_active() {
        let (st, clock) = store(ConcurrentPolicy::ReplaceOldest, 2);
        let a = st.create(&user("u"), None, ClientInfo::default()).unwrap();
        clock.advance_ms(1000);
        let b = st.create(&user("u"), None, ClientInfo::default()).unwrap();
        clock.advance_ms(1000);
        st.touch(a.id);
        let c = st.create(&user("u"), None, ClientInfo::default()).unwrap();
        assert_eq!(c.replaced, 1);
        assert!(st.check(a.id, a.expires_at, false).is_ok());
        assert_eq!(
            st.check(b.id, b.expires_at, false).unwrap_err(),
            DenyReason::Replaced
        );
    }

    #[test]
    fn lifetime_caps_the_last_token_and_ends_the_session() {
        let (st, clock) = store(ConcurrentPolicy::Allow, 1);
        let c = st.create(&user("a"), None, ClientInfo::default()).unwrap();
        let mut refresh = c.refresh_token.clone();
        let mut exp = c.expires_at;
        // keep refreshing and active until just before the 2 h lifetime
        for _ in 0..(7_200 / 25) - 1 {
            clock.advance_ms(25_000);
            st.touch(c.id);
            let t = rotate(&st, &refresh).unwrap();
            refresh = t.refresh_token.clone();
            exp = t.expires_at;
        }
        assert!(
            exp <= (T0 + 7_200_000) / 1000,
            "token outlives the lifetime"
        );
        clock.advance_ms(Duration::from_secs(60).as_millis() as u64);
        assert_eq!(st.check(c.id, exp, true).unwrap_err(), DenyReason::Lifetime);
    }

    #[test]
    fn sweeper_ends_idle_and_drops_tombstones_after_last_exp_and_min_retention() {
        let (st, clock) = store(ConcurrentPolicy::Allow, 1);
        let c = st.create(&user("a"), None, ClientInfo::default()).unwrap();
        clock.advance_ms(31_000);
        assert_eq!(st.sweep(), 1);
        assert_eq!(
            st.check(c.id, c.expires_at, true).unwrap_err(),
            DenyReason::Idle
        );
        // past the token's exp the reason is still answerable...
        clock.advance_ms(40_000);
        st.sweep();
        assert_eq!(
            st.check(c.id, c.expires_at, true).unwrap_err(),
            DenyReason::Idle
        );
        // ...for TOMBSTONE_MIN_MS, then the tombstone goes
        clock.advance_ms(TOMBSTONE_MIN_MS);
        st.sweep();
        assert!(st.is_empty());
    }
}
