//! Integration-test support: a real `authgate run` process and a real
//! upstream (`authgate whoami`) on ephemeral ports, spoken to over HTTPS.
//!
//! Each test builds its own [`Gateway`] in its own temp dir; processes are
//! killed when it drops, so tests run in parallel without sharing state.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_authgate");
pub const PASSWORD: &str = "alice-pw-Correct-Horse-1";
pub const BOB_PASSWORD: &str = "bob-pw-Battery-Staple-2";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A free loopback port (bound then released; the gateway binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running whoami upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    _child: ChildGuard,
}

impl Upstream {
    pub fn start() -> Upstream {
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let child = Command::new(BIN)
                .args(["whoami", "--listen", &addr.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn whoami");
            let guard = ChildGuard(child);
            if wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()) {
                return Upstream {
                    addr,
                    _child: guard,
                };
            }
        }
        panic!("whoami upstream did not start");
    }
}

/// Options a test varies; everything else is a fixed profile.
#[derive(Clone)]
pub struct Options {
    pub idle_timeout: &'static str,
    pub access_token_ttl: &'static str,
    pub refresh_reuse_grace: &'static str,
    pub policy: &'static str,
    pub max_per_user: u32,
    pub algorithm: &'static str,
    pub cookie_auto_refresh: bool,
    /// Extra YAML appended under `routes:` before the catch-all route.
    pub extra_routes: &'static str,
    /// Upstream override (e.g. a closed port).
    pub upstream: Option<SocketAddr>,
    /// Extra YAML lines under `auth:` (indented by two spaces).
    pub extra_auth: &'static str,
    pub max_session_lifetime: &'static str,
    /// `concurrent_sessions.max_total`.
    pub max_total: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_timeout: "60s",
            access_token_ttl: "60s",
            refresh_reuse_grace: "1s",
            policy: "allow",
            max_per_user: 1,
            algorithm: "EdDSA",
            cookie_auto_refresh: true,
            extra_routes: "",
            upstream: None,
            extra_auth: "",
            max_session_lifetime: "1h",
            max_total: 100_000,
        }
    }
}

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    pub config_path: PathBuf,
    pub upstream: Upstream,
    pub client: reqwest::Client,
    child: Option<ChildGuard>,
}

pub fn hash(password: &str) -> String {
    authgate::auth::password::hash_password(password).unwrap()
}

