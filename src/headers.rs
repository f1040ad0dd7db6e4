//! What the upstream receives (SPEC §5): client copies of identity headers
//! removed, the gateway's cookies removed, `Connection` tricks defused,
//! `X-Forwarded-*` rebuilt, identity headers injected.
//!
//! Works on pingora's [`RequestHeader`] in place. This runs on every
//! request: names to remove are prebuilt [`HeaderName`]s (a `&str` name is
//! parsed again on every call), values that never change are built once
//! (see [`Forwarded`]), and the only allocations left are the rewritten
//! `Cookie`, `X-Forwarded-For` and `X-Auth-Session-Expires` values and
//! the names pingora copies on insert.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, COOKIE, SET_COOKIE};
use pingora::http::RequestHeader;

use crate::session::Live;

pub const X_AUTH_USER: &str = "x-auth-user";
pub const X_AUTH_ROLES: &str = "x-auth-roles";
pub const X_AUTH_SESSION_EXPIRES: &str = "x-auth-session-expires";
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const XFF: HeaderName = HeaderName::from_static(X_FORWARDED_FOR);
const XFP: HeaderName = HeaderName::from_static(X_FORWARDED_PROTO);
const XFH: HeaderName = HeaderName::from_static(X_FORWARDED_HOST);
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// True for names that upstream frameworks could read as an identity
/// header: lowercased, `_` read as `-` (CGI/PHP/WSGI/Rack fold both into
/// `HTTP_X_AUTH_*`), starting with `x-auth-`. `.` is folded too, as some
/// servers map it to `_`.
pub fn is_reserved(name: &str) -> bool {
    let b = name.as_bytes();
    const P: &[u8] = b"x-auth-";
    b.len() >= P.len()
        && b[..P.len()].iter().zip(P).all(|(have, want)| {
            have.to_ascii_lowercase() == *want
                || (*want == b'-' && (*have == b'_' || *have == b'.'))
        })
}

/// Removes every client-supplied identity header (all spellings, all copies).
pub fn strip_reserved(req: &mut RequestHeader) {
    // Collect first: the header map cannot be mutated while iterated.
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in req.headers.keys() {
        if is_reserved(name.as_str()) && !doomed.contains(name) {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        req.remove_header(&name);
    }
}

/// Headers some frameworks read as the request's real URL (IIS URL Rewrite,
/// Symfony, Zend): they would route a request the gateway matched as
/// `/public/x` to `/admin`. Never forwarded.
pub const URL_OVERRIDE_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-override-url"),
];

pub fn strip_url_overrides(req: &mut RequestHeader) {
    for h in &URL_OVERRIDE_HEADERS {
        req.remove_header(h);
    }
}

/// Keeps only `Connection` tokens the gateway itself relies on, so that a
/// client cannot list an injected header as hop-by-hop and make a later hop
/// drop it.
pub fn sanitize_connection(req: &mut RequestHeader, is_upgrade: bool) {
    if req.headers.get(CONNECTION).is_none() {
        return;
    }
    req.remove_header(&CONNECTION);
    if is_upgrade {
        let _ = req.insert_header(CONNECTION, "upgrade");
    }
}

/// Removes the gateway's own cookies from `Cookie` (all `Cookie` headers, as
/// HTTP/2 may split them); the app's other cookies pass unchanged.
pub fn strip_cookies(req: &mut RequestHeader, names: [&str; 2]) {
    let values: Vec<HeaderValue> = req.headers.get_all(COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    let mut kept = String::new();
    let mut changed = false;
    for v in &values {
        let Ok(s) = v.to_str() else {
            changed = true; // unreadable cookie header: drop it rather than pass it blind
            continue;
        };
        for pair in s.split(';') {
            let name = pair.split('=').next().unwrap_or("").trim();
            if names.contains(&name) {
                changed = true;
                continue;
            }
            if pair.trim().is_empty() {
                continue;
            }
            if !kept.is_empty() {
                kept.push_str("; ");
            }
            kept.push_str(pair.trim());
        }
    }
    if !changed && values.len() == 1 {
        return;
    }
    req.remove_header(&COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept) {
            let _ = req.insert_header(COOKIE, v);
        }
    }
}

/// The value of the cookie `name` in the request (first occurrence).
pub fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
}

/// Removes the upstream's `Set-Cookie`s for the gateway's own cookie names;
/// allocates only when the response sets one of them.
pub fn strip_set_cookies(resp: &mut pingora::http::ResponseHeader, names: [&str; 2]) {
    let ours = |v: &HeaderValue| {
        let name = v
            .as_bytes()
            .split(|&b| b == b'=')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        names
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
    };
    if !resp.headers.get_all(SET_COOKIE).iter().any(ours) {
        return;
    }
    let keep: Vec<HeaderValue> = resp
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| !ours(v))
        .cloned()
        .collect();
    resp.remove_header(&SET_COOKIE);
    for v in keep {
        let _ = resp.append_header(SET_COOKIE, v);
    }
}

