//! Server-side sessions: one per login, with its user, roles, last activity,
//! the hash of its current refresh token and its end reason.
//!
//! Invariants (SPEC §4):
//! * `expires_at` equals the `exp` of the session's newest access token and
//!   never passes `created_at + max_session_lifetime`.
//! * A session past `expires_at` is *expired* (not live, still refreshable
//!   until its refresh deadline); the sweeper *ends* sessions only at the
//!   idle deadline, the refresh deadline or the lifetime.
//! * An ended session stays as a tombstone until its last token expires, so
//!   a request with that token is told why (`idle`, `logout`, ...).
//!
//! The only store today is [`memory::MemoryStore`] (DashMap). The per-request
//! path takes one shard read lock and updates activity with an atomic.

pub mod memory;

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::auth::users::Roles;

pub use memory::MemoryStore;

/// A random 128-bit session id. Raw ids leave the gateway only inside the
/// tokens of that session; logs and the admin API use [`SessionId::digest`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    pub fn random() -> Self {
        Self(crate::auth::jwt::random_bytes::<16>())
    }

    pub fn to_b64(self) -> String {
        B64.encode(self.0)
    }

    pub fn from_b64(s: &str) -> Option<Self> {
        if s.len() != 22 {
            return None;
        }
        let mut out = [0u8; 16];
        match B64.decode_slice(s.as_bytes(), &mut out) {
            Ok(16) => Some(Self(out)),
            _ => None,
        }
    }

    /// A one-way name for logs and the admin API (hex of SHA-256, 16 bytes).
    pub fn digest(self) -> String {
        hex(&self.digest_bytes())
    }

    pub fn digest_bytes(self) -> [u8; 16] {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut out = [0u8; 16];
        out.copy_from_slice(&d.as_ref()[..16]);
        out
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the raw id.
        write!(f, "SessionId({})", self.digest())
    }
}

/// Why a session ended (the metric label) — SPEC §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    Idle,
    /// The refresh deadline passed without a refresh.
    Expired,
    Lifetime,
    Replaced,
    /// Ended by an administrator or a users-file change.
    Revoked,
    /// A rotated-out refresh token was presented again.
    RefreshReuse,
}

impl EndReason {
    pub const ALL: [EndReason; 7] = [
        Self::Logout,
        Self::Idle,
        Self::Expired,
        Self::Lifetime,
        Self::Replaced,
        Self::Revoked,
        Self::RefreshReuse,
    ];

    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Idle => "idle",
            Self::Expired => "expired",
            Self::Lifetime => "lifetime",
            Self::Replaced => "replaced",
            Self::Revoked => "revoked",
            Self::RefreshReuse => "refresh_reuse",
        }
    }

    /// What a request presenting a token of this session is told.
    pub fn deny_reason(self) -> DenyReason {
        match self {
            Self::Logout => DenyReason::Logout,
            Self::Idle => DenyReason::Idle,
            Self::Expired => DenyReason::Expired,
            Self::Lifetime => DenyReason::Lifetime,
            Self::Replaced => DenyReason::Replaced,
            Self::Revoked | Self::RefreshReuse => DenyReason::Revoked,
        }
    }
}

/// The `reason` of a denial (SPEC §3), in no particular order; precedence
/// is applied where the reasons are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    Logout,
    Replaced,
    Revoked,
    Idle,
    Lifetime,
    Expired,
    Invalid,
    Missing,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Replaced => "replaced",
            Self::Revoked => "revoked",
            Self::Idle => "idle",
            Self::Lifetime => "lifetime",
            Self::Expired => "expired",
            Self::Invalid => "invalid",
            Self::Missing => "missing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "logout" => Self::Logout,
            "replaced" => Self::Replaced,
            "revoked" => Self::Revoked,
            "idle" => Self::Idle,
            "lifetime" => Self::Lifetime,
            "expired" => Self::Expired,
            "invalid" => Self::Invalid,
            "missing" => Self::Missing,
            _ => return None,
        })
    }
}

/// What an authenticated request learns about its session.
#[derive(Debug, Clone)]
pub struct Live {
    pub user: Arc<str>,
    pub roles: Arc<Roles>,
    /// Unix seconds; equals the newest access token's `exp`.
    pub expires_at: u64,
}

/// A token pair handed to a client. Kept (only) for the refresh grace
/// window so that parallel refreshes with one token get the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds: the access token's `exp` and the session's `expires_at`.
    pub expires_at: u64,
}

/// Why a refresh was refused (`invalid_grant` with this `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Unknown, malformed or foreign token.
    Invalid,
    /// The session ended (reason as for requests).
    Ended(DenyReason),
    /// Renewing would exceed `max_per_user` live sessions under `reject`.
    SessionActive,
    /// A rotated-out token was presented after the grace: session revoked.
    Reuse,
}

impl GrantError {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Ended(r) => r.as_str(),
            Self::SessionActive => "session_active",
            Self::Reuse => "revoked",
        }
    }
}

/// Refresh tokens are `base64url(session id ‖ 32 random bytes)`: the id
/// finds the session in O(1); only a SHA-256 of the whole token is stored.
pub fn new_refresh_token(sid: SessionId) -> (String, [u8; 32]) {
    let mut raw = [0u8; 48];
    raw[..16].copy_from_slice(&sid.0);
    raw[16..].copy_from_slice(&crate::auth::jwt::random_bytes::<32>());
    let token = B64.encode(raw);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn parse_refresh_token(token: &str) -> Option<(SessionId, [u8; 32])> {
    if token.len() != 64 {
        return None;
    }
    let mut raw = [0u8; 48];
    match B64.decode_slice(token.as_bytes(), &mut raw) {
        Ok(48) => {}
        _ => return None,
    }
    let mut sid = [0u8; 16];
    sid.copy_from_slice(&raw[..16]);
    Some((SessionId(sid), token_hash(token)))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn token_hash(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_refresh_tokens_round_trip() {
        let sid = SessionId::random();
        assert_eq!(SessionId::from_b64(&sid.to_b64()), Some(sid));
        assert_eq!(SessionId::from_b64("short"), None);
        let (tok, hash) = new_refresh_token(sid);
        assert_eq!(parse_refresh_token(&tok), Some((sid, hash)));
        assert_eq!(parse_refresh_token(&tok[1..]), None);
        assert!(!format!("{sid:?}").contains(&sid.to_b64()));
    }
}
