//! Tree → typed [`Config`], collecting every problem with its key path.
//!
//! Each default is a named constant here so the documentation and the code
//! cannot drift apart (docs/configuration.md lists the same values).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::file::{Collector, Section};
use super::*;

const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
const DEFAULT_THREADS: u64 = 2;
const DEFAULT_PATH_PREFIX: &str = "/auth";
const DEFAULT_USERS_FILE: &str = "config/users.yaml";
const DEFAULT_SIGNING_KEY: &str = "certs/jwt-signing-key.pem";
const DEFAULT_ISSUER: &str = "authgate";
const DEFAULT_AUDIENCE: &str = "authgate";
/// Clock skew tolerated between authgate replicas and token consumers.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(2);
/// A leeway beyond this defeats short-lived tokens; refuse it.
const MAX_LEEWAY: Duration = Duration::from_secs(60);
const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(8 * 3600);
const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
const DEFAULT_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// An access token is a bearer credential that cannot be recalled from
/// third parties: keep it short.
const MAX_ACCESS_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_IDLE: Duration = Duration::from_secs(30 * 24 * 3600);
const DEFAULT_REUSE_GRACE: Duration = Duration::from_secs(10);
/// Sessions one gateway holds at most (`concurrent_sessions.max_total`):
/// about 1 KiB each with tombstones and token cache, so ~100 MiB at the
/// cap; far above what one gateway's users need, far below what exhausts
/// its memory when a script signs in in a loop under policy `allow`.
pub const DEFAULT_MAX_SESSIONS: u64 = 100_000;
/// Long enough for every tab of a browser to retry with the same token,
/// short enough that a stolen predecessor is useless soon after.
const MAX_REUSE_GRACE: Duration = Duration::from_secs(120);
const DEFAULT_COOKIE: &str = "__Host-authgate";
const DEFAULT_REFRESH_COOKIE: &str = "__Secure-authgate-refresh";
const DEFAULT_THROTTLE_USER_IP: u64 = 5;
const DEFAULT_THROTTLE_USER: u64 = 50;
const DEFAULT_THROTTLE_IP: u64 = 20;
const DEFAULT_THROTTLE_WINDOW: Duration = Duration::from_secs(60);
const DEFAULT_TLS_CERT: &str = "certs/tls-cert.pem";
const DEFAULT_TLS_KEY: &str = "certs/tls-key.pem";
/// The JWKS path is reserved at the root (SPEC: `/.well-known/jwks.json`).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

const TOP_KEYS: &[&str] = &["server", "tls", "auth", "session_store", "routes", "demo"];
const SERVER_KEYS: &[&str] = &[
    "listen",
    "http_listen",
    "admin_listen",
    "admin_token_file",
    "public_url",
    "trusted_proxies",
    "threads",
];
const TLS_KEYS: &[&str] = &["cert", "key", "generate_self_signed"];
const AUTH_KEYS: &[&str] = &[
    "path_prefix",
    "users_file",
    "jwt",
    "access_token_ttl",
    "refresh_token_ttl",
    "idle_timeout",
    "max_session_lifetime",
    "cookie_auto_refresh",
    "cookie",
    "concurrent_sessions",
    "refresh_reuse_grace",
    "activity",
    "signin_throttle",
];
const JWT_KEYS: &[&str] = &[
    "algorithm",
    "signing_key",
    "secret_file",
    "verify_keys",
    "issuer",
    "audience",
    "leeway",
];
const COOKIE_KEYS: &[&str] = &["name", "refresh_name"];
const CONCURRENT_KEYS: &[&str] = &["policy", "max_per_user", "max_total"];
const ACTIVITY_KEYS: &[&str] = &["ignore_paths"];
const THROTTLE_KEYS: &[&str] = &["per_user_ip", "per_user", "per_ip", "window"];
const STORE_KEYS: &[&str] = &["kind", "path", "redis_url"];
const ROUTE_KEYS: &[&str] = &[
    "name",
    "path_prefix",
    "upstream",
    "public_paths",
    "required_roles",
    "activity",
    "logout_paths",
    "forward_authorization",
    "inject_client",
    "csrf_protection",
];
const DEMO_KEYS: &[&str] = &["whoami_listen"];