/// The Bearer token of `Authorization`, if that is the scheme used.
/// `Some("")` never happens: an empty or malformed Bearer is `Some(invalid)`.
pub fn bearer(req: &RequestHeader) -> Option<&str> {
    let v = req.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// A client address for logs: the address, or `-` for a peer without one
/// (a Unix socket).
pub fn show_ip(ip: Option<IpAddr>) -> impl std::fmt::Display {
    struct Shown(Option<IpAddr>);
    impl std::fmt::Display for Shown {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.0 {
                Some(ip) => ip.fmt(f),
                None => f.write_str("-"),
            }
        }
    }
    Shown(ip)
}

/// The client address per SPEC §5: the TCP peer, unless it is a trusted
/// proxy, then the rightmost untrusted `X-Forwarded-For` hop.
pub fn client_ip(
    req: &RequestHeader,
    peer: Option<IpAddr>,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in req.headers.get_all(X_FORWARDED_FOR) {
        let Ok(s) = v.to_str() else { return Some(peer) };
        for part in s.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                Err(_) => return Some(peer),
            }
        }
    }
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !trusted.iter().any(|n| n.contains(ip)))
            .unwrap_or(peer),
    )
}

/// The `X-Forwarded-Proto` and `X-Forwarded-Host` the gateway sends: they
/// come from `public_url`, so they are built once, not per request.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub proto: HeaderValue,
    pub host: HeaderValue,
}

impl Forwarded {
    /// From `public_url`: its scheme, and its `host[:port]`.
    pub fn from_url(url: &url::Url) -> Self {
        let host = url.host_str().unwrap_or("localhost");
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        // A parsed URL's scheme and host are ASCII without controls or
        // spaces (hosts are punycoded), so both are valid header values.
        Self {
            proto: HeaderValue::from_str(url.scheme()).expect("a URL scheme is a header value"),
            host: HeaderValue::from_str(&host).expect("a URL host is a header value"),
        }
    }
}

/// Rebuilds `X-Forwarded-For/Proto/Host` (SPEC §5).
pub fn set_forwarded(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    peer_trusted: bool,
    fwd: &Forwarded,
) {
    // RFC 7239 `Forwarded` carries the same claims as X-Forwarded-*: only a
    // trusted proxy may make them.
    if !peer_trusted {
        req.remove_header(&FORWARDED);
    }
    let xff = match (peer, peer_trusted) {
        (Some(p), true) => {
            let prior: Vec<&str> = req
                .headers
                .get_all(&XFF)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if prior.is_empty() {
                ip_value(p)
            } else {
                HeaderValue::from_str(&format!("{}, {p}", prior.join(", "))).ok()
            }
        }
        (Some(p), false) => ip_value(p),
        (None, _) => None,
    };
    req.remove_header(&XFF);
    if let Some(v) = xff {
        let _ = req.insert_header(X_FORWARDED_FOR, v);
    }
    if !peer_trusted || req.headers.get(&XFP).is_none() {
        let _ = req.insert_header(X_FORWARDED_PROTO, fwd.proto.clone());
    }
    if !peer_trusted || req.headers.get(&XFH).is_none() {
        let _ = req.insert_header(X_FORWARDED_HOST, fwd.host.clone());
    }
}

/// An address as a header value, formatted on the stack (an IPv6 address
/// is at most 45 characters).
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    use std::io::Write;
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{ip}").ok()?;
    let n = cursor.position() as usize;
    HeaderValue::from_bytes(&buf[..n]).ok()
}

