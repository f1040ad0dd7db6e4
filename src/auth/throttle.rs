//! Failed-signin throttling (SPEC §2 `signin_throttle`): fixed windows per
//! (username, client address), per username and per client address. Only
//! failures count; a client over any limit gets 429 with `Retry-After`.
//!
//! State is bounded: at [`MAX_ENTRIES`] new keys are not tracked (argon2
//! work stays bounded by the verifier anyway) and the sweeper drops windows
//! that have passed.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

use crate::clock::{Millis, SharedClock};
use crate::config::ThrottleConfig;

pub const MAX_ENTRIES: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    UserIp(Box<str>, IpAddr),
    User(Box<str>),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Millis,
    failures: u32,
}

pub struct Throttle {
    cfg: ThrottleConfig,
    map: DashMap<Key, Window>,
    clock: SharedClock,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig, clock: SharedClock) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            map: DashMap::new(),
            clock,
        })
    }

    fn window_ms(&self) -> u64 {
        self.cfg.window.as_millis() as u64
    }

    fn limits(&self, user: &str, ip: Option<IpAddr>) -> Vec<(Key, u32)> {
        let user: Box<str> = user.to_ascii_lowercase().into();
        let mut v = vec![(Key::User(user.clone()), self.cfg.per_user)];
        if let Some(ip) = ip {
            v.push((Key::UserIp(user, ip), self.cfg.per_user_ip));
            v.push((Key::Ip(ip), self.cfg.per_ip));
        }
        v
    }

    /// Seconds to wait if this (user, address) is over a limit.
    pub fn check(&self, user: &str, ip: Option<IpAddr>) -> Option<u64> {
        let now = self.clock.now_ms();
        let w = self.window_ms();
        self.limits(user, ip)
            .into_iter()
            .filter_map(|(k, limit)| {
                let win = *self.map.get(&k)?;
                (now < win.start + w && win.failures >= limit)
                    .then(|| (win.start + w - now).div_ceil(1000).max(1))
            })
            .max()
    }

    pub fn record_failure(&self, user: &str, ip: Option<IpAddr>) {
        let now = self.clock.now_ms();
        let w = self.window_ms();
        for (k, _) in self.limits(user, ip) {
            if self.map.len() >= MAX_ENTRIES && !self.map.contains_key(&k) {
                continue;
            }
            let mut e = self.map.entry(k).or_insert(Window {
                start: now,
                failures: 0,
            });
            if now >= e.start + w {
                *e = Window {
                    start: now,
                    failures: 0,
                };
            }
            e.failures = e.failures.saturating_add(1);
        }
    }

    /// A successful signin clears its (user, address) window.
    pub fn record_success(&self, user: &str, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.map
                .remove(&Key::UserIp(user.to_ascii_lowercase().into(), ip));
        }
    }

    pub fn purge(&self) {
        let now = self.clock.now_ms();
        let w = self.window_ms();
        self.map.retain(|_, win| now < win.start + w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    #[test]
    fn per_user_ip_limit_then_window_expires() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let t = Throttle::new(
            ThrottleConfig {
                per_user_ip: 3,
                per_user: 100,
                per_ip: 100,
                window: Duration::from_secs(60),
            },
            clock.clone(),
        );
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.check("Alice", Some(ip)), None);
            t.record_failure("Alice", Some(ip));
        }
        assert_eq!(t.check("alice", Some(ip)), Some(60));
        assert_eq!(
            t.check("alice", Some("10.9.9.9".parse().unwrap())),
            None,
            "other address unaffected"
        );
        clock.advance_ms(60_000);
        assert_eq!(t.check("alice", Some(ip)), None);
        t.purge();
        assert!(t.map.is_empty());
    }
}
