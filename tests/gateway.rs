//! End-to-end behaviour of the gateway core: a real `authgate run` and a
//! real upstream on ephemeral ports, over HTTPS.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

#[tokio::test]
async fn signin_then_proxied_request_carries_identity_over_h2() {
    let gw = Gateway::start().await;
    let login = gw.login().await;
    for field in [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "session_expires_at",
        "idle_timeout",
    ] {
        assert!(login.get(field).is_some(), "signin lacks {field}: {login}");
    }
    assert_eq!(login["idle_timeout"], 60);
    let token = login["access_token"].as_str().unwrap();
    let resp = gw.get_bearer("/app/x?q=1", token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.version(),
        reqwest::Version::HTTP_2,
        "ALPN should negotiate h2"
    );
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["path"], "/app/x");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(header_values(&echo, "x-auth-user"), vec!["alice"]);
    assert_eq!(header_values(&echo, "x-auth-roles"), vec!["user"]);
    // session_expires_at == the JWT's exp == X-Auth-Session-Expires
    let exp = jwt_claims(token)["exp"].as_u64().unwrap();
    assert_eq!(login["session_expires_at"].as_u64(), Some(exp));
    assert_eq!(
        header_values(&echo, "x-auth-session-expires"),
        vec![exp.to_string()]
    );
    // the bearer token is not forwarded by default
    assert!(header_values(&echo, "authorization").is_empty());
}

