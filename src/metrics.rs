//! Every metric authgate exports, in one place (SPEC §6). Labels are bounded
//! enums or route names: never users, paths or client addresses.
//!
//! Metrics live in prometheus 0.14's default registry, the one
//! `pingora-prometheus` also serves from, so pingora's own metrics and ours are
//! gathered together by the admin listener.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Encoder, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    TextEncoder,
};

// Registration can only fail on a duplicate or malformed name, which is a
// programming error caught by the unit test below, never by user input.
macro_rules! metric {
    ($e:expr) => {
        $e.expect("metric definitions are static and valid")
    };
}

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metric!(register_int_counter_vec!(
        "authgate_requests_total",
        "Requests on the gateway listener by route and outcome.",
        &["route", "outcome"]
    ))
});

pub static SIGNIN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metric!(register_int_counter_vec!(
        "authgate_signin_total",
        "Signin attempts by result.",
        &["result"]
    ))
});

pub static REFRESH: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metric!(register_int_counter_vec!(
        "authgate_refresh_total",
        "Token refreshes by result.",
        &["result"]
    ))
});

pub static SESSIONS_ACTIVE: LazyLock<IntGauge> = LazyLock::new(|| {
    metric!(register_int_gauge!(
        "authgate_sessions_active",
        "Sessions that have not ended (recomputed by the sweeper)."
    ))
});

pub static SESSIONS_ENDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metric!(register_int_counter_vec!(
        "authgate_sessions_ended_total",
        "Sessions ended, by reason.",
        &["reason"]
    ))
});

/// Buckets from 1 µs: a cache-hit auth decision is a few µs, a signature
/// verification tens to hundreds.
pub static AUTH_DECISION: LazyLock<Histogram> = LazyLock::new(|| {
    metric!(register_histogram!(
        "authgate_auth_decision_seconds",
        "Time to decide whether a request is authenticated.",
        vec![1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3]
    ))
});

pub static SIGNIN_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    metric!(register_histogram!(
        "authgate_signin_duration_seconds",
        "Signin request duration, including password verification.",
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    ))
});

pub static UPSTREAM_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metric!(register_int_counter_vec!(
        "authgate_upstream_errors_total",
        "Requests that failed to reach or be answered by the upstream.",
        &["route"]
    ))
});

pub static CONFIG_RELOAD_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    metric!(register_int_counter!(
        "authgate_config_reload_errors_total",
        "Reloads of the users file that were refused (the previous file stays in force)."
    ))
});

pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    metric!(register_int_gauge_vec!(
        "authgate_build_info",
        "Build information; the value is always 1.",
        &["version"]
    ))
});

/// Touch every metric so that all of them appear in `/metrics` from the start
/// (a counter that is never incremented would otherwise be missing, and
/// `rate()` over a series that appears late misses its first increments).
pub fn init() {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    for r in [
        "success",
        "invalid_credentials",
        "session_active",
        "rate_limited",
        "unavailable",
        "bad_request",
    ] {
        SIGNIN.with_label_values(&[r]);
    }
    for r in [
        "success",
        "grace_replay",
        "invalid_grant",
        "reuse",
        "unavailable",
    ] {
        REFRESH.with_label_values(&[r]);
    }
    for r in crate::session::EndReason::ALL {
        SESSIONS_ENDED.with_label_values(&[r.metric_label()]);
    }
    LazyLock::force(&SESSIONS_ACTIVE);
    LazyLock::force(&AUTH_DECISION);
    LazyLock::force(&SIGNIN_DURATION);
    LazyLock::force(&UPSTREAM_ERRORS);
    LazyLock::force(&CONFIG_RELOAD_ERRORS);
    LazyLock::force(&REQUESTS);
}

/// Creates the per-route series so they show (as 0) before the first request.
pub fn init_routes<'a>(names: impl Iterator<Item = &'a str>) {
    for name in names {
        UPSTREAM_ERRORS.with_label_values(&[name]);
        for outcome in [
            "allowed",
            "public",
            "denied",
            "forbidden",
            "bad_request",
            "upstream_error",
        ] {
            REQUESTS.with_label_values(&[name, outcome]);
        }
    }
}

/// The Prometheus text exposition of the default registry.
pub fn render() -> Vec<u8> {
    let mut buf = Vec::with_capacity(8192);
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_spec_metric_is_exported() {
        super::init();
        let text = String::from_utf8(super::render()).unwrap();
        for name in [
            "authgate_signin_total",
            "authgate_refresh_total",
            "authgate_sessions_active",
            "authgate_sessions_ended_total",
            "authgate_auth_decision_seconds",
            "authgate_signin_duration_seconds",
            "authgate_config_reload_errors_total",
            "authgate_build_info",
        ] {
            assert!(text.contains(name), "{name} missing from /metrics");
        }
    }
}
