//! Signin and refresh throughput against a running gateway: the two flows
//! oha cannot drive, because every refresh must present the token the
//! previous one returned. `benches/load.py` runs this; by hand:
//!
//! ```sh
//! FLOWS_URL=http://127.0.0.1:8080 FLOWS_USER=bench FLOWS_PASSWORD=pw \
//! FLOWS_MODE=refresh FLOWS_CONC=16 FLOWS_SECONDS=5 cargo bench --bench flows
//! ```
//!
//! * `signin`: FLOWS_CONC clients sign in over and over (each a new
//!   session, so the gateway needs `concurrent_sessions.policy: allow`);
//!   argon2id bounds this, by design.
//! * `refresh`: FLOWS_CONC clients each sign in once, then refresh in a
//!   chain, each time with the refresh token the last refresh returned
//!   (real rotations, never the reuse grace).
//!
//! Prints one JSON line: mode, requests, non_2xx, errors, seconds, rps,
//! p50_ms, p99_ms. No thresholds: a measurement, not a test.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

fn env(name: &str, default: Option<&str>) -> Result<String> {
    match std::env::var(name) {
        Ok(v) => Ok(v),
        Err(_) => default
            .map(str::to_string)
            .with_context(|| format!("set {name} (see the top of benches/flows.rs)")),
    }
}

struct Worker {
    latencies_us: Vec<u32>,
    requests: u64,
    non_2xx: u64,
    errors: u64,
}

async fn signin(client: &reqwest::Client, url: &str, user: &str, pw: &str) -> Result<Value> {
    let resp = client
        .post(format!("{url}/auth/signin"))
        .json(&json!({"username": user, "password": pw, "delivery": "body"}))
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        bail!("signin answered {status}: {}", resp.text().await?);
    }
    Ok(resp.json().await?)
}

async fn worker(
    client: reqwest::Client,
    mode: String,
    url: String,
    user: String,
    pw: String,
    until: Instant,
) -> Result<Worker> {
    let mut w = Worker {
        latencies_us: Vec::new(),
        requests: 0,
        non_2xx: 0,
        errors: 0,
    };
    let mut refresh = String::new();
    if mode == "refresh" {
        let body = signin(&client, &url, &user, &pw).await?;
        refresh = body["refresh_token"]
            .as_str()
            .context("no refresh_token")?
            .to_string();
    }
    while Instant::now() < until {
        let start = Instant::now();
        let sent = if mode == "signin" {
            client
                .post(format!("{url}/auth/signin"))
                .json(&json!({"username": user, "password": pw, "delivery": "body"}))
                .send()
                .await
        } else {
            client
                .post(format!("{url}/auth/refresh"))
                .json(&json!({ "refresh_token": refresh }))
                .send()
                .await
        };
        w.requests += 1;
        match sent {
            Err(_) => w.errors += 1,
            Ok(resp) if !resp.status().is_success() => {
                w.non_2xx += 1;
                let _ = resp.bytes().await;
                if mode == "refresh" {
                    // The chain is broken: start a new one.
                    let body = signin(&client, &url, &user, &pw).await?;
                    refresh = body["refresh_token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                }
            }
            Ok(resp) => {
                let body: Value = resp.json().await?;
                if mode == "refresh" {
                    refresh = body["refresh_token"]
                        .as_str()
                        .context("refresh answered without a refresh_token")?
                        .to_string();
                }
                w.latencies_us
                    .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
        }
    }
    Ok(w)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    // `cargo bench` runs every bench target; without a gateway to point
    // at, this one has nothing to measure.
    let Ok(url) = std::env::var("FLOWS_URL") else {
        eprintln!("flows: FLOWS_URL not set, skipping (see benches/flows.rs)");
        return Ok(());
    };
    let url = url.trim_end_matches('/').to_string();
    let mode = env("FLOWS_MODE", Some("refresh"))?;
    if mode != "signin" && mode != "refresh" {
        bail!("FLOWS_MODE must be signin or refresh, not {mode:?}");
    }
    let user = env("FLOWS_USER", None)?;
    let pw = env("FLOWS_PASSWORD", None)?;
    let conc: usize = env("FLOWS_CONC", Some("8"))?
        .parse()
        .context("FLOWS_CONC must be a whole number")?;
    let secs: f64 = env("FLOWS_SECONDS", Some("5"))?
        .parse()
        .context("FLOWS_SECONDS must be a number of seconds")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()?;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..conc)
        .map(|_| {
            tokio::spawn(worker(
                client.clone(),
                mode.clone(),
                url.clone(),
                user.clone(),
                pw.clone(),
                until,
            ))
        })
        .collect();
    let (mut lat, mut requests, mut non_2xx, mut errors) = (Vec::new(), 0, 0, 0);
    for t in tasks {
        let w = t.await??;
        lat.extend(w.latencies_us);
        requests += w.requests;
        non_2xx += w.non_2xx;
        errors += w.errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    };
    println!(
        "{}",
        json!({
            "mode": mode,
            "requests": requests,
            "ok": lat.len(),
            "non_2xx": non_2xx,
            "errors": errors,
            "seconds": elapsed,
            "rps": lat.len() as f64 / elapsed,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        })
    );
    Ok(())
}