#[tokio::test]
async fn token_claims_and_header_are_the_contracted_ones() {
    let gw = Gateway::start().await;
    let login = gw.login().await;
    let token = login["access_token"].as_str().unwrap();
    let claims = jwt_claims(token);
    for c in [
        "iss", "aud", "sub", "sid", "iat", "nbf", "exp", "jti", "roles",
    ] {
        assert!(claims.get(c).is_some(), "claim {c} missing: {claims}");
    }
    assert_eq!(claims["sub"], "alice");
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    // JWKS publishes the key under the token's kid
    let jwks: Value = gw
        .client
        .get(gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let gw = Gateway::start().await;
    let token = gw.login_token().await;
    let spoof = |rb: reqwest::RequestBuilder| {
        rb.header("X-Auth-User", "mallory")
            .header("x-auth-user", "mallory2")
            .header("X_Auth_User", "mallory3")
            .header("x-auth-roles", "admin")
            .header("X-AUTH-SESSION-EXPIRES", "9999999999")
            .header("X-Auth-Extra", "x")
            .header("Connection", "X-Auth-User")
    };
    // protected path: only the injected values arrive
    let echo: Value = spoof(gw.client.get(gw.url("/app/x")).bearer_auth(&token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(header_values(&echo, "x-auth-user"), vec!["alice"]);
    assert_eq!(header_values(&echo, "x-auth-roles"), vec!["user"]);
    let auth_like: Vec<_> = upstream_headers(&echo)
        .into_iter()
        .filter(|(k, _)| {
            k.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-auth-")
        })
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        auth_like,
        vec!["x-auth-user", "x-auth-roles", "x-auth-session-expires"]
    );
    assert!(header_values(&echo, "connection")
        .iter()
        .all(|v| !v.to_ascii_lowercase().contains("x-auth")));
    // URL-override and RFC 7239 headers a client sends are not forwarded
    let echo: Value = gw
        .client
        .get(gw.url("/public/x"))
        .header("X-Original-URL", "/admin")
        .header("X-Rewrite-URL", "/admin")
        .header("Forwarded", "for=6.6.6.6;host=evil.example")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Host", "evil.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for h in ["x-original-url", "x-rewrite-url", "forwarded"] {
        assert!(header_values(&echo, h).is_empty(), "{h} forwarded");
    }
    assert_eq!(header_values(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(
        header_values(&echo, "x-forwarded-host"),
        vec![format!("localhost:{}", gw.port)]
    );
    assert_eq!(header_values(&echo, "x-forwarded-proto"), vec!["https"]);
    // public path: none arrive at all
    let echo: Value = spoof(gw.client.get(gw.url("/public/x")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let leaked: Vec<_> = upstream_headers(&echo)
        .into_iter()
        .filter(|(k, _)| {
            k.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-auth-")
        })
        .collect();
    assert!(leaked.is_empty(), "public path forwarded {leaked:?}");
}

#[tokio::test]
async fn spoofing_with_raw_duplicate_and_underscore_headers_over_http1() {
    let gw = Gateway::start().await;
    let token = gw.login_token().await;
    let req = format!(
        "GET /app/raw HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nX-Auth-User: a\r\nX-Auth-User: b\r\nx_auth_roles: admin\r\nX-AUTH-ROLES: root\r\nConnection: close\r\n\r\n"
    );
    let raw = raw_tls(gw.dir.path(), gw.port, req.as_bytes()).await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
    let echo: Value = serde_json::from_str(
        body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '\r' || c == '\n'),
    )
    .unwrap_or_else(|_| {
        // chunked body: take the JSON object
        let start = body.find('{').unwrap();
        let end = body.rfind('}').unwrap();
        serde_json::from_str(&body[start..=end]).unwrap()
    });
    assert_eq!(header_values(&echo, "x-auth-user"), vec!["alice"]);
    assert_eq!(header_values(&echo, "x-auth-roles"), vec!["user"]);
    assert!(header_values(&echo, "x_auth_roles").is_empty());
}

#[tokio::test]
async fn the_gateways_cookies_are_stripped_and_the_apps_pass() {
    let gw = Gateway::start().await;
    let r = gw.signin("alice", PASSWORD).await;
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let access = cookies
        .iter()
        .find(|c| c.starts_with("__Host-authgate="))
        .expect("access cookie");
    assert!(
        access.contains("HttpOnly")
            && access.contains("Secure")
            && access.contains("SameSite=Lax")
            && access.contains("Path=/;")
    );
    let refresh = cookies
        .iter()
        .find(|c| c.starts_with("__Secure-authgate-refresh="))
        .expect("refresh cookie");
    assert!(refresh.contains("Path=/auth/refresh"));
    let pair = access.split(';').next().unwrap();
    let resp = gw
        .client
        .get(gw.url("/app/page"))
        .header("cookie", format!("theme=dark; {pair}; lang=en"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(header_values(&echo, "x-auth-user"), vec!["alice"]);
    assert_eq!(header_values(&echo, "cookie"), vec!["theme=dark; lang=en"]);
}

#[tokio::test]
async fn idle_session_is_refused_with_reason_idle_and_counted_while_a_busy_one_survives() {
    let gw = Gateway::start_with(Options {
        idle_timeout: "2s",
        ..Default::default()
    })
    .await;
    let before = gw
        .metric("authgate_sessions_ended_total", "reason=\"idle\"")
        .await;
    let idle = gw.login_token().await;
    let busy = gw.login_token().await;
    assert_eq!(gw.get_bearer("/app/x", &idle).await.status(), 200);
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            gw.get_bearer("/app/busy", &busy).await.status(),
            200,
            "busy session refused"
        );
    }
    let resp = gw.get_bearer("/app/x", &idle).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "unauthorized", "reason": "idle"})
    );
    let after = gw
        .metric("authgate_sessions_ended_total", "reason=\"idle\"")
        .await;
    assert!(
        after >= before + 1.0,
        "idle metric went {before} -> {after}"
    );
    assert_eq!(gw.get_bearer("/app/busy", &busy).await.status(), 200);
}

#[tokio::test]
async fn xhr_polling_of_an_ignored_path_does_not_keep_a_session_alive() {
    let gw = Gateway::start_with(Options {
        idle_timeout: "2s",
        ..Default::default()
    })
    .await;
    let r = gw.signin("alice", PASSWORD).await;
    let pair = cookie_pair(&r, "__Host-authgate");
    // cookie XHR (not a navigation) under activity: interactive does not count
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = gw
            .client
            .get(gw.url("/app/api"))
            .header("cookie", &pair)
            .header("x-requested-with", "XMLHttpRequest")
            .send()
            .await
            .unwrap();
    }
    let resp = gw
        .client
        .get(gw.url("/app/api"))
        .header("cookie", &pair)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["reason"], "idle");
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_fails_after_the_grace() {
    let gw = Gateway::start().await;
    let login = gw.login().await;
    let old_refresh = login["refresh_token"].as_str().unwrap();
    let r = gw
        .client
        .post(gw.url("/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": old_refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let new_access = body["access_token"].as_str().unwrap();
    assert_ne!(new_access, login["access_token"].as_str().unwrap());
    assert_ne!(body["refresh_token"], login["refresh_token"]);
    assert_eq!(
        body["session_expires_at"].as_u64(),
        jwt_claims(new_access)["exp"].as_u64()
    );
    assert_eq!(gw.get_bearer("/app/x", new_access).await.status(), 200);
    // past refresh_reuse_grace (1s) the predecessor is a reuse
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let again = gw
        .client
        .post(gw.url("/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": old_refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    // and the reuse revoked the session
    let resp = gw.get_bearer("/app/x", new_access).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["reason"], "revoked");
}

#[tokio::test]
async fn refresh_by_cookie_resets_the_cookies_and_omits_the_token() {
    let gw = Gateway::start().await;
    let r = gw.signin("alice", PASSWORD).await;
    let refresh_pair = cookie_pair(&r, "__Secure-authgate-refresh");
    let r = gw
        .client
        .post(gw.url("/auth/refresh"))
        .header("cookie", &refresh_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body.get("access_token").is_some());
}

#[tokio::test]
async fn logout_makes_the_access_token_fail_at_once() {
    let gw = Gateway::start().await;
    let token = gw.login_token().await;
    assert_eq!(gw.get_bearer("/app/x", &token).await.status(), 200);
    let r = gw
        .client
        .post(gw.url("/auth/logout"))
        .bearer_auth(&token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter(|c| c.to_str().unwrap().contains("Max-Age=0"))
            .count(),
        2
    );
    let resp = gw.get_bearer("/app/x", &token).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["reason"], "logout");
    // idempotent
    let r = gw
        .client
        .post(gw.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn the_apps_logout_path_and_header_end_the_gateway_session() {
    let gw = Gateway::start().await;
    let token = gw.login_token().await;
    let r = gw.get_bearer("/app/logout", &token).await;
    assert_eq!(r.status(), 200, "the logout path itself is forwarded");
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("__Host-authgate=;")));
    assert_eq!(gw.get_bearer("/app/x", &token).await.status(), 401);
    // the app's own spelling of its logout link ends the session too
    let token = gw.login_token().await;
    assert_eq!(
        gw.get_bearer("/APP/Logout;jsessionid=0AB1", &token)
            .await
            .status(),
        200
    );
    assert_eq!(gw.get_bearer("/app/x", &token).await.status(), 401);
}

#[tokio::test]
async fn a_second_signin_under_reject_gets_409_after_the_password_check() {
    let gw = Gateway::start_with(Options {
        policy: "reject",
        ..Default::default()
    })
    .await;
    let first = gw.login().await;
    let second = gw.signin("alice", PASSWORD).await;
    assert_eq!(second.status(), 409);
    assert!(second.headers().get("retry-after").is_some());
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"], "session_active");
    assert!(body["retry_after"].as_u64().unwrap() >= 1);
    // a wrong password still gets 401, never 409 (no oracle)
    assert_eq!(gw.signin("alice", "wrong").await.status(), 401);
    // a re-login presenting the user's own session replaces it
    let own = first["access_token"].as_str().unwrap();
    let again = gw
        .client
        .post(gw.url("/auth/signin"))
        .bearer_auth(own)
        .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let resp = gw.get_bearer("/app/x", own).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["reason"], "replaced");
}

#[tokio::test]
async fn replace_oldest_ends_the_least_recently_active_session() {
    let gw = Gateway::start_with(Options {
        policy: "replace_oldest",
        max_per_user: 2,
        ..Default::default()
    })
    .await;
    let a = gw.login_token().await;
    let b = gw.login_token().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(gw.get_bearer("/app/x", &a).await.status(), 200); // a is now more recent than b
    let _c = gw.login().await;
    assert_eq!(gw.get_bearer("/app/x", &a).await.status(), 200);
    let resp = gw.get_bearer("/app/x", &b).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["reason"], "replaced");
}

#[tokio::test]
async fn browser_denial_redirects_with_encoded_rd_and_api_denial_is_401_json() {
    let gw = Gateway::start().await;
    let r = gw
        .client
        .get(gw.url("/app/page?a=1&b=2"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert_eq!(
        loc,
        "/auth/login?rd=%2Fapp%2Fpage%3Fa%3D1%26b%3D2&reason=missing"
    );
    let r = gw
        .client
        .post(gw.url("/app/form"))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = gw
        .client
        .get(gw.url("/app/page"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer realm="authgate", error="invalid_token""#
    );
    assert!(r.headers().get("location").is_none());
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"error": "unauthorized", "reason": "missing"})
    );
    // XHR asking for HTML is not a navigation
    let r = gw
        .client
        .get(gw.url("/app/page"))
        .header("accept", "text/html")
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // a garbage token is "invalid"
    let r = gw.get_bearer("/app/x", "not.a.token").await;
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "invalid");
}