pub(super) fn build(tree: Value, _path: &Path, c: &mut Collector) -> Option<Config> {
    let mut top = Section::new(c, "", Some(tree), TOP_KEYS);
    let server = server(c, top.take("server"));
    let tls = tls(c, top.take("tls"));
    let auth_value = top.take("auth");
    // The reserved prefix as written, for the route checks even when
    // another auth key is wrong (so one run lists both problems).
    let prefix_hint = auth_value
        .as_ref()
        .and_then(|a| a.get("path_prefix"))
        .map_or(Some(DEFAULT_PATH_PREFIX), Value::as_str)
        .map(|p| p.trim_end_matches('/').to_string())
        .filter(|p| p.starts_with('/') && p.len() > 1);
    let auth = auth(c, auth_value);
    let session_store = store(c, top.take("session_store"));
    let route_values = top.list(c, "routes");
    let demo = top.take("demo").map(|v| demo(c, v));
    top.finish(c);

    let mut routes = Vec::new();
    // Index in the file of each route kept: messages name the route as
    // written even when an earlier one was refused.
    let mut at = Vec::new();
    if route_values.is_empty() {
        c.err(
            "routes",
            "at least one route is needed (name, path_prefix, upstream)",
        );
    }
    for (i, v) in route_values.into_iter().enumerate() {
        if let Some(r) = route(c, i, v) {
            routes.push(r);
            at.push(i);
        }
    }
    let reserved_prefix = auth.as_ref().map(|a| a.path_prefix.clone()).or(prefix_hint);
    check_routes(c, &routes, &at, reserved_prefix.as_deref());

    Some(Config {
        source: c.file.clone(),
        server: server?,
        tls,
        auth: auth?,
        session_store,
        routes,
        demo: demo.flatten(),
    })
}

fn addr(c: &mut Collector, key: String, s: &str) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.err(
                key,
                format!("`{s}` is not an address; write IP:PORT, e.g. 127.0.0.1:8443"),
            );
            None
        }
    }
}

fn server(c: &mut Collector, v: Option<Value>) -> Option<ServerConfig> {
    let mut s = Section::new(c, "server", v, SERVER_KEYS);
    let listen_s = s.string(c, "listen", DEFAULT_LISTEN);
    let listen = addr(c, s.key("listen"), &listen_s);
    let http_listen = s
        .opt_string(c, "http_listen")
        .and_then(|a| addr(c, s.key("http_listen"), &a));
    let admin_s = s.string(c, "admin_listen", DEFAULT_ADMIN_LISTEN);
    let admin_listen = addr(c, s.key("admin_listen"), &admin_s);
    let admin_token_file = s.opt_path(c, "admin_token_file");
    let default_url = format!("https://localhost:{}", listen.map_or(8443, |a| a.port()));
    let url_s = s.string(c, "public_url", &default_url);
    let public_url = match url::Url::parse(&url_s) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {
            if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
                c.err(s.key("public_url"), format!("`{url_s}` must be an origin only, e.g. https://login.example.com (no path, query or fragment)"));
            }
            if !u.username().is_empty() || u.password().is_some() {
                c.err(s.key("public_url"), "must not contain user information");
            }
            Some(u)
        }
        _ => {
            c.err(
                s.key("public_url"),
                format!("`{url_s}` is not an http(s) URL such as https://login.example.com"),
            );
            None
        }
    };
    let mut trusted_proxies = Vec::new();
    for (i, p) in s.string_list(c, "trusted_proxies").into_iter().enumerate() {
        let parsed = p
            .parse::<ipnet::IpNet>()
            .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => trusted_proxies.push(n),
            Err(_) => c.err(
                format!("server.trusted_proxies[{i}]"),
                format!("`{p}` is not a CIDR or IP address, e.g. 10.0.0.0/8"),
            ),
        }
    }
    let threads = s.u64(c, "threads", DEFAULT_THREADS, 1, 256) as usize;
    s.finish(c);
    if let (Some(l), Some(a)) = (listen, admin_listen) {
        if l == a {
            c.err("server.admin_listen", "must differ from server.listen");
        }
    }
    Some(ServerConfig {
        listen: listen?,
        http_listen,
        admin_listen: admin_listen?,
        admin_token_file,
        public_url: public_url?,
        trusted_proxies,
        threads,
    })
}

