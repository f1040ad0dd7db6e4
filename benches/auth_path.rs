//! The per-request hot path, piece by piece:
//!
//! * `auth_decision/{cache_hit,cache_miss}/{EdDSA,ES256,HS256}`: token
//!   (verified-token cache or full verification) + live-session lookup +
//!   activity update; `auth_decision/invalid_token`: the 401 path.
//! * `session_check/{10k,1M}/{1,2,8}`: session lookup + activity update
//!   alone, from 1, 2 and 8 threads at once, in a store of 10k or 1M
//!   sessions (time per check, all threads together: flat means no lock
//!   or shared cache line becomes the bottleneck).
//! * `header_rewrite`: what an upstream request goes through (identity
//!   headers stripped in every spelling, `Connection` defused, the
//!   gateway's cookies removed, `X-Forwarded-*` rebuilt, identity added).
//!
//! Run: `cargo bench --bench auth_path`. No thresholds: these are
//! measurements, not tests.

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pingora::http::RequestHeader;

use authgate::app::{Assets, State};
use authgate::auth::{self, jwt::Keys, users::Users};
use authgate::clock::SystemClock;
use authgate::config::Config;

fn state(dir: &Path, alg: &str, cache: bool) -> Arc<State> {
    let pem = if alg == "ES256" {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem()
    } else {
        authgate::keys::ed25519_pkcs8_pem()
    };
    std::fs::write(dir.join("jwt.pem"), pem).unwrap();
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
        "auth:\n  jwt:\n    algorithm: {alg}\n    {key}\n  concurrent_sessions:\n    policy: allow\n    max_total: 2000000\nroutes:\n  - name: app\n    path_prefix: /\n    upstream: http://127.0.0.1:9\n"
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
    for alg in ["EdDSA", "ES256", "HS256"] {
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

/// Sessions for `n` distinct users (one user with `n` sessions would make
/// signin's per-user scan quadratic, which is not what is measured here).
fn filled_store(st: &State, n: usize) -> Vec<(authgate::session::SessionId, u64)> {
    let roles = Arc::new(authgate::auth::users::Roles::new(vec!["user".into()]));
    (0..n)
        .map(|i| {
            let user = authgate::auth::users::User {
                username: Arc::from(format!("user{i}")),
                password_hash: String::new(),
                roles: roles.clone(),
                disabled: false,
            };
            let c = st.store.create(&user, None, Default::default()).unwrap();
            (c.id, c.expires_at)
        })
        .collect()
}

fn session_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("session_check");
    g.sample_size(20);
    for (label, n) in [("10k", 10_000), ("1M", 1_000_000)] {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path(), "HS256", true);
        let ids = filled_store(&st, n);
        for threads in [1usize, 2, 8] {
            g.bench_function(BenchmarkId::new(label, threads), |b| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(threads as u64);
                    let start = std::time::Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let (st, ids) = (&st, &ids);
                            s.spawn(move || {
                                // A cheap LCG spreads the lookups over the
                                // store (and its shards) without allocating.
                                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                                for _ in 0..per {
                                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                                    let (id, exp) = ids[(x >> 33) as usize % ids.len()];
                                    let _ = std::hint::black_box(st.store.check(id, exp, true));
                                }
                            });
                        }
                    });
                    // Wall time for `iters` checks over all threads:
                    // criterion divides by `iters`.
                    start.elapsed()
                })
            });
        }
    }
    g.finish();
}

fn header_rewrite(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), "HS256", true);
    let req = bearer_request(&st);
    let authed = auth::authenticate(&st, &req, |_| true).unwrap();
    let mut up = RequestHeader::build("GET", b"/app/page?x=1", None).unwrap();
    for (k, v) in [
        ("host", "gw.example"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        (
            "cookie",
            "__Host-authgate=abc.def.ghi; app_session=42; theme=dark",
        ),
        ("x-auth-user", "mallory"),
        ("x_auth_roles", "admin"),
        ("connection", "keep-alive, x-auth-user"),
        ("x-forwarded-for", "10.0.0.1"),
        ("sec-fetch-mode", "navigate"),
        ("authorization", "Bearer abc.def.ghi"),
    ] {
        up.append_header(k, v).unwrap();
    }
    let peer = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    let fwd = authgate::headers::Forwarded::from_url(&"https://gw.example/".parse().unwrap());
    c.bench_function("header_rewrite", |b| {
        b.iter_batched(
            || up.clone(),
            |mut h| {
                authgate::headers::strip_reserved(&mut h);
                authgate::headers::sanitize_connection(&mut h, false);
                authgate::headers::strip_cookies(
                    &mut h,
                    ["__Host-authgate", "__Secure-authgate-refresh"],
                );
                h.remove_header(&http::header::AUTHORIZATION);
                authgate::headers::strip_url_overrides(&mut h);
                authgate::headers::set_forwarded(&mut h, peer, false, &fwd);
                authgate::headers::inject_identity(&mut h, &authed.live).unwrap();
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    benches,
    auth_decision,
    denial,
    session_check,
    header_rewrite
);
criterion_main!(benches);
