//! Builds the running gateway from a [`Config`]: loads the files it names
//! ([`Assets`]), creates the shared [`State`], and wires the pingora
//! services (HTTPS proxy, optional plain-HTTP proxy, admin listener,
//! sweeper, demo upstream). Used by `main` and by the tests alike.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::auth::jwt::{Keys, TokenCache};
use crate::auth::password::{Verifier, MAX_QUEUED_VERIFICATIONS};
use crate::auth::throttle::Throttle;
use crate::auth::users::Users;
use crate::clock::{SharedClock, SystemClock};
use crate::config::file::Collector;
use crate::config::{Config, Problems};
use crate::routes::RouteTable;
use crate::session::memory::Settings;
use crate::session::MemoryStore;

/// How often the sweeper ends due sessions and drops expired state.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// SIGTERM: stop accepting, then let requests in flight finish this long.
const GRACE_PERIOD_S: u64 = 1;
const GRACEFUL_SHUTDOWN_TIMEOUT_S: u64 = 5;

/// Files named by the config, loaded and checked.
pub struct Assets {
    pub keys: Keys,
    pub users: Users,
    /// Bearer token of the admin API (`server.admin_token_file`).
    pub admin_token: Option<String>,
}

/// Shortest admin token accepted.
const MIN_ADMIN_TOKEN: usize = 16;

impl Assets {
    /// For `run`: creates the demo files if configured, then loads
    /// everything strictly.
    pub fn load(config: &Config) -> Result<Assets, Problems> {
        prepare_demo_files(config).map_err(|message| {
            Problems(vec![crate::config::Problem {
                file: config.source.clone(),
                key: "tls.generate_self_signed".into(),
                message,
            }])
        })?;
        let (keys, users, admin_token) = Self::read(config, false)?;
        match (keys, users) {
            (Some(keys), Some(users)) => Ok(Assets {
                keys,
                users,
                admin_token,
            }),
            _ => Err(Problems::default()),
        }
    }

    /// For `check-config`: reads and checks every file, writes nothing. A
    /// missing TLS pair or EdDSA key is fine when `tls.generate_self_signed`
    /// would create it.
    pub fn check(config: &Config) -> Result<(), Problems> {
        Self::read(config, true).map(|_| ())
    }

    #[allow(clippy::type_complexity)]
    fn read(
        config: &Config,
        allow_demo_gaps: bool,
    ) -> Result<(Option<Keys>, Option<Users>, Option<String>), Problems> {
        let mut c = Collector::new(&config.source);
        let demo = allow_demo_gaps && config.tls.generate_self_signed;
        if !(demo && !config.tls.cert.exists() && !config.tls.key.exists()) {
            check_tls(config, &mut c);
        }
        let jwt = &config.auth.jwt;
        let key_will_be_made = demo
            && jwt.algorithm == crate::config::JwtAlgorithm::EdDSA
            && !jwt.signing_key.exists();
        let keys = if key_will_be_made {
            None
        } else {
            Keys::load(jwt, &mut c)
        };
        let mut user_problems = Vec::new();
        let users = match Users::load(&config.auth.users_file) {
            Ok(u) if u.is_empty() => {
                c.err(
                    "auth.users_file",
                    format!("{} lists no users", config.auth.users_file.display()),
                );
                None
            }
            Ok(u) => Some(u),
            Err(p) => {
                c.err(
                    "auth.users_file",
                    format!(
                        "{} is invalid (problems listed with its name)",
                        config.auth.users_file.display()
                    ),
                );
                user_problems = p.0;
                None
            }
        };
        let admin_token = config.server.admin_token_file.as_ref().and_then(|p| match std::fs::read_to_string(p) {
            Ok(t) if t.trim().len() >= MIN_ADMIN_TOKEN => Some(t.trim().to_string()),
            Ok(_) => {
                c.err("server.admin_token_file", format!("{} holds a weak token: use at least {MIN_ADMIN_TOKEN} random characters (e.g. `head -c 32 /dev/urandom | base64 > FILE`)", p.display()));
                None
            }
            Err(e) => {
                c.err("server.admin_token_file", format!("cannot read {}: {e}", p.display()));
                None
            }
        });
        let mut all = c.problems;
        all.extend(user_problems);
        if all.is_empty() {
            Ok((keys, users, admin_token))
        } else {
            Err(Problems(all))
        }
    }
}