fn tls(c: &mut Collector, v: Option<Value>) -> TlsConfig {
    let mut s = Section::new(c, "tls", v, TLS_KEYS);
    let cfg = TlsConfig {
        cert: s.path(c, "cert", DEFAULT_TLS_CERT),
        key: s.path(c, "key", DEFAULT_TLS_KEY),
        generate_self_signed: s.bool(c, "generate_self_signed", false),
    };
    s.finish(c);
    cfg
}

fn auth(c: &mut Collector, v: Option<Value>) -> Option<AuthConfig> {
    let mut s = Section::new(c, "auth", v, AUTH_KEYS);
    let prefix_raw = s.string(c, "path_prefix", DEFAULT_PATH_PREFIX);
    let path_prefix = prefix_raw.trim_end_matches('/').to_string();
    if path_prefix.is_empty()
        || !prefix_raw.starts_with('/')
        || !path_prefix[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.~".contains(ch))
                && seg != "."
                && seg != ".."
        })
    {
        c.err(
            s.key("path_prefix"),
            format!("`{prefix_raw}` must be a path below the root made of letters, digits, `-_.~`, e.g. /auth"),
        );
    }
    let users_file = s.path(c, "users_file", DEFAULT_USERS_FILE);
    let jwt = jwt(c, s.take("jwt"));
    let access_token_ttl = s.duration(c, "access_token_ttl", DEFAULT_ACCESS_TTL);
    let refresh_token_ttl = s.duration(c, "refresh_token_ttl", DEFAULT_REFRESH_TTL);
    let idle_timeout = s.duration(c, "idle_timeout", DEFAULT_IDLE);
    let max_session_lifetime = s.duration(c, "max_session_lifetime", DEFAULT_LIFETIME);
    let cookie_auto_refresh = s.bool(c, "cookie_auto_refresh", true);

    let mut ck = Section::new(c, "auth.cookie", s.take("cookie"), COOKIE_KEYS);
    let cookie = CookieConfig {
        name: ck.string(c, "name", DEFAULT_COOKIE),
        refresh_name: ck.string(c, "refresh_name", DEFAULT_REFRESH_COOKIE),
    };
    ck.finish(c);
    for (k, name) in [
        ("auth.cookie.name", &cookie.name),
        ("auth.cookie.refresh_name", &cookie.refresh_name),
    ] {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            c.err(
                k,
                format!("`{name}` is not a valid cookie name (letters, digits and -_.)"),
            );
        }
    }
    if cookie.refresh_name.starts_with("__Host-") {
        c.err(
            "auth.cookie.refresh_name",
            "a `__Host-` cookie must have Path=/, but the refresh cookie is scoped to the refresh endpoint; use a `__Secure-` name",
        );
    }
    if cookie.name == cookie.refresh_name {
        c.err(
            "auth.cookie.refresh_name",
            "must differ from auth.cookie.name",
        );
    }

    let mut cs = Section::new(
        c,
        "auth.concurrent_sessions",
        s.take("concurrent_sessions"),
        CONCURRENT_KEYS,
    );
    let policy_s = cs.string(c, "policy", "reject");
    let policy = match policy_s.as_str() {
        "reject" => Some(ConcurrentPolicy::Reject),
        "replace_oldest" => Some(ConcurrentPolicy::ReplaceOldest),
        "allow" => Some(ConcurrentPolicy::Allow),
        other => {
            c.err(
                "auth.concurrent_sessions.policy",
                format!("`{other}` is not a policy; use reject, replace_oldest or allow"),
            );
            None
        }
    };
    let max_per_user = cs.u64(c, "max_per_user", 1, 1, 10_000) as u32;
    let max_total = cs.u64(c, "max_total", DEFAULT_MAX_SESSIONS, 1, 100_000_000);
    cs.finish(c);

    let refresh_reuse_grace = s.duration(c, "refresh_reuse_grace", DEFAULT_REUSE_GRACE);

    let mut act = Section::new(c, "auth.activity", s.take("activity"), ACTIVITY_KEYS);
    let activity_ignore_paths = act
        .string_list(c, "ignore_paths")
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| prefix(c, format!("auth.activity.ignore_paths[{i}]"), &p))
        .collect();
    act.finish(c);

    let mut th = Section::new(
        c,
        "auth.signin_throttle",
        s.take("signin_throttle"),
        THROTTLE_KEYS,
    );
    let signin_throttle = ThrottleConfig {
        per_user_ip: th.u64(c, "per_user_ip", DEFAULT_THROTTLE_USER_IP, 1, 1_000_000) as u32,
        per_user: th.u64(c, "per_user", DEFAULT_THROTTLE_USER, 1, 1_000_000) as u32,
        per_ip: th.u64(c, "per_ip", DEFAULT_THROTTLE_IP, 1, 1_000_000) as u32,
        window: th.duration(c, "window", DEFAULT_THROTTLE_WINDOW),
    };
    th.finish(c);
    if signin_throttle.window < Duration::from_secs(1) {
        c.err("auth.signin_throttle.window", "must be at least 1s");
    }
    s.finish(c);

    // Cross-field rules: every one of them would otherwise surface as a
    // confusing runtime behaviour (sessions that can never be refreshed, ...).
    let positive = [
        ("auth.access_token_ttl", access_token_ttl),
        ("auth.refresh_token_ttl", refresh_token_ttl),
        ("auth.idle_timeout", idle_timeout),
        ("auth.max_session_lifetime", max_session_lifetime),
    ];
    for (k, d) in positive {
        if d < Duration::from_secs(1) {
            c.err(k, "must be at least 1s");
        }
    }
    for (k, d, max) in [
        ("auth.access_token_ttl", access_token_ttl, MAX_ACCESS_TTL),
        ("auth.idle_timeout", idle_timeout, MAX_IDLE),
    ] {
        if d > max {
            c.err(
                k,
                format!("must be at most {}", humantime::format_duration(max)),
            );
        }
    }
    if access_token_ttl > max_session_lifetime {
        c.err(
            "auth.access_token_ttl",
            "must not exceed auth.max_session_lifetime",
        );
    }
    if refresh_token_ttl < access_token_ttl {
        c.err(
            "auth.refresh_token_ttl",
            "must be at least auth.access_token_ttl, or sessions could never be refreshed",
        );
    }
    if refresh_reuse_grace > MAX_REUSE_GRACE {
        c.err(
            "auth.refresh_reuse_grace",
            format!(
                "must be at most {}",
                humantime::format_duration(MAX_REUSE_GRACE)
            ),
        );
    }

    Some(AuthConfig {
        path_prefix,
        users_file,
        jwt: jwt?,
        access_token_ttl,
        refresh_token_ttl,
        idle_timeout,
        max_session_lifetime,
        cookie_auto_refresh,
        cookie,
        policy: policy?,
        max_per_user,
        max_total,
        refresh_reuse_grace,
        activity_ignore_paths,
        signin_throttle,
    })
}

