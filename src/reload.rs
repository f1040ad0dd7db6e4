//! Live reload of the users file, on SIGHUP or when the file changes.
//!
//! The new file is loaded and validated completely before it replaces the
//! old one; an invalid file keeps the old one in force, is logged with
//! every problem, and counts `authgate_config_reload_errors_total`.
//! Sessions follow the file at once: a removed or disabled user, a changed
//! password or a changed spelling ends that user's sessions (`revoked`);
//! changed roles apply to live sessions from their next request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::app::State;
use crate::auth::users::Users;
use crate::config::Problems;
use crate::metrics;
use crate::session::EndReason;

/// How often the users file's modification time and size are compared.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub users: usize,
    pub sessions_ended: usize,
    pub sessions_with_new_roles: usize,
}

/// Loads the users file again and applies it.
pub fn reload_users(st: &State) -> Result<Summary, Problems> {
    let path = &st.config.auth.users_file;
    let new = match Users::load(path) {
        Ok(u) if u.is_empty() => {
            return Err(Problems(vec![crate::config::Problem {
                file: path.clone(),
                key: "users".into(),
                message: "lists no users; keeping the previous file".into(),
            }]))
        }
        Ok(u) => u,
        Err(p) => return Err(p),
    };
    Ok(apply(st, new))
}

/// Swaps in `new` and brings the sessions in line with it.
pub fn apply(st: &State, new: Users) -> Summary {
    let new = Arc::new(new);
    let old = {
        let mut guard = st.users.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *guard, new.clone())
    };
    let mut summary = Summary {
        users: new.len(),
        ..Default::default()
    };
    for ou in old.iter() {
        match new.get(&ou.username) {
            Some(nu)
                if !nu.disabled
                    && nu.password_hash == ou.password_hash
                    && nu.username == ou.username =>
            {
                if nu.roles != ou.roles {
                    summary.sessions_with_new_roles += st.store.set_roles(&ou.username, &nu.roles);
                }
            }
            _ => summary.sessions_ended += st.store.end_user(&ou.username, EndReason::Revoked),
        }
    }
    summary
}

fn reload_and_log(st: &State, why: &str) {
    match reload_users(st) {
        Ok(s) => tracing::info!(
            trigger = why,
            users = s.users,
            sessions_ended = s.sessions_ended,
            sessions_with_new_roles = s.sessions_with_new_roles,
            "Users file reloaded."
        ),
        Err(problems) => {
            metrics::CONFIG_RELOAD_ERRORS.inc();
            for p in &problems.0 {
                tracing::error!(trigger = why, problem = %p, "Users file refused; the previous one stays in force.");
            }
        }
    }
}

/// Modification time and size: a cheap change detector.
fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reloads on SIGHUP and when the users file changes.
pub struct Reloader(pub Arc<State>);

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let st = &self.0;
        let path = st.config.auth.users_file.clone();
        let mut last = stamp(&path);
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGHUP; the users file is still watched.");
                None
            }
        };
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hup_recv => {
                    last = stamp(&path);
                    reload_and_log(st, "SIGHUP");
                }
                _ = tick.tick() => {
                    let now = stamp(&path);
                    if now.is_some() && now != last {
                        last = now;
                        reload_and_log(st, "file changed");
                    }
                }
            }
        }
    }
}