/// Writes keys (via `authgate gen-keys`) and the users file into `dir`.
pub fn prepare_dir(dir: &Path) {
    let out = Command::new(BIN)
        .args(["gen-keys", "--dir"])
        .arg(dir.join("certs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gen-keys failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        dir.join("hs256.secret"),
        authgate::auth::jwt::random_bytes::<48>(),
    )
    .unwrap();
    std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    let users = format!(
        "users:\n  - username: alice\n    password_hash: \"{}\"\n    roles: [user]\n  - username: Bob\n    password_hash: \"{}\"\n    roles: [user, admin]\n  - username: dora\n    password_hash: \"{}\"\n    roles: [user]\n    disabled: true\n",
        hash(PASSWORD),
        hash(BOB_PASSWORD),
        hash(PASSWORD),
    );
    std::fs::write(dir.join("users.yaml"), users).unwrap();
}

pub fn config_text(
    dir: &Path,
    port: u16,
    admin_port: u16,
    upstream: SocketAddr,
    o: &Options,
) -> String {
    let d = dir.display();
    let key = if o.algorithm == "HS256" {
        format!("secret_file: {d}/hs256.secret")
    } else {
        format!("signing_key: {d}/certs/jwt-signing-key.pem")
    };
    format!(
        r#"server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin_port}
  public_url: https://localhost:{port}
  admin_token_file: {d}/admin-token
  threads: 2
tls:
  cert: {d}/certs/tls-cert.pem
  key: {d}/certs/tls-key.pem
auth:
  users_file: {d}/users.yaml
  jwt:
    algorithm: {alg}
    {key}
    leeway: 1s
  access_token_ttl: {ttl}
  refresh_token_ttl: 1h
  idle_timeout: {idle}
  max_session_lifetime: {lifetime}
  cookie_auto_refresh: {auto}
  concurrent_sessions:
    policy: {policy}
    max_per_user: {max}
    max_total: {max_total}
  refresh_reuse_grace: {grace}
  activity:
    ignore_paths: [/app/poll]
{extra_auth}routes:
{extra}  - name: app
    path_prefix: /
    upstream: http://{upstream}
    public_paths: [/public]
    logout_paths: [/app/logout]
"#,
        alg = o.algorithm,
        ttl = o.access_token_ttl,
        idle = o.idle_timeout,
        auto = o.cookie_auto_refresh,
        policy = o.policy,
        max = o.max_per_user,
        grace = o.refresh_reuse_grace,
        extra = o.extra_routes.replace("UPSTREAM", &upstream.to_string()),
        extra_auth = o.extra_auth,
        lifetime = o.max_session_lifetime,
        max_total = o.max_total,
    )
}

impl Gateway {
    pub async fn start() -> Gateway {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(o: Options) -> Gateway {
        pingora::tls::install_default_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        prepare_dir(dir.path());
        let upstream = Upstream::start();
        for _attempt in 0..5 {
            let (port, admin_port) = (free_port(), free_port());
            let up = o.upstream.unwrap_or(upstream.addr);
            let config_path = dir.path().join("authgate.yaml");
            std::fs::write(
                &config_path,
                config_text(dir.path(), port, admin_port, up, &o),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("authgate.log")).unwrap();
            let child = Command::new(BIN)
                .args(["run", "-c"])
                .arg(&config_path)
                .env("AUTHGATE_LOG", "info")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn authgate");
            let mut guard = ChildGuard(child);
            let ready = wait_until(Duration::from_secs(20), || {
                guard.0.try_wait().ok().flatten().is_none()
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
            });
            if ready {
                let client = client_for(dir.path(), port, false);
                return Gateway {
                    dir,
                    port,
                    admin_port,
                    config_path,
                    upstream,
                    client,
                    child: Some(guard),
                };
            }
            // A port taken between probe and bind: try other ports.
            let _ = guard.0.kill();
        }
        panic!(
            "authgate did not start; log:\n{}",
            std::fs::read_to_string(dir.path().join("authgate.log")).unwrap_or_default()
        );
    }

    /// Wraps a gateway started elsewhere (in-process tests).
    pub fn attach(
        dir: tempfile::TempDir,
        port: u16,
        admin_port: u16,
        config_path: PathBuf,
        upstream: Upstream,
        client: reqwest::Client,
    ) -> Gateway {
        Gateway {
            dir,
            port,
            admin_port,
            config_path,
            upstream,
            client,
            child: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().0.id() as i32;
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Rewrites the users file: alice gets `alice_roles`, plus `extra` YAML.
    pub fn write_users(&self, text: &str) {
        let path = self.dir.path().join("users.yaml");
        let tmp = self.dir.path().join("users.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("authgate.log")).unwrap_or_default()
    }

    pub async fn signin(&self, user: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/auth/signin"))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// Signs alice in; returns the JSON body.
    pub async fn login(&self) -> Value {
        let r = self.signin("alice", PASSWORD).await;
        assert_eq!(r.status(), 200, "signin failed");
        r.json().await.unwrap()
    }

    /// The access token of a fresh `login()`.
    pub async fn login_token(&self) -> String {
        self.login().await["access_token"]
            .as_str()
            .expect("signin answered without an access_token")
            .to_string()
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("accept", "application/json")
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// A request to the admin API.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut rb = reqwest::Client::new().request(
            method,
            format!("http://127.0.0.1:{}{path}", self.admin_port),
        );
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb.send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sum of the samples of `name` whose label set contains `label`.
    pub async fn metric(&self, name: &str, label: &str) -> f64 {
        metric_value(&self.metrics().await, name, label)
    }
}

pub fn metric_value(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An HTTPS client that trusts the test's own certificate, resolves
/// `localhost` to the loopback listener and never follows redirects.
pub fn client_for(dir: &Path, port: u16, cookies: bool) -> reqwest::Client {
    let pem = std::fs::read(dir.join("certs/tls-cert.pem")).unwrap();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(cookies)
        .build()
        .unwrap()
}

/// `name=value` of the cookie `name` set by a response.
pub fn cookie_pair(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"))
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The headers the upstream received, from whoami's echo.
pub fn upstream_headers(echo: &Value) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn header_values(echo: &Value, name: &str) -> Vec<String> {
    upstream_headers(echo)
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// Decodes a JWT's payload without verifying it (to read `exp`).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Reads an HTTP request head (up to the blank line) from a test
/// upstream's socket; None when the peer closed first.
pub async fn read_request_head(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf)
}

/// Sends raw bytes over TLS and returns the raw response (for requests a
/// normal client would tidy up).
pub async fn raw_tls(dir: &Path, port: u16, request: &[u8]) -> String {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pem = std::fs::read(dir.join("certs/tls-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A TLS connection to the gateway for hand-written HTTP/1.1.
pub async fn tls_stream(gw: &Gateway) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use std::sync::Arc;
    let pem = std::fs::read(gw.dir.path().join("certs/tls-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

use rustls_pki_types::pem::PemObject;