fn jwt(c: &mut Collector, v: Option<Value>) -> Option<JwtConfig> {
    let mut s = Section::new(c, "auth.jwt", v, JWT_KEYS);
    let alg_s = s.string(c, "algorithm", "EdDSA");
    let algorithm = match alg_s.as_str() {
        "EdDSA" => Some(JwtAlgorithm::EdDSA),
        "ES256" => Some(JwtAlgorithm::ES256),
        "RS256" => Some(JwtAlgorithm::RS256),
        "HS256" => Some(JwtAlgorithm::HS256),
        other => {
            c.err(
                "auth.jwt.algorithm",
                format!("`{other}` is not supported; use EdDSA, ES256, RS256 or HS256"),
            );
            None
        }
    };
    let given_signing_key = s.opt_path(c, "signing_key");
    let signing_key = given_signing_key
        .clone()
        .unwrap_or_else(|| DEFAULT_SIGNING_KEY.into());
    let secret_file = s.opt_path(c, "secret_file");
    let verify_keys = s.string_list(c, "verify_keys");
    let issuer = s.string(c, "issuer", DEFAULT_ISSUER);
    let audience = s.string(c, "audience", DEFAULT_AUDIENCE);
    let leeway = s.duration(c, "leeway", DEFAULT_LEEWAY);
    s.finish(c);
    if leeway > MAX_LEEWAY {
        c.err(
            "auth.jwt.leeway",
            format!(
                "must be at most {}s: a large leeway keeps expired tokens working",
                MAX_LEEWAY.as_secs()
            ),
        );
    }
    if issuer.is_empty() {
        c.err("auth.jwt.issuer", "must not be empty");
    }
    if audience.is_empty() {
        c.err("auth.jwt.audience", "must not be empty");
    }
    if !verify_keys.is_empty() && algorithm == Some(JwtAlgorithm::HS256) {
        c.err(
            "auth.jwt.verify_keys",
            "is for public keys (EdDSA, ES256, RS256); HS256 secrets cannot be published or rotated this way",
        );
    }
    match algorithm {
        Some(JwtAlgorithm::HS256) if secret_file.is_none() => {
            c.err("auth.jwt.secret_file", "HS256 needs a file with at least 32 random bytes (e.g. `head -c 48 /dev/urandom > certs/jwt.secret`)");
        }
        Some(JwtAlgorithm::HS256) if given_signing_key.is_some() => {
            c.err(
                "auth.jwt.signing_key",
                "is not used with HS256, which signs with auth.jwt.secret_file; remove it, or choose EdDSA, ES256 or RS256",
            );
        }
        Some(a) if a != JwtAlgorithm::HS256 && secret_file.is_some() => {
            c.err(
                "auth.jwt.secret_file",
                format!("is only used with HS256; {alg_s} signs with auth.jwt.signing_key"),
            );
        }
        _ => {}
    }
    Some(JwtConfig {
        algorithm: algorithm?,
        signing_key,
        secret_file,
        verify_keys: verify_keys
            .into_iter()
            .map(std::path::PathBuf::from)
            .collect(),
        issuer,
        audience,
        leeway,
    })
}