fn check_tls(config: &Config, c: &mut Collector) {
    let (cert, key) = (&config.tls.cert, &config.tls.key);
    for (k, p) in [("tls.cert", cert), ("tls.key", key)] {
        match std::fs::metadata(p) {
            Err(e) => {
                let hint = if config.tls.generate_self_signed {
                    "(generate_self_signed only creates the pair when BOTH files are missing)"
                } else {
                    "(create a pair with `authgate gen-keys`, or set tls.generate_self_signed: true for a demo)"
                };
                c.err(k, format!("cannot read {}: {e} {hint}", p.display()));
                return;
            }
            Ok(m) if m.is_dir() => {
                c.err(
                    k,
                    format!("{} is a directory; name the PEM file in it", p.display()),
                );
                return;
            }
            Ok(_) => {}
        }
    }
    let pair = match pingora::tls::load_certs_and_key_files(
        &cert.to_string_lossy(),
        &key.to_string_lossy(),
    ) {
        Ok(Some(pair)) => pair,
        _ => {
            c.err(
                "tls.cert",
                format!("{} and {} must hold a PEM certificate chain and its private key (PKCS#8, PKCS#1 or SEC1)", cert.display(), key.display()),
            );
            return;
        }
    };
    // pingora would panic at start on a pair that does not belong together.
    pingora::tls::install_default_crypto_provider();
    let Some(provider) = pingora::tls::CryptoProvider::get_default() else {
        return;
    };
    if let Err(e) = pingora::tls::sign::CertifiedKey::from_der(pair.0, pair.1, provider) {
        c.err(
            "tls.key",
            format!("{} does not fit the certificate in {} ({e}); use the key the certificate was issued for", key.display(), cert.display()),
        );
    }
}

/// With `tls.generate_self_signed`, creates the TLS pair (when both files
/// are missing) and an EdDSA signing key (when missing).
pub fn prepare_demo_files(config: &Config) -> Result<(), String> {
    if !config.tls.generate_self_signed {
        return Ok(());
    }
    if !config.tls.cert.exists() && !config.tls.key.exists() {
        let (cert, key) = crate::keys::self_signed_tls().map_err(|e| e.to_string())?;
        crate::keys::write_new(&config.tls.cert, &cert, false).map_err(|e| e.to_string())?;
        crate::keys::write_new(&config.tls.key, &key, true).map_err(|e| e.to_string())?;
        tracing::warn!(cert = %config.tls.cert.display(), "Created a self-signed TLS certificate (demo only).");
    }
    let jwt = &config.auth.jwt;
    if jwt.algorithm == crate::config::JwtAlgorithm::EdDSA && !jwt.signing_key.exists() {
        crate::keys::write_new(&jwt.signing_key, &crate::keys::ed25519_pkcs8_pem(), true)
            .map_err(|e| e.to_string())?;
        tracing::warn!(key = %jwt.signing_key.display(), "Created a JWT signing key (demo only).");
    }
    Ok(())
}

/// Everything the request path shares. Built once; cheap to reach through
/// an `Arc`.
pub struct State {
    pub config: Config,
    pub keys: Keys,
    pub users: RwLock<Arc<Users>>,
    pub store: MemoryStore,
    pub tokens: TokenCache,
    pub verifier: Verifier,
    pub throttle: Arc<Throttle>,
    pub routes: RouteTable,
    pub clock: SharedClock,
    /// `public_url`'s origin (`https://host[:port]`).
    pub public_origin: String,
    /// `X-Forwarded-Proto` and `-Host` (`public_url`'s scheme and
    /// `host[:port]`), built once.
    pub forwarded: crate::headers::Forwarded,
    pub paths: AuthPaths,
    pub admin_token: Option<String>,
    /// `clients/client.js` with the configured path prefix filled in.
    pub client_js: bytes::Bytes,
}

/// The browser client, compiled in (no file to deploy next to the binary).
const CLIENT_JS: &str = include_str!("../clients/client.js");

/// The gateway's own endpoints under `auth.path_prefix`.
#[derive(Debug, Clone)]
pub struct AuthPaths {
    pub prefix: String,
    pub signin: String,
    pub refresh: String,
    pub logout: String,
    pub session: String,
    pub activity: String,
    pub login: String,
    pub client_js: String,
}

impl AuthPaths {
    fn new(prefix: &str) -> Self {
        let p = |s: &str| format!("{prefix}/{s}");
        Self {
            prefix: prefix.to_string(),
            signin: p("signin"),
            refresh: p("refresh"),
            logout: p("logout"),
            session: p("session"),
            activity: p("activity"),
            login: p("login"),
            client_js: p("client.js"),
        }
    }
}