#[tokio::test]
async fn unknown_user_wrong_password_and_disabled_user_get_identical_401s() {
    let gw = Gateway::start().await;
    let mut seen = Vec::new();
    for (u, p) in [
        ("alice", "nope"),
        ("nobody-here", "nope"),
        ("dora", PASSWORD),
        ("ALICE", "nope"),
    ] {
        let r = gw.signin(u, p).await;
        let status = r.status();
        let headers: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        seen.push((status, headers, r.bytes().await.unwrap()));
    }
    assert_eq!(seen[0].0, 401);
    assert_eq!(&seen[0].2[..], br#"{"error":"invalid_credentials"}"#);
    for other in &seen[1..] {
        assert_eq!(other, &seen[0]);
    }
    // usernames are case-insensitive; the file's spelling is canonical
    let r = gw.signin("bob", BOB_PASSWORD).await;
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let echo: Value = gw.get_bearer("/app/x", &token).await.json().await.unwrap();
    assert_eq!(header_values(&echo, "x-auth-user"), vec!["Bob"]);
    assert_eq!(header_values(&echo, "x-auth-roles"), vec!["user,admin"]);
}

#[tokio::test]
async fn malformed_and_unsupported_signin_bodies() {
    let gw = Gateway::start().await;
    for body in [
        &br#"{"username": "alice", "password": "#[..],
        b"not json",
        br#"["alice"]"#,
        br#"{"username": 1}"#,
    ] {
        let r = gw
            .client
            .post(gw.url("/auth/signin"))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            serde_json::json!({"error": "invalid_request"})
        );
    }
    let r = gw
        .client
        .post(gw.url("/auth/signin"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = gw
        .client
        .post(gw.url("/auth/signin"))
        .header("content-type", "application/json")
        .body(vec![b' '; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = gw.client.get(gw.url("/auth/signin")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn form_signin_redirects_only_to_our_own_origin() {
    let gw = Gateway::start().await;
    let page = gw
        .client
        .get(gw.url("/auth/login?rd=%2Fapp%2Fdeep%3Fx%3D1&reason=idle"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    // the page's only style is allowed by this response's nonce
    let csp_nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    assert!(
        html.contains(&format!("<style nonce=\"{csp_nonce}\">")),
        "{html}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert!(html.contains("inactivity"), "reason not shown");
    assert!(
        html.contains(r#"name="rd" value="/app/deep?x=1""#),
        "{html}"
    );
    for (rd, want) in [
        ("/app/deep?x=1", "/app/deep?x=1"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ] {
        let form = format!(
            "username=alice&password={PASSWORD}&rd={}",
            authgate::error::query_encode(rd)
        );
        let r = gw
            .client
            .post(gw.url("/auth/signin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "rd {rd}");
        assert_eq!(r.headers()["location"], want, "rd {rd}");
        let tok = cookie_pair(&r, "__Host-authgate");
        gw.client
            .post(gw.url("/auth/logout"))
            .header("cookie", tok)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
    }
    let r = gw
        .client
        .post(gw.url("/auth/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=alice&password=bad&rd=%2Fx")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/auth/login?error=invalid_credentials&rd=%2Fx"
    );
    // the login page never echoes raw input
    let html = gw
        .client
        .get(gw.url("/auth/login?error=%3Cscript%3E&reason=%3Cb%3E"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>") && !html.contains("<b>"));
}

#[tokio::test]
async fn session_and_activity_endpoints() {
    let gw = Gateway::start().await;
    let token = gw.login_token().await;
    let s: Value = gw
        .get_bearer("/auth/session", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["user"], "alice");
    assert_eq!(s["roles"], serde_json::json!(["user"]));
    for f in [
        "session_expires_at",
        "idle_expires_at",
        "refresh_expires_at",
        "now",
    ] {
        assert!(s[f].as_u64().is_some(), "{f} in {s}");
    }
    let r = gw
        .client
        .post(gw.url("/auth/activity"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = gw
        .client
        .post(gw.url("/auth/activity"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn ambiguous_paths_are_refused_and_dot_segments_cannot_reach_private_paths() {
    let gw = Gateway::start().await;
    for raw in [
        "/public/..%2Fapp",
        "/public/%2e%2e%5capp",
        "/public\\..\\app",
        "/a%00b",
        "/..",
        "/public/%2e%2e/%2e%2e/x",
    ] {
        let req = format!("GET {raw} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let resp = raw_tls(gw.dir.path(), gw.port, req.as_bytes()).await;
        assert!(
            resp.starts_with("HTTP/1.1 400"),
            "{raw}: {}",
            resp.lines().next().unwrap_or("")
        );
    }
    // dot segments resolve before matching: /public/../app/x is /app/x, which needs auth
    for raw in [
        "/public/../app/x",
        "/public/%2e%2e/app/x",
        "/public/..;x/app/x",
        "/public;x/secret",
    ] {
        let req = format!("GET {raw} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
        let resp = raw_tls(gw.dir.path(), gw.port, req.as_bytes()).await;
        assert!(
            resp.starts_with("HTTP/1.1 401"),
            "{raw}: {}",
            resp.lines().next().unwrap_or("")
        );
    }
    // and the normalized path is what the upstream receives
    let req = "GET /public/./a//b/../c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let resp = raw_tls(gw.dir.path(), gw.port, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""path": "/public/a/c""#), "{resp}");
}

#[tokio::test]
async fn trace_and_lower_case_methods_are_refused() {
    let gw = Gateway::start().await;
    let r = gw
        .client
        .request(reqwest::Method::TRACE, gw.url("/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    for m in ["trace", "get", "Post"] {
        let req = format!("{m} /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let resp = raw_tls(gw.dir.path(), gw.port, req.as_bytes()).await;
        assert!(
            resp.starts_with("HTTP/1.1 400"),
            "{m}: {}",
            resp.lines().next().unwrap_or("")
        );
    }
}

#[tokio::test]
async fn required_roles_give_403_to_users_without_them() {
    let gw = Gateway::start_with(Options {
        extra_routes: "  - name: admin\n    path_prefix: /admin\n    upstream: http://UPSTREAM\n    required_roles: [admin]\n",
        ..Default::default()
    })
    .await;
    let alice = gw.login_token().await;
    let r = gw.get_bearer("/admin/x", &alice).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"error": "forbidden"})
    );
    // case and ;params do not escape the admin route
    assert_eq!(gw.get_bearer("/ADMIN/x", &alice).await.status(), 403);
    assert_eq!(gw.get_bearer("/admin;x=1/x", &alice).await.status(), 403);
    for trick in ["/admin./x", "/admin%20/x", "/admin%2e/x", "/Admin.%20/x"] {
        assert_eq!(gw.get_bearer(trick, &alice).await.status(), 403, "{trick}");
    }
    let bob = gw
        .signin("Bob", BOB_PASSWORD)
        .await
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(gw.get_bearer("/admin/x", &bob).await.status(), 200);
}

#[tokio::test]
async fn a_stopped_upstream_gives_502_with_a_generic_body() {
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gw = Gateway::start_with(Options {
        upstream: Some(closed),
        ..Default::default()
    })
    .await;
    let token = gw.login_token().await;
    let r = gw.get_bearer("/app/x", &token).await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), r#"{"error":"bad_gateway"}"#);
    let m = gw
        .metric("authgate_upstream_errors_total", "route=\"app\"")
        .await;
    assert!(m >= 1.0);
}

#[tokio::test]
async fn hs256_works_end_to_end_and_publishes_no_keys() {
    let gw = Gateway::start_with(Options {
        algorithm: "HS256",
        ..Default::default()
    })
    .await;
    let token = gw.login_token().await;
    assert_eq!(gw.get_bearer("/app/x", &token).await.status(), 200);
    let jwks: Value = gw
        .client
        .get(gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, serde_json::json!({"keys": []}));
}

#[tokio::test]
async fn expired_cookie_token_is_renewed_in_line_and_bearer_is_not() {
    let gw = Gateway::start_with(Options {
        access_token_ttl: "2s",
        ..Default::default()
    })
    .await;
    let r = gw.signin("alice", PASSWORD).await;
    let pair = cookie_pair(&r, "__Host-authgate");
    let body: Value = r.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3600)).await; // past exp + 1 s leeway
    let bearer = gw
        .get_bearer("/app/x", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(bearer.status(), 401);
    assert_eq!(bearer.json::<Value>().await.unwrap()["reason"], "expired");
    let resp = gw
        .client
        .get(gw.url("/app/page"))
        .header("cookie", &pair)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "a browser must not be bounced while active"
    );
    let renewed: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(renewed.len(), 2, "{renewed:?}");
    let new_pair = renewed[0].split(';').next().unwrap();
    assert_ne!(new_pair, pair);
    let ok = gw
        .client
        .get(gw.url("/app/page"))
        .header("cookie", new_pair)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn admin_listener_serves_metrics_health_and_readiness() {
    let gw = Gateway::start().await;
    let _ = gw.login().await;
    let text = gw.metrics().await;
    for name in [
        "authgate_requests_total",
        "authgate_signin_total",
        "authgate_refresh_total",
        "authgate_sessions_active",
        "authgate_sessions_ended_total",
        "authgate_auth_decision_seconds",
        "authgate_signin_duration_seconds",
        "authgate_upstream_errors_total",
        "authgate_config_reload_errors_total",
        "authgate_build_info",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    assert_eq!(
        metric_value(&text, "authgate_signin_total", "result=\"success\""),
        1.0
    );
    assert_eq!(metric_value(&text, "authgate_sessions_active", ""), 1.0);
    for p in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("http://127.0.0.1:{}{p}", gw.admin_port))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{p}");
    }
}

#[tokio::test]
async fn failed_signins_are_throttled_with_retry_after() {
    let gw = Gateway::start_with(Options {
        extra_auth: "  signin_throttle:\n    per_user_ip: 3\n    window: 1m\n",
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(gw.signin("alice", "wrong").await.status(), 401);
    }
    // now even the right password waits: the window counts failures
    let r = gw.signin("alice", PASSWORD).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"error": "rate_limited"})
    );
    // another user is not affected
    assert_eq!(gw.signin("Bob", BOB_PASSWORD).await.status(), 200);
    assert!(
        gw.metric("authgate_signin_total", "result=\"rate_limited\"")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn request_bodies_and_methods_reach_the_upstream_intact() {
    let gw = Gateway::start().await;
    let token = gw.login_token().await;
    let body = vec![b'x'; 200_000];
    let r = gw
        .client
        .put(gw.url("/app/upload"))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_bytes"], 200_000);
}

#[tokio::test]
async fn admin_api_lists_by_digest_and_revokes_one_or_all() {
    use reqwest::Method;
    let gw = Gateway::start().await;
    let a = gw.login_token().await;
    let b = gw.login_token().await;
    let _bob = gw.signin("Bob", BOB_PASSWORD).await;
    assert_eq!(
        gw.admin(Method::GET, "/admin/sessions?user=alice", None)
            .await
            .status(),
        401
    );
    assert_eq!(
        gw.admin(
            Method::GET,
            "/admin/sessions?user=alice",
            Some("wrong-token-wrong-token")
        )
        .await
        .status(),
        401
    );
    let list: Value = gw
        .admin(Method::GET, "/admin/sessions?user=ALICE", Some(ADMIN_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    let sid_a = jwt_claims(&a)["sid"].as_str().unwrap().to_string();
    for s in sessions {
        assert_eq!(s["user"], "alice");
        assert_eq!(s["client_ip"], "127.0.0.1");
        let id = s["id"].as_str().unwrap();
        assert_eq!(id.len(), 32, "a digest, not the raw id");
        assert_ne!(id, sid_a);
    }
    let first = sessions[0]["id"].as_str().unwrap().to_ascii_uppercase();
    let r = gw
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{first}"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(r.status(), 204);
    let working: Vec<&String> = {
        let mut w = Vec::new();
        for t in [&a, &b] {
            if gw.get_bearer("/app/x", t).await.status() == 200 {
                w.push(t);
            }
        }
        w
    };
    assert_eq!(working.len(), 1);
    let r = gw
        .admin(
            Method::DELETE,
            "/admin/users/alice/sessions",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["ended"], 1);
    let denied = gw.get_bearer("/app/x", working[0]).await;
    assert_eq!(denied.json::<Value>().await.unwrap()["reason"], "revoked");
    assert_eq!(
        gw.admin(
            Method::DELETE,
            "/admin/sessions/00000000000000000000000000000000",
            Some(ADMIN_TOKEN)
        )
        .await
        .status(),
        404
    );
    // Bob's session is untouched
    let all: Value = gw
        .admin(Method::GET, "/admin/sessions?user=", Some(ADMIN_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn sighup_reloads_users_roles_apply_at_once_and_removed_users_are_revoked() {
    let gw = Gateway::start().await;
    let alice = gw.login_token().await;
    let bob = gw
        .signin("Bob", BOB_PASSWORD)
        .await
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let new_alice_pw = "alice-new-password-2";
    // alice: new roles; Bob: removed
    gw.write_users(&format!(
        "users:\n  - username: alice\n    password_hash: \"{}\"\n    roles: [user, auditor]\n",
        // same hash text as before is required to keep her sessions: reuse the file's
        current_hash(&gw, "alice")
    ));
    gw.signal(libc::SIGHUP);
    assert!(
        wait_async(|| async { gw.get_bearer("/app/x", &bob).await.status() == 401 }).await,
        "Bob's session survived his removal"
    );
    let echo: Value = gw.get_bearer("/app/x", &alice).await.json().await.unwrap();
    assert_eq!(
        header_values(&echo, "x-auth-roles"),
        vec!["user,auditor"],
        "roles did not apply to the live session"
    );
    let denied = gw
        .get_bearer("/app/x", &bob)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(denied["reason"], "revoked");
    assert_eq!(gw.signin("Bob", BOB_PASSWORD).await.status(), 401);

    // an invalid file keeps the old one and is counted
    let before = gw.metric("authgate_config_reload_errors_total", "").await;
    gw.write_users("users:\n  - username: 'bad name'\n    password_hash: nope\n");
    gw.signal(libc::SIGHUP);
    assert!(
        wait_async(|| async {
            gw.metric("authgate_config_reload_errors_total", "").await > before
        })
        .await
    );
    assert_eq!(gw.get_bearer("/app/x", &alice).await.status(), 200);
    assert!(
        gw.log().contains("users[0].username"),
        "the log does not say why"
    );

    // a changed password ends the sessions, picked up by the file watcher alone
    gw.write_users(&format!(
        "users:\n  - username: alice\n    password_hash: \"{}\"\n    roles: [user]\n",
        hash(new_alice_pw)
    ));
    assert!(
        wait_async(|| async { gw.get_bearer("/app/x", &alice).await.status() == 401 }).await,
        "the watcher did not apply the changed password"
    );
    assert_eq!(gw.signin("alice", new_alice_pw).await.status(), 200);
}

async fn wait_async<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn current_hash(gw: &Gateway, user: &str) -> String {
    let text = std::fs::read_to_string(gw.dir.path().join("users.yaml")).unwrap();
    let at = text.find(&format!("username: {user}\n")).unwrap();
    let rest = &text[at..];
    let start = rest.find("password_hash: \"").unwrap() + "password_hash: \"".len();
    rest[start..start + rest[start..].find('"').unwrap()].to_string()
}

#[tokio::test]
async fn cross_origin_posts_to_gateway_endpoints_are_refused() {
    let gw = Gateway::start().await;
    let form = format!("username=alice&password={PASSWORD}");
    let post = |origin: Option<&str>, site: Option<&str>| {
        let mut rb = gw
            .client
            .post(gw.url("/auth/signin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone());
        if let Some(o) = origin {
            rb = rb.header("origin", o);
        }
        if let Some(s) = site {
            rb = rb.header("sec-fetch-site", s);
        }
        rb.send()
    };
    // login CSRF from another site
    let r = post(Some("https://evil.example"), Some("cross-site"))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(post(Some("null"), None).await.unwrap().status(), 403);
    assert_eq!(
        post(Some("null"), Some("cross-site"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(None, Some("cross-site")).await.unwrap().status(), 403);
    assert_eq!(post(None, Some("same-site")).await.unwrap().status(), 403);
    // our own origin works
    let own = format!("https://localhost:{}", gw.port);
    let r = post(Some(&own), Some("same-origin")).await.unwrap();
    assert_eq!(r.status(), 303);
    // A privacy context sends `Origin: null` on a same-origin form post
    // (Chromium under `Referrer-Policy: no-referrer`): Sec-Fetch-Site decides.
    let r = post(Some("null"), Some("same-origin")).await.unwrap();
    assert_eq!(r.status(), 303);
    // The gateway's own pages do not put browsers in that context.
    let page = gw.client.get(gw.url("/auth/login")).send().await.unwrap();
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
}

#[tokio::test]
async fn logout_with_a_forged_refresh_token_ends_nothing() {
    let gw = Gateway::start().await;
    let login = gw.login().await;
    let access = login["access_token"].as_str().unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut raw = b64
        .decode(jwt_claims(access)["sid"].as_str().unwrap())
        .unwrap();
    raw.extend_from_slice(&[7u8; 32]);
    let forged = b64.encode(raw);
    let r = gw
        .client
        .post(gw.url("/auth/logout"))
        .json(&serde_json::json!({"refresh_token": forged}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        gw.get_bearer("/app/x", access).await.status(),
        200,
        "a forged refresh token logged the user out"
    );
    let r = gw
        .client
        .post(gw.url("/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": forged}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "invalid");
    // the real one does log out
    let r = gw
        .client
        .post(gw.url("/auth/logout"))
        .json(&serde_json::json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(gw.get_bearer("/app/x", access).await.status(), 401);
}

#[tokio::test]
async fn queries_never_reach_the_log() {
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gw = Gateway::start_with(Options {
        upstream: Some(closed),
        ..Default::default()
    })
    .await;
    let r = gw
        .client
        .get(gw.url("/public/x?access_token=SECRET-IN-QUERY"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = gw.log();
    assert!(log.contains("Upstream request failed"), "{log}");
    assert!(
        !log.contains("SECRET-IN-QUERY"),
        "the query was logged:\n{log}"
    );
    assert!(!log.contains("\u{1b}["), "colour codes in a log file");
}

/// An upstream that streams forever: chunked ticks, or after a WebSocket
/// upgrade raw frames, every 100 ms.
fn streaming_upstream() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    buf.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let ws = head.contains("upgrade: websocket");
                let first: &[u8] = if ws {
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                };
                if conn.write_all(first).is_err() {
                    return;
                }
                loop {
                    let frame: &[u8] = if ws {
                        b"\x81\x04tick"
                    } else {
                        b"6\r\ntick\n\n\r\n"
                    };
                    if conn.write_all(frame).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn streams_and_websockets_are_cut_when_the_session_ends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = streaming_upstream();
    let gw = Gateway::start_with(Options {
        upstream: Some(up),
        ..Default::default()
    })
    .await;
    let token = gw.login_token().await;

    // a streaming response
    let mut stream = gw.get_bearer("/app/events", &token).await;
    assert_eq!(stream.status(), 200);
    assert!(stream.chunk().await.unwrap().is_some());
    // a WebSocket
    let mut ws = tls_stream(&gw).await;
    let req = format!("GET /app/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n");
    ws.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = ws.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    let r = gw
        .client
        .post(gw.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // both end within a few frames (100 ms apart), not whenever the upstream stops
    let cut = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(cut.is_ok(), "the stream kept flowing after logout");
    let cut = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match ws.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the WebSocket kept flowing after logout");
}

/// The upgrade request without a token is refused before any byte goes upstream.
#[tokio::test]
async fn an_unauthenticated_upgrade_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start().await;
    let mut ws = tls_stream(&gw).await;
    ws.write_all(b"GET /app/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = ws.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"));
}

#[tokio::test]
async fn the_browser_client_is_served_with_the_configured_prefix() {
    let gw = Gateway::start().await;
    let r = gw
        .client
        .get(gw.url("/auth/client.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let js = r.text().await.unwrap();
    assert!(js.contains("var PREFIX = \"/auth\";"));
    assert!(!js.contains("__AUTHGATE_PREFIX__"));
    for api in ["activityLogout", "refreshToken", "fetch: authFetch"] {
        assert!(js.contains(api), "{api} missing");
    }
    // /auth/session tells the client the server's idle timeout
    let token = gw.login_token().await;
    let s: Value = gw
        .get_bearer("/auth/session", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["idle_timeout"], 60);
}

/// An upstream serving HTML: `/page` (two chunks, <head> split), `/gz`
/// (claims gzip), `/ae` (tells whether Accept-Encoding arrived).
fn html_upstream() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = conn.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        seen.drain(..end + 4);
                        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                        let resp: Vec<u8> = match path.as_str() {
                            "/legacy/page" | "/app/page" => {
                                let (a, b) = ("<html><he", "ad><title>t</title></head><body>hi</body></html>");
                                format!("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()).into_bytes()
                            }
                            "/legacy/gz" => b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: 7\r\n\r\nGZBYTES".to_vec(),
                            _ => {
                                let body = if head.contains("accept-encoding") { "had-accept-encoding" } else { "no-accept-encoding" };
                                format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
                            }
                        };
                        if conn.write_all(&resp).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn legacy_html_gets_the_client_injected_without_changes_to_the_app() {
    let routes = "  - name: legacy\n    path_prefix: /legacy\n    upstream: http://UPSTREAM\n    inject_client: true\n";
    let gw = Gateway::start_with(Options {
        upstream: Some(html_upstream()),
        extra_routes: routes,
        ..Default::default()
    })
    .await;
    let token = gw.login_token().await;
    let page = |path: &'static str| {
        let (c, u, t) = (gw.client.clone(), gw.url(path), token.clone());
        async move {
            c.get(u)
                .bearer_auth(t)
                .header("accept-encoding", "gzip, br")
                .send()
                .await
                .unwrap()
        }
    };
    let r = page("/legacy/page").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert_eq!(
        html,
        "<html><head><title>t</title><script src=\"/auth/client.js\" data-authgate-auto=\"1\" defer></script></head><body>hi</body></html>"
    );
    // the upstream is asked for an uncompressed page on such routes only
    assert_eq!(
        page("/legacy/ae").await.text().await.unwrap(),
        "no-accept-encoding"
    );
    assert_eq!(
        page("/app/ae").await.text().await.unwrap(),
        "had-accept-encoding"
    );
    // a compressed page passes untouched; other routes are never rewritten
    let gz = page("/legacy/gz").await;
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(&gz.bytes().await.unwrap()[..], b"GZBYTES");
    assert!(!page("/app/page")
        .await
        .text()
        .await
        .unwrap()
        .contains("client.js"));
}

/// An upstream that answers keep-alive requests and closes every
/// connection it has kept idle for 100 ms (as servers' keep-alive
/// timeouts do), counting the connections it accepted.
fn impatient_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return, // closed, or idle too long: close
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if conn.write_all(r).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// An upstream connection the app closes while it sits in the gateway's
/// pool (apps' keep-alive timeouts are often shorter than the pool's 60 s)
/// must be dropped, never used for the next request (a 502).
#[tokio::test]
async fn upstream_connections_closed_while_pooled_are_not_reused() {
    let (up, accepted) = impatient_upstream();
    let gw = Gateway::start_with(Options {
        upstream: Some(up),
        ..Default::default()
    })
    .await;
    let token = gw.login_token().await;
    for round in 0..3 {
        // Back to back: the pooled connection is reused. POST, because
        // pingora retries a GET that failed on a dead pooled connection:
        // a POST is not retried, so reusing a closed connection shows as
        // a 502 here.
        for _ in 0..3 {
            let r = gw
                .client
                .post(gw.url("/app/x"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "round {round}");
            assert_eq!(r.text().await.unwrap(), "ok");
        }
        // Long enough for the upstream to close the idle connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (3..9).contains(&n),
        "expected one upstream connection per round (reused within it), got {n}"
    );
}