fn store(c: &mut Collector, v: Option<Value>) -> SessionStoreConfig {
    let mut s = Section::new(c, "session_store", v, STORE_KEYS);
    let kind = s.string(c, "kind", "memory");
    let path = s.opt_string(c, "path");
    let redis = s.opt_string(c, "redis_url");
    s.finish(c);
    match kind.as_str() {
        "memory" => {}
        "file" | "redis" => c.err(
            "session_store.kind",
            format!("`{kind}` is not built yet in this version; use `memory` (sessions are kept in process memory)"),
        ),
        other => c.err("session_store.kind", format!("`{other}` is not a store; use memory")),
    }
    if kind == "memory" {
        if path.is_some() {
            c.err("session_store.path", "is only used with kind: file");
        }
        if redis.is_some() {
            c.err("session_store.redis_url", "is only used with kind: redis");
        }
    }
    SessionStoreConfig::Memory
}

/// A path prefix as written in the config: starts with `/`, made of plain
/// segments; stored without its trailing slash (`/public/` → `/public`).
fn prefix(c: &mut Collector, key: String, p: &str) -> Option<String> {
    let ok = p.starts_with('/')
        && !p.contains("//")
        && p.split('/').all(|seg| seg != "." && seg != "..")
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && !b"%\\?#".contains(&b));
    if !ok {
        c.err(key, format!("`{p}` must be a plain path starting with `/` (no `.`/`..` segments, `%`, `\\`, `?`, `#`)"));
        return None;
    }
    let trimmed = p.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

