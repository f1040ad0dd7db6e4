//! Exact endings with a manual clock: the gateway runs in this process
//! (built by the same `app::build_server` as `authgate run`) with a
//! [`ManualClock`], so hours of session life take milliseconds. Every
//! deadline is tested on both sides of its edge.

mod support;

use std::sync::Arc;
use std::time::Duration;

use authgate::app::{self, Assets, State};
use authgate::clock::{Clock, ManualClock};
use authgate::config::Config;
use serde_json::Value;
use support::*;

struct InProcess {
    gw: Gateway,
    clock: Arc<ManualClock>,
    state: Arc<State>,
}

/// Starts an in-process gateway on free ports with a manual clock.
async fn start(o: Options) -> InProcess {
    pingora::tls::install_default_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    prepare_dir(dir.path());
    let upstream = Upstream::start();
    let (port, admin_port) = (free_port(), free_port());
    let text = config_text(dir.path(), port, admin_port, upstream.addr, &o);
    let config_path = dir.path().join("authgate.yaml");
    std::fs::write(&config_path, &text).unwrap();
    let config = Config::load(&config_path).unwrap();
    let assets = Assets::load(&config).unwrap();
    let clock = Arc::new(ManualClock::new(authgate::clock::SystemClock.now_ms()));
    let state = State::new(config, assets, clock.clone());
    let server = app::build_server(state.clone()).unwrap();
    std::thread::spawn(move || server.run(pingora::server::RunArgs::default()));
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let client = client_for(dir.path(), port, false);
    InProcess {
        gw: Gateway::attach(dir, port, admin_port, config_path, upstream, client),
        clock,
        state,
    }
}

const S: u64 = 1000;
const MIN: u64 = 60 * S;

#[tokio::test]
async fn idle_ends_exactly_after_idle_timeout_and_activity_moves_it() {
    let t = start(Options {
        idle_timeout: "20m",
        access_token_ttl: "1h",
        max_session_lifetime: "2h",
        ..Default::default()
    })
    .await;
    let token = t.gw.login_token().await;
    t.clock.advance_ms(19 * MIN);
    assert_eq!(
        t.gw.get_bearer("/app/x", &token).await.status(),
        200,
        "activity at 19 min"
    );
    t.clock.advance_ms(20 * MIN); // exactly idle_timeout after the last activity
    assert_eq!(
        t.gw.get_bearer("/app/x", &token).await.status(),
        200,
        "at the edge"
    );
    t.clock.advance_ms(20 * MIN + 1);
    let r = t.gw.get_bearer("/app/x", &token).await;
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "idle");
}

#[tokio::test]
async fn refresh_keeps_a_session_going_until_the_absolute_lifetime_and_the_last_token_is_cut_to_fit(
) {
    let mut o = Options {
        idle_timeout: "30m",
        access_token_ttl: "15m",
        ..Default::default()
    };
    o.extra_auth = "";
    let t = start(o).await;
    let login = t.gw.login().await;
    let created = t.clock.now_s();
    let created_ms = t.state.store.list(Some("alice"))[0].created_at;
    let mut refresh = login["refresh_token"].as_str().unwrap().to_string();
    let mut last_exp = 0;
    let mut last_access = String::new();
    // every 10 minutes: activity + refresh, for 50 minutes (lifetime is 1h)
    let mut access = login["access_token"].as_str().unwrap().to_string();
    for _ in 0..5 {
        t.clock.advance_ms(10 * MIN);
        let _ = t.gw.get_bearer("/app/x", &access).await; // activity (refresh is not)
        let r =
            t.gw.client
                .post(t.gw.url("/auth/refresh"))
                .json(&serde_json::json!({"refresh_token": refresh}))
                .send()
                .await
                .unwrap();
        if r.status() != 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["reason"], "lifetime", "{body}");
            break;
        }
        let body: Value = r.json().await.unwrap();
        refresh = body["refresh_token"].as_str().unwrap().to_string();
        last_exp = body["session_expires_at"].as_u64().unwrap();
        last_access = body["access_token"].as_str().unwrap().to_string();
        access = last_access.clone();
        assert!(
            last_exp <= created + 3600,
            "a token outlives max_session_lifetime: exp {last_exp} > {}",
            created + 3600
        );
        assert_eq!(jwt_claims(&last_access)["exp"].as_u64(), Some(last_exp));
    }
    assert_eq!(
        last_exp,
        created + 3600,
        "the last token is shortened to end exactly at the lifetime"
    );
    // activity never extends the lifetime, which ends to the millisecond
    t.clock.set_ms(created_ms + 3600 * S);
    assert_eq!(
        t.gw.get_bearer("/app/x", &last_access).await.status(),
        200,
        "at the edge"
    );
    t.clock.set_ms(created_ms + 3600 * S + 1);
    let r = t.gw.get_bearer("/app/x", &last_access).await;
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "lifetime");
}