/// Injects the identity of a verified session.
pub fn inject_identity(req: &mut RequestHeader, live: &Live) -> pingora::Result<()> {
    // The username is validated to a header-safe alphabet at load time.
    let user = HeaderValue::from_str(&live.user)
        .map_err(|_| pingora::Error::new(pingora::ErrorType::InternalError))?;
    req.insert_header(X_AUTH_USER, user)?;
    req.insert_header(X_AUTH_ROLES, live.roles.header.clone())?;
    req.insert_header(X_AUTH_SESSION_EXPIRES, HeaderValue::from(live.expires_at))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn every_spelling_of_identity_headers_is_stripped() {
        let mut r = req(&[
            ("X-Auth-User", "mallory"),
            ("x-auth-user", "mallory2"),
            ("X_Auth_User", "m3"),
            ("x-AUTH_roles", "admin"),
            ("x.auth.user", "m4"),
            ("X-Auth-Anything", "x"),
            ("X-Authority", "keep"),
            ("Accept", "keep"),
        ]);
        strip_reserved(&mut r);
        let mut names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["accept", "x-authority"]);
    }

    #[test]
    fn an_upstreams_set_cookie_for_our_names_is_dropped() {
        let mut resp = pingora::http::ResponseHeader::build(200, None).unwrap();
        for v in [
            "a=1",
            "__Host-authgate=x; Path=/",
            " __HOST-AUTHGATE =y",
            "r=; Max-Age=0",
        ] {
            resp.append_header("set-cookie", v).unwrap();
        }
        strip_set_cookies(&mut resp, ["__Host-authgate", "r"]);
        let left: Vec<_> = resp.headers.get_all("set-cookie").iter().collect();
        assert_eq!(left, vec!["a=1"]);
        // Nothing of ours: untouched.
        strip_set_cookies(&mut resp, ["__Host-authgate", "r"]);
        assert_eq!(resp.headers.get_all("set-cookie").iter().count(), 1);
    }

    #[test]
    fn gateway_cookies_are_removed_others_kept() {
        let mut r = req(&[
            ("Cookie", "a=1; __Host-authgate=tok; b=2"),
            ("Cookie", "__Secure-authgate-refresh=r; c=3"),
        ]);
        strip_cookies(&mut r, ["__Host-authgate", "__Secure-authgate-refresh"]);
        let all: Vec<&str> = r
            .headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(all, vec!["a=1; b=2; c=3"]);
        let mut only = req(&[("Cookie", "__Host-authgate=tok")]);
        strip_cookies(&mut only, ["__Host-authgate", "x"]);
        assert!(only.headers.get(COOKIE).is_none());
    }

    #[test]
    fn connection_tokens_cannot_drop_injected_headers() {
        let mut r = req(&[("Connection", "close, X-Auth-User")]);
        sanitize_connection(&mut r, false);
        assert!(r.headers.get(CONNECTION).is_none());
        let mut u = req(&[("Connection", "Upgrade, X-Auth-User")]);
        sanitize_connection(&mut u, true);
        assert_eq!(u.headers.get(CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let r = req(&[("X-Forwarded-For", "1.1.1.1, 2.2.2.2, 10.0.0.5")]);
        assert_eq!(
            client_ip(&r, Some("10.0.0.9".parse().unwrap()), &trusted),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(
            client_ip(&r, Some("9.9.9.9".parse().unwrap()), &trusted),
            Some("9.9.9.9".parse().unwrap())
        );
        let mut f = req(&[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Host", "evil")]);
        let fwd = Forwarded::from_url(&"https://localhost:8443/".parse().unwrap());
        set_forwarded(&mut f, Some("9.9.9.9".parse().unwrap()), false, &fwd);
        assert_eq!(f.headers.get(X_FORWARDED_PROTO).unwrap(), "https");
        let mut v6 = req(&[]);
        let ip6: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        set_forwarded(&mut v6, Some(ip6), false, &fwd);
        assert_eq!(v6.headers.get(X_FORWARDED_FOR).unwrap(), &ip6.to_string());
        assert_eq!(f.headers.get(X_FORWARDED_FOR).unwrap(), "9.9.9.9");
        assert_eq!(f.headers.get(X_FORWARDED_HOST).unwrap(), "localhost:8443");
    }

    #[test]
    fn a_trusted_proxy_keeps_its_chain_and_its_forwarded_values() {
        let fwd = Forwarded::from_url(&"https://gw.example/".parse().unwrap());
        let mut r = req(&[
            ("X-Forwarded-For", "6.6.6.6, 7.7.7.7"),
            ("X-Forwarded-For", "8.8.8.8"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "app.example"),
            ("Forwarded", "for=6.6.6.6"),
        ]);
        set_forwarded(&mut r, Some("::1".parse().unwrap()), true, &fwd);
        let xff: Vec<_> = r.headers.get_all(X_FORWARDED_FOR).iter().collect();
        assert_eq!(xff, vec!["6.6.6.6, 7.7.7.7, 8.8.8.8, ::1"]);
        assert_eq!(r.headers.get(X_FORWARDED_PROTO).unwrap(), "http");
        assert_eq!(r.headers.get(X_FORWARDED_HOST).unwrap(), "app.example");
        assert_eq!(r.headers.get("forwarded").unwrap(), "for=6.6.6.6");
        // Without a peer address (a Unix socket) no X-Forwarded-For is sent.
        let mut u = req(&[("X-Forwarded-For", "6.6.6.6")]);
        set_forwarded(&mut u, None, false, &fwd);
        assert!(u.headers.get(X_FORWARDED_FOR).is_none());
        assert_eq!(u.headers.get(X_FORWARDED_PROTO).unwrap(), "https");
    }

    #[test]
    fn cookie_and_bearer_extraction() {
        let r = req(&[
            ("Cookie", "x=1; __Host-authgate=abc"),
            ("Authorization", "Bearer tok"),
        ]);
        assert_eq!(cookie(&r, "__Host-authgate"), Some("abc"));
        assert_eq!(bearer(&r), Some("tok"));
        assert_eq!(bearer(&req(&[("Authorization", "Basic eHg6eXk=")])), None);
    }
}