fn route(c: &mut Collector, i: usize, v: Value) -> Option<RouteConfig> {
    let base = format!("routes[{i}]");
    let mut s = Section::new(c, &base, Some(v), ROUTE_KEYS);
    let name = s.string(c, "name", "");
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        c.err(
            s.key("name"),
            format!(
                "`{name}` must be 1-64 letters, digits, `-` or `_` (it is also a metrics label)"
            ),
        );
    }
    let prefix_s = s.opt_string(c, "path_prefix");
    if prefix_s.is_none() {
        c.err(s.key("path_prefix"), "is required, e.g. `/` or `/app`");
    }
    let path_prefix = prefix_s.and_then(|p| prefix(c, s.key("path_prefix"), &p));
    let upstream_url = s.opt_string(c, "upstream");
    let upstream = match &upstream_url {
        None => {
            c.err(s.key("upstream"), "is required, e.g. http://127.0.0.1:8081");
            None
        }
        Some(u) => upstream(c, s.key("upstream"), u),
    };
    let public_paths = s
        .string_list(c, "public_paths")
        .into_iter()
        .enumerate()
        .filter_map(|(j, p)| prefix(c, format!("{base}.public_paths[{j}]"), &p))
        .collect();
    let mut required_roles = Vec::new();
    for (j, r) in s.string_list(c, "required_roles").into_iter().enumerate() {
        if valid_role(&r) {
            required_roles.push(r);
        } else {
            c.err(
                format!("{base}.required_roles[{j}]"),
                format!("`{r}` is not a role name ([A-Za-z0-9._:-], 1-64)"),
            );
        }
    }
    let activity = match s.string(c, "activity", "interactive").as_str() {
        "interactive" => ActivityMode::Interactive,
        "all" => ActivityMode::All,
        "none" => ActivityMode::None,
        other => {
            c.err(
                s.key("activity"),
                format!("`{other}` is not an activity mode; use interactive, all or none"),
            );
            ActivityMode::Interactive
        }
    };
    let logout_paths = s
        .string_list(c, "logout_paths")
        .into_iter()
        .enumerate()
        .filter_map(|(j, p)| prefix(c, format!("{base}.logout_paths[{j}]"), &p))
        .collect();
    let forward_authorization = s.bool(c, "forward_authorization", false);
    let inject_client = s.bool(c, "inject_client", false);
    let csrf_protection = s.bool(c, "csrf_protection", true);
    s.finish(c);
    Some(RouteConfig {
        name,
        path_prefix: path_prefix?,
        upstream_url: upstream_url?,
        upstream: upstream?,
        public_paths,
        required_roles,
        activity,
        logout_paths,
        forward_authorization,
        inject_client,
        csrf_protection,
    })
}

fn upstream(c: &mut Collector, key: String, u: &str) -> Option<SocketAddr> {
    let parsed = match url::Url::parse(u) {
        Ok(p) => p,
        Err(e) => {
            c.err(
                key,
                format!("`{u}` is not a URL ({e}); write http://HOST:PORT"),
            );
            return None;
        }
    };
    match parsed.scheme() {
        "http" => {}
        "https" => {
            c.err(key, "https upstreams are not built yet in this version (planned with per-route upstream TLS options); use http://");
            return None;
        }
        other => {
            c.err(
                key,
                format!("scheme `{other}` is not supported; write http://HOST:PORT"),
            );
            return None;
        }
    }
    if parsed.path() != "/" || parsed.query().is_some() || !parsed.username().is_empty() {
        c.err(
            key,
            format!("`{u}` must be scheme://host:port only; the request path is forwarded as is"),
        );
        return None;
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    if port == 0 {
        c.err(
            key,
            format!("`{u}`: port 0 is no upstream; write the port the app listens on"),
        );
        return None;
    }
    match (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(a)) => Some(a),
        Ok(None) | Err(_) => {
            c.err(key, format!("cannot resolve host `{host}`; the upstream host must resolve when authgate starts"));
            None
        }
    }
}

fn demo(c: &mut Collector, v: Value) -> Option<DemoConfig> {
    let mut s = Section::new(c, "demo", Some(v), DEMO_KEYS);
    let listen = s.opt_string(c, "whoami_listen");
    s.finish(c);
    let whoami_listen = match listen {
        Some(l) => addr(c, "demo.whoami_listen".into(), &l)?,
        None => {
            c.err(
                "demo.whoami_listen",
                "is required in the demo section, e.g. 127.0.0.1:8081",
            );
            return None;
        }
    };
    Some(DemoConfig { whoami_listen })
}

/// True when `inner` is `outer` or below it, on a segment boundary.
pub fn within(inner: &str, outer: &str) -> bool {
    outer == "/"
        || inner == outer
        || (inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'/')
}

