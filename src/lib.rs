//! authgate: a reverse-proxy authentication gateway on pingora.
//!
//! ```text
//!            HTTPS (rustls, h2/http1.1)
//! browser ─────────────────────────────▶ proxy::Gateway ──HTTP──▶ upstream app
//!  / API                                   │   ▲                  (X-Auth-User,
//!                                          │   │                   X-Auth-Roles, ...)
//!         /auth/* ◀── auth::endpoints ─────┤   │
//!         signin, refresh, logout,         │   │ every request: path normalized,
//!         session, activity, login page    │   │ token verified once (cache),
//!                                          ▼   │ live session checked, activity
//!                               session::MemoryStore (DashMap)
//!                                          ▲
//!                  app::Sweeper ───────────┘ ends idle / expired / over-lifetime sessions
//!
//!  admin listener: /metrics /healthz /readyz
//! ```
//!
//! `main.rs` reads as the story: cli → telemetry → [`config::Config::load`]
//! → [`app::prepare`] → [`app::build_server`] → run.

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod framing;
pub mod headers;
pub mod inject;
pub mod keys;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod session;
pub mod whoami;
