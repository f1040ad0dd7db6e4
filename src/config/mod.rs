//! Configuration: `file.rs` reads YAML into a tree, `validate.rs` turns the
//! tree into the typed [`Config`] below while collecting every problem.
//!
//! A [`Config`] that exists is valid: every duration is in range, every
//! address parsed, every upstream host resolved. Files the config names
//! (users, keys, certificates) are loaded by [`crate::app::Assets`].

pub mod file;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file::{Problem, Problems};

/// The default config path of `run` and `check-config`.
pub const DEFAULT_CONFIG_PATH: &str = "config/authgate.yaml";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this config was read from (for messages).
    pub source: PathBuf,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub session_store: SessionStoreConfig,
    pub routes: Vec<RouteConfig>,
    pub demo: Option<DemoConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub http_listen: Option<SocketAddr>,
    pub admin_listen: SocketAddr,
    pub admin_token_file: Option<PathBuf>,
    /// The origin users see, e.g. `https://login.example.com` (no path).
    pub public_url: url::Url,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub threads: usize,
}

impl ServerConfig {
    /// `scheme://host[:port]` of `public_url`, as browsers send it in `Origin`.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub generate_self_signed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    EdDSA,
    ES256,
    RS256,
    HS256,
}

impl JwtAlgorithm {
    pub fn as_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::HS256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    pub algorithm: JwtAlgorithm,
    pub signing_key: PathBuf,
    pub secret_file: Option<PathBuf>,
    pub verify_keys: Vec<PathBuf>,
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcurrentPolicy {
    Reject,
    ReplaceOldest,
    Allow,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CookieConfig {
    pub name: String,
    pub refresh_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleConfig {
    pub per_user_ip: u32,
    pub per_user: u32,
    pub per_ip: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// Without a trailing slash, e.g. `/auth`.
    pub path_prefix: String,
    pub users_file: PathBuf,
    pub jwt: JwtConfig,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub idle_timeout: Duration,
    pub max_session_lifetime: Duration,
    pub cookie_auto_refresh: bool,
    pub cookie: CookieConfig,
    pub policy: ConcurrentPolicy,
    pub max_per_user: u32,
    /// Sessions the store holds at most (live, expired-but-renewable and
    /// not yet swept): a signin beyond it gets 503, memory stays bounded.
    pub max_total: u64,
    pub refresh_reuse_grace: Duration,
    pub activity_ignore_paths: Vec<String>,
    pub signin_throttle: ThrottleConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionStoreConfig {
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityMode {
    /// Browser navigations and unsafe methods count (the default).
    Interactive,
    All,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Normalized: starts with `/`, no trailing slash unless it is `/`.
    pub path_prefix: String,
    /// As written, for messages.
    pub upstream_url: String,
    /// Resolved at load time (pingora's `HttpPeer::new` would do a blocking
    /// lookup, and panic on failure, per request).
    pub upstream: SocketAddr,
    pub public_paths: Vec<String>,
    pub required_roles: Vec<String>,
    pub activity: ActivityMode,
    pub logout_paths: Vec<String>,
    pub forward_authorization: bool,
    /// Add the browser client (idle warning, logout) to upstream HTML.
    pub inject_client: bool,
    /// Unsafe methods authenticated by the cookie must come from
    /// `public_url`'s origin (CSRF); bearer requests are not affected.
    pub csrf_protection: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    pub whoami_listen: SocketAddr,
}

impl Config {
    /// Reads and validates the config file. Files it names are not read here.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        Self::from_str(&file::read_text(path)?, path)
    }

    /// Parses config text (tests and tools); `path` is only used in messages.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, Problems> {
        file::parse_with(text, path, |tree, c| validate::build(tree, path, c))
    }
}

pub use validate::{valid_role, valid_username, JWKS_PATH};