fn check_routes(
    c: &mut Collector,
    routes: &[RouteConfig],
    at: &[usize],
    auth_prefix: Option<&str>,
) {
    let mut names = std::collections::HashSet::new();
    for (pos, r) in routes.iter().enumerate() {
        let i = at[pos];
        if !names.insert(r.name.as_str()) {
            c.err(
                format!("routes[{i}].name"),
                format!("`{}` is used by an earlier route", r.name),
            );
        }
        let mut reserved = vec![JWKS_PATH.to_string()];
        if let Some(p) = auth_prefix {
            reserved.push(p.to_string());
        }
        let mut check = |key: String, p: &str| {
            for res in &reserved {
                if p != "/" && (within(p, res) || within(res, p)) {
                    c.err(
                        key.clone(),
                        format!(
                            "`{p}` overlaps the reserved path {res}, which authgate answers itself"
                        ),
                    );
                }
            }
        };
        if r.path_prefix != "/" {
            check(format!("routes[{i}].path_prefix"), &r.path_prefix);
        }
        for (j, p) in r.public_paths.iter().enumerate() {
            check(format!("routes[{i}].public_paths[{j}]"), p);
        }
        for (j, p) in r.logout_paths.iter().enumerate() {
            if !within(p, &r.path_prefix) {
                c.err(
                    format!("routes[{i}].logout_paths[{j}]"),
                    format!(
                        "`{p}` is not below the route's path_prefix {}",
                        r.path_prefix
                    ),
                );
            }
        }
        for (j, p) in r.public_paths.iter().enumerate() {
            if !within(p, &r.path_prefix) {
                c.err(
                    format!("routes[{i}].public_paths[{j}]"),
                    format!(
                        "`{p}` is not below the route's path_prefix {} and would never match",
                        r.path_prefix
                    ),
                );
            }
        }
        // A later route whose prefix an earlier one already covers is dead
        // (routes match case-insensitively: see routes::lenient_under).
        for (earlier_pos, earlier) in routes[..pos].iter().enumerate() {
            let k = at[earlier_pos];
            if crate::routes::lenient_under(&r.path_prefix, &earlier.path_prefix) {
                c.err(
                    format!("routes[{i}].path_prefix"),
                    format!(
                        "`{}` can never match: routes[{k}] ({}) comes first and covers it",
                        r.path_prefix, earlier.path_prefix
                    ),
                );
            }
        }
    }
}