#[tokio::test]
async fn an_expired_session_stays_refreshable_until_its_refresh_deadline_then_ends_as_expired() {
    // refresh_token_ttl is 1h in the test profile; idle 2h so idle is not the reason
    let t = start(Options {
        idle_timeout: "2h",
        access_token_ttl: "15m",
        max_session_lifetime: "12h",
        ..Default::default()
    })
    .await;
    let login = t.gw.login().await;
    let access = login["access_token"].as_str().unwrap().to_string();
    t.clock.advance_ms(20 * MIN);
    let r = t.gw.get_bearer("/app/x", &access).await;
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "expired");
    // the sweeper does not end a session at exp
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r =
        t.gw.client
            .post(t.gw.url("/auth/refresh"))
            .json(&serde_json::json!({"refresh_token": login["refresh_token"]}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200, "an expired session must stay refreshable");
    let body: Value = r.json().await.unwrap();
    // past the refresh deadline (1h after the last rotation) the sweeper ends it
    let before =
        t.gw.metric("authgate_sessions_ended_total", "reason=\"expired\"")
            .await;
    t.clock.advance_ms(60 * MIN + S);
    assert!(
        wait_until(Duration::from_secs(5), || t
            .state
            .store
            .list(Some("alice"))
            .is_empty()),
        "the sweeper did not end it"
    );
    assert!(
        t.gw.metric("authgate_sessions_ended_total", "reason=\"expired\"")
            .await
            >= before + 1.0
    );
    let r =
        t.gw.client
            .post(t.gw.url("/auth/refresh"))
            .json(&serde_json::json!({"refresh_token": body["refresh_token"]}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_refresh_grace_is_exact() {
    let t = start(Options {
        refresh_reuse_grace: "10s",
        ..Default::default()
    })
    .await;
    let login = t.gw.login().await;
    let r0 = login["refresh_token"].as_str().unwrap().to_string();
    let refresh = |tok: String| {
        let (c, u) = (t.gw.client.clone(), t.gw.url("/auth/refresh"));
        async move {
            c.post(u)
                .json(&serde_json::json!({"refresh_token": tok}))
                .send()
                .await
                .unwrap()
        }
    };
    let first: Value = refresh(r0.clone()).await.json().await.unwrap();
    t.clock.advance_ms(10 * S);
    let again = refresh(r0.clone()).await;
    assert_eq!(again.status(), 200, "inside the grace");
    assert_eq!(
        again.json::<Value>().await.unwrap()["refresh_token"],
        first["refresh_token"]
    );
    t.clock.advance_ms(1);
    assert_eq!(
        refresh(r0).await.status(),
        401,
        "one millisecond after the grace"
    );
    let r =
        t.gw.get_bearer("/app/x", first["access_token"].as_str().unwrap())
            .await;
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "revoked");
}

#[tokio::test]
async fn end_reasons_stay_answerable_after_the_sweeper_until_the_last_token_expires() {
    let t = start(Options {
        policy: "replace_oldest",
        max_per_user: 1,
        idle_timeout: "30m",
        access_token_ttl: "15m",
        ..Default::default()
    })
    .await;
    let old = t.gw.login_token().await;
    let _new = t.gw.login().await;
    t.clock.advance_ms(5 * MIN);
    tokio::time::sleep(Duration::from_millis(1300)).await; // a sweep ran
    let r = t.gw.get_bearer("/app/x", &old).await;
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "replaced");
    // after the token's exp the tombstone is gone; the token is just expired
    t.clock.advance_ms(11 * MIN);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = t.gw.get_bearer("/app/x", &old).await;
    assert_eq!(r.status(), 401);
}
