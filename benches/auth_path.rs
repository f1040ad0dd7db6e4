//! The per-request auth decision: token (cache hit or full verification) +
//! live-session lookup + activity update, for EdDSA and HS256.
//!
//! Run: `cargo bench --bench auth_path`. Criterion reports time per
//! decision; compare hit vs miss (the saving of the verified-token cache)
//! and EdDSA vs HS256. No thresholds: these are measurements, not tests.

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pingora::http::RequestHeader;

use authgate::app::{Assets, State};
use authgate::auth::{self, jwt::Keys, users::Users};
use authgate::clock::SystemClock;
use authgate::config::Config;

fn state(dir: &Path, alg: &str, cache: bool) -> Arc<State> {
    std::fs::write(dir.join("jwt.pem"), authgate::keys::ed25519_pkcs8_pem()).unwrap();
    std::fs::write(
        dir.join("hs.secret"),
        authgate::auth::jwt::random_bytes::<48>(),
    )
    .unwrap();
    let key = if alg == "HS256" {
        format!("secret_file: {}/hs.secret", dir.display())
    } else {
        format!("signing_key: {}/jwt.pem", dir.display())
    };
    let text = format!(
        "auth:\n  jwt:\n    algorithm: {alg}\n    {key}\n  concurrent_sessions:\n    policy: allow\nroutes:\n  - name: app\n    path_prefix: /\n    upstream: http://127.0.0.1:9\n"
    );
    let config = Config::from_str(&text, Path::new("bench.yaml")).unwrap();
    let keys = Keys::load_or_err(&config.auth.jwt).unwrap();
    let hash = authgate::auth::password::hash_password("pw").unwrap();
    let users = Users::from_str(
        &format!("users:\n  - username: alice\n    password_hash: \"{hash}\"\n    roles: [user]\n"),
        Path::new("u.yaml"),
    )
    .unwrap();
    let mut st = State::new(
        config,
        Assets {
            keys,
            users,
            admin_token: None,
        },
        Arc::new(SystemClock),
    );
    if !cache {
        Arc::get_mut(&mut st).unwrap().tokens =
            authgate::auth::jwt::TokenCache::with_capacity_limit(0);
    }
    st
}

fn bearer_request(st: &State) -> RequestHeader {
    let users = st.users();
    let user = users.get("alice").unwrap();
    let c = st.store.create(user, None, Default::default()).unwrap();
    let token = auth::sign_access(
        st,
        c.id,
        &user.username,
        &user.roles.list,
        c.now_s,
        c.expires_at,
    )
    .unwrap();
    let mut req = RequestHeader::build("GET", b"/app/x", None).unwrap();
    req.insert_header("authorization", format!("Bearer {token}"))
        .unwrap();
    req.insert_header("accept", "application/json").unwrap();
    req
}

fn auth_decision(c: &mut Criterion) {
    pingora::tls::install_default_crypto_provider();
    let mut g = c.benchmark_group("auth_decision");
    for alg in ["EdDSA", "HS256"] {
        for (label, cache) in [("cache_hit", true), ("cache_miss", false)] {
            let dir = tempfile::tempdir().unwrap();
            let st = state(dir.path(), alg, cache);
            let req = bearer_request(&st);
            assert!(auth::authenticate(&st, &req, |_| true).is_ok());
            g.bench_with_input(BenchmarkId::new(label, alg), &req, |b, req| {
                b.iter(|| auth::authenticate(&st, req, |_| true).is_ok())
            });
        }
    }
    g.finish();
}

fn denial(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), "EdDSA", true);
    let mut req = RequestHeader::build("GET", b"/app/x", None).unwrap();
    req.insert_header("authorization", "Bearer not.a.token")
        .unwrap();
    c.bench_function("auth_decision/invalid_token", |b| {
        b.iter(|| auth::authenticate(&st, &req, |_| true).is_err())
    });
}

criterion_group!(benches, auth_decision, denial);
criterion_main!(benches);