/// `[A-Za-z0-9._@-]{1,64}` (SPEC §2).
pub fn valid_username(u: &str) -> bool {
    (1..=64).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// `[A-Za-z0-9._:-]{1,64}` (SPEC §2).
pub fn valid_role(r: &str) -> bool {
    (1..=64).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Problems> {
        Config::from_str(text, Path::new("t.yaml"))
    }

    const MINIMAL: &str =
        "routes:\n  - name: app\n    path_prefix: /\n    upstream: http://127.0.0.1:8081\n";

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(c.server.public_origin(), "https://localhost:8443");
        assert_eq!(c.auth.path_prefix, "/auth");
        assert_eq!(c.auth.idle_timeout, Duration::from_secs(1800));
        assert_eq!(c.auth.policy, ConcurrentPolicy::Reject);
        assert_eq!(c.auth.max_per_user, 1);
        assert_eq!(c.auth.jwt.algorithm, JwtAlgorithm::EdDSA);
        assert_eq!(c.auth.cookie.name, "__Host-authgate");
        assert_eq!(c.routes[0].activity, ActivityMode::Interactive);
    }

    #[test]
    fn all_problems_are_reported_together_with_key_paths() {
        let text = format!(
            "server:\n  no_such_key: true\nauth:\n  idle_timeout: soon\n  concurrent_sessions:\n    policy: sometimes\n{MINIMAL}"
        );
        let msg = load(&text).unwrap_err().to_string();
        for key in [
            "server.no_such_key",
            "auth.idle_timeout",
            "auth.concurrent_sessions.policy",
        ] {
            assert!(
                msg.contains(&format!("t.yaml: {key}: ")),
                "{key} missing in:\n{msg}"
            );
        }
        // Silently unused settings and impossible upstreams.
        let text = "auth:\n  jwt:\n    algorithm: HS256\n    secret_file: s\n    signing_key: k.pem\nroutes:\n  - name: a\n    path_prefix: /\n    upstream: http://127.0.0.1:0\n";
        let msg = load(text).unwrap_err().to_string();
        assert!(
            msg.contains("auth.jwt.signing_key: is not used with HS256"),
            "{msg}"
        );
        assert!(
            msg.contains("routes[0].upstream: `http://127.0.0.1:0`: port 0"),
            "{msg}"
        );
        // A refused route does not shift the index of the ones after it.
        let text = "routes:\n  - name: a\n    path_prefix: /a\n    upstream: http://127.0.0.1:1\n  - name: b\n    path_prefix: /b\n    upstream: ftp://x\n  - name: c\n    path_prefix: /\n    upstream: http://127.0.0.1:1\n    public_paths: [/auth/x]\n";
        let msg = load(text).unwrap_err().to_string();
        assert!(msg.contains("routes[1].upstream"), "{msg}");
        assert!(
            msg.contains("routes[2].public_paths[0]: `/auth/x` overlaps"),
            "{msg}"
        );
        // Overlaps are found in the same run as a wrong auth value.
        let text = "auth:\n  idle_timeout: soon\nroutes:\n  - name: a\n    path_prefix: /auth\n    upstream: http://127.0.0.1:1\n";
        let msg = load(text).unwrap_err().to_string();
        assert!(msg.contains("auth.idle_timeout"), "{msg}");
        assert!(
            msg.contains("routes[0].path_prefix: `/auth` overlaps"),
            "{msg}"
        );
    }

    #[test]
    fn unbuilt_features_and_overlaps_are_refused() {
        let text = "session_store:\n  kind: redis\nroutes:\n  - name: a\n    path_prefix: /auth/x\n    upstream: http://127.0.0.1:1\n  - name: b\n    path_prefix: /\n    upstream: http://127.0.0.1:1\n    public_paths: [/.well-known/jwks.json]\n";
        let msg = load(text).unwrap_err().to_string();
        assert!(
            msg.contains("session_store.kind: `redis` is not built yet"),
            "{msg}"
        );
        assert!(
            msg.contains("routes[0].path_prefix: `/auth/x` overlaps the reserved path /auth"),
            "{msg}"
        );
        assert!(msg.contains("routes[1].public_paths[0]"), "{msg}");
        let _ = MINIMAL;
    }

    #[test]
    fn bad_values_name_what_to_write() {
        let text = "server:\n  listen: localhost\n  public_url: ftp://x\nauth:\n  jwt:\n    algorithm: none\n    leeway: 10m\n  access_token_ttl: 0s\nroutes:\n  - name: bad name\n    path_prefix: app\n    upstream: https://127.0.0.1:1\n    activity: sometimes\n    required_roles: ['a b']\n";
        let msg = load(text).unwrap_err().to_string();
        for key in [
            "server.listen",
            "server.public_url",
            "auth.jwt.algorithm",
            "auth.jwt.leeway",
            "auth.access_token_ttl",
            "routes[0].name",
            "routes[0].path_prefix",
            "routes[0].upstream",
            "routes[0].activity",
            "routes[0].required_roles[0]",
        ] {
            assert!(
                msg.contains(&format!("t.yaml: {key}: ")),
                "{key} missing in:\n{msg}"
            );
        }
    }

    #[test]
    fn non_mapping_and_garbage_do_not_panic() {
        for text in [
            "- 1\n- 2\n",
            "routes: 5\n",
            "auth: [1]\nroutes: []\n",
            "\u{0}\u{1}",
            "a: [\n",
            "~",
        ] {
            assert!(load(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn a_route_shadowed_in_another_case_is_an_error() {
        let text = "routes:\n  - name: a\n    path_prefix: /API\n    upstream: http://127.0.0.1:1\n  - name: b\n    path_prefix: /api/admin\n    upstream: http://127.0.0.1:1\n    required_roles: [admin]\n";
        let msg = load(text).unwrap_err().to_string();
        assert!(
            msg.contains("routes[1].path_prefix: `/api/admin` can never match"),
            "{msg}"
        );
    }

    #[test]
    fn prefixes_are_stored_without_trailing_slash_and_matched_on_segments() {
        let text = "routes:\n  - name: admin\n    path_prefix: /admin/\n    upstream: http://127.0.0.1:1\n    public_paths: [/admin/public/]\n  - name: app\n    path_prefix: /\n    upstream: http://127.0.0.1:1\n";
        let c = load(text).unwrap();
        assert_eq!(c.routes[0].path_prefix, "/admin");
        assert_eq!(c.routes[0].public_paths, vec!["/admin/public"]);
        assert!(
            within("/app/x", "/app") && within("/app", "/app") && !within("/application", "/app")
        );
    }
}