impl State {
    pub fn new(config: Config, assets: Assets, clock: SharedClock) -> Arc<State> {
        let settings = Settings::from_config(&config.auth);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        crate::metrics::init_routes(config.routes.iter().map(|r| r.name.as_str()));
        Arc::new(State {
            keys: assets.keys,
            users: RwLock::new(Arc::new(assets.users)),
            store: MemoryStore::new(settings, clock.clone()),
            tokens: TokenCache::default(),
            verifier: Verifier::new(cores, MAX_QUEUED_VERIFICATIONS),
            throttle: Throttle::new(config.auth.signin_throttle.clone(), clock.clone()),
            routes: RouteTable::new(&config.routes),
            public_origin: config.server.public_origin(),
            forwarded: crate::headers::Forwarded::from_url(&config.server.public_url),
            paths: AuthPaths::new(&config.auth.path_prefix),
            admin_token: assets.admin_token,
            client_js: bytes::Bytes::from(
                CLIENT_JS.replace("__AUTHGATE_PREFIX__", &config.auth.path_prefix),
            ),
            clock,
            config,
        })
    }

    pub fn users(&self) -> Arc<Users> {
        self.users
            .read()
            .map(|u| u.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// One sweep: due sessions ended, expired tokens and throttle windows dropped.
    pub fn sweep(&self) {
        self.store.sweep();
        let now_s = self.clock.now_s();
        self.tokens
            .purge_expired(now_s, self.config.auth.jwt.leeway.as_secs());
        self.throttle.purge();
    }
}

struct Sweeper(Arc<State>);

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.0.sweep(),
            }
        }
    }
}

/// Fails early, with a clear message, when a listen address is taken or
/// not ours (pingora would otherwise fail inside a service thread).
pub fn check_listen_addresses(config: &Config) -> Result<(), String> {
    let mut addrs: Vec<(&str, SocketAddr)> = vec![
        ("server.listen", config.server.listen),
        ("server.admin_listen", config.server.admin_listen),
    ];
    if let Some(a) = config.server.http_listen {
        addrs.push(("server.http_listen", a));
    }
    if let Some(d) = &config.demo {
        addrs.push(("demo.whoami_listen", d.whoami_listen));
    }
    for (key, addr) in addrs {
        if let Err(e) = TcpListener::bind(addr) {
            return Err(format!(
                "{key}: cannot listen on {addr}: {e} (is another authgate or program using it?)"
            ));
        }
    }
    Ok(())
}

/// The pingora server with every service of this config, ready to run.
pub fn build_server(state: Arc<State>) -> Result<Server, String> {
    let cfg = &state.config;
    let conf = ServerConf {
        threads: cfg.server.threads,
        grace_period_seconds: Some(GRACE_PERIOD_S),
        graceful_shutdown_timeout_seconds: Some(GRACEFUL_SHUTDOWN_TIMEOUT_S),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut https = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        crate::proxy::Gateway::new(state.clone()),
        "authgate https",
    );
    let mut tls = TlsSettings::intermediate(&path_str(&cfg.tls.cert), &path_str(&cfg.tls.key))
        .map_err(|e| format!("tls: {e}"))?;
    tls.enable_h2();
    https.add_tls_with_settings(&cfg.server.listen.to_string(), None, tls);
    server.add_service(https);

    if let Some(addr) = cfg.server.http_listen {
        let mut plain = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            crate::proxy::Gateway::new(state.clone()),
            "authgate http",
        );
        plain.add_tcp(&addr.to_string());
        server.add_service(plain);
    }

    let mut admin = Service::new(
        "authgate admin".to_string(),
        crate::admin::AdminApp::new(state.clone()),
    );
    admin.add_tcp(&cfg.server.admin_listen.to_string());
    server.add_service(admin);

    if let Some(demo) = &cfg.demo {
        let mut whoami = Service::new("demo whoami".to_string(), crate::whoami::Whoami);
        whoami.add_tcp(&demo.whoami_listen.to_string());
        server.add_service(whoami);
    }

    server.add_service(background_service(
        "users reloader",
        crate::reload::Reloader(state.clone()),
    ));
    server.add_service(background_service("session sweeper", Sweeper(state)));
    Ok(server)
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Loads everything for `run`: config, demo files, assets, state.
pub fn prepare(config_path: &Path) -> Result<Arc<State>, Problems> {
    let config = Config::load(config_path)?;
    let assets = Assets::load(&config)?;
    Ok(State::new(config, assets, Arc::new(SystemClock)))
}
