//! Path normalization and the route table.
//!
//! [`normalize_path`] is the ONE function that turns a request path into the
//! path that is both matched (routes, public paths, reserved paths) and
//! forwarded upstream, so the gateway and the upstream can never disagree
//! about which resource a request names (SPEC §3).
//!
//! Matching is deliberately asymmetric, so that every ambiguity fails closed:
//! * a route (and its `required_roles`) matches case-insensitively and
//!   ignores `;params` in segments, because legacy upstreams (IIS, Tomcat)
//!   serve `/ADMIN` and `/admin;x` as `/admin`;
//! * a public path matches exactly, so nothing becomes public by accident.

use crate::config::{ActivityMode, RouteConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is not in origin form")]
    NotOriginForm,
    #[error("the path holds an encoded slash, backslash, NUL or control character")]
    Forbidden,
    #[error("the path holds an invalid percent-encoding")]
    BadEncoding,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("the path holds a segment of only ;parameters")]
    ParamsOnlySegment,
}

/// Characters that Windows "best fit" mapping, or a decoder that folds
/// compatibility forms, turns into `/`, `\` or `.` (fullwidth solidus,
/// division slash, ...): a path holding one could name another resource
/// on such an upstream than the one routed on here.
const LOOKALIKES: &[char] = &[
    '\u{FF0F}', '\u{FF3C}', '\u{FF0E}', '\u{2215}', '\u{2216}', '\u{2044}', '\u{29F8}', '\u{FE68}',
    '\u{FE52}', '\u{2024}',
];

/// `%252e` is `%2e` to an upstream that decodes twice, then `.`: a
/// double-encoded `.`, `/`, `\\`, `;` or NUL is refused.
fn check_double_encoding(decoded: &str) -> Result<(), PathError> {
    let b = decoded.as_bytes();
    for w in b.windows(5) {
        if w[0] == b'%' && w[1] == b'2' && w[2] == b'5' {
            if let (Some(h), Some(l)) = (hex(w[3]), hex(w[4])) {
                if matches!(h * 16 + l, b'.' | b'/' | b'\\' | b';' | 0) {
                    return Err(PathError::Forbidden);
                }
            }
        }
    }
    Ok(())
}

/// Percent-encoded non-ASCII must be well-formed UTF-8 (no overlong `.`
/// or `/`, which old decoders accept) and hold no [`LOOKALIKES`].
fn check_encoded_utf8(decoded: &str) -> Result<(), PathError> {
    let b = decoded.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let mut run = Vec::new();
        while i + 2 < b.len() && b[i] == b'%' {
            match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) if h >= 8 => run.push(h * 16 + l),
                _ => break,
            }
            i += 3;
        }
        if run.is_empty() {
            i += 1;
            continue;
        }
        let s = std::str::from_utf8(&run).map_err(|_| PathError::BadEncoding)?;
        if s.chars().any(|c| LOOKALIKES.contains(&c)) {
            return Err(PathError::Forbidden);
        }
    }
    Ok(())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalizes a raw request path (without the query):
/// * refuses raw `\`, control characters, non-ASCII, and `%2F`, `%5C`, `%00`
///   or any other encoded control character;
/// * decodes percent-encoded unreserved characters, upper-cases the others;
/// * merges repeated slashes;
/// * resolves `.` and `..` segments, also written `.;x` / `..;x` (Tomcat
///   path parameters); `..` above the root is refused.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // Decode pass.
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (h, l) = match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathError::BadEncoding),
                };
                let v = h * 16 + l;
                if v == b'/' || v == b'\\' || v < 0x20 || v == 0x7f {
                    return Err(PathError::Forbidden);
                }
                if is_unreserved(v) {
                    decoded.push(v as char);
                } else {
                    decoded.push('%');
                    decoded.push(char::from(b"0123456789ABCDEF"[(v >> 4) as usize]));
                    decoded.push(char::from(b"0123456789ABCDEF"[(v & 15) as usize]));
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Forbidden),
            0..=0x20 | 0x7f..=0xff => return Err(PathError::Forbidden),
            _ => {
                decoded.push(b as char);
                i += 1;
            }
        }
    }
    // On the decoded form, which is what goes upstream: `%25` + `2` +
    // `%65` decodes to `%252e` (found by the fuzzer).
    if decoded.contains('%') {
        check_encoded_utf8(&decoded)?;
        check_double_encoding(&decoded)?;
    }
    // Segment pass.
    let mut out: Vec<&str> = Vec::new();
    let trailing_slash = decoded.ends_with('/');
    let mut last_was_dot = false;
    for seg in decoded.split('/').skip(1) {
        last_was_dot = false;
        if seg.is_empty() {
            continue;
        }
        // `;` starts path parameters (Tomcat, Jetty); some upstreams also
        // decode `%3B` first, so `..%3Bx` must count as `..` here too.
        let name = segment_name(seg);
        if name.is_empty() {
            // `/;x/admin`: Tomcat and Jetty drop the parameters and the
            // empty segment and serve `/admin`, which was routed here as a
            // segment `;x` under `/`.
            return Err(PathError::ParamsOnlySegment);
        }
        if name == "." {
            last_was_dot = true;
            continue;
        }
        if name == ".." {
            if out.pop().is_none() {
                return Err(PathError::AboveRoot);
            }
            last_was_dot = true;
            continue;
        }
        out.push(seg);
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || ((trailing_slash || last_was_dot) && !out.is_empty()) {
        path.push('/');
    }
    Ok(path)
}

/// A segment without its path parameters (`;x`, or `%3Bx`).
fn segment_name(seg: &str) -> &str {
    let semi = seg.find(';').unwrap_or(seg.len());
    let enc = seg
        .as_bytes()
        .windows(3)
        .position(|w| w[0] == b'%' && w[1] == b'3' && w[2].eq_ignore_ascii_case(&b'b'))
        .unwrap_or(seg.len());
    &seg[..semi.min(enc)]
}

/// A segment as a lenient upstream reads it: without path parameters,
/// without the trailing dots and spaces Windows/IIS ignore (`admin.`,
/// `admin%20`). Compared ASCII case-insensitively by the caller.
fn lenient_segment(seg: &str) -> &str {
    let mut s = segment_name(seg);
    loop {
        let t = s.trim_end_matches('.');
        let t = t.strip_suffix("%20").unwrap_or(t);
        if t.len() == s.len() || t.is_empty() {
            return if t.is_empty() { s } else { t };
        }
        s = t;
    }
}

/// `path` is `prefix` or below it, on a segment boundary, exactly.
pub fn under(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

/// Lenient matching, used wherever matching MORE is the safe side (routes
/// and their roles, logout paths): segment-wise, ASCII case-insensitive,
/// path parameters and trailing dots/spaces ignored.
pub fn lenient_under(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let mut want = prefix.split('/').skip(1);
    let mut have = path.split('/').skip(1);
    loop {
        match (want.next(), have.next()) {
            (None, _) => return true,
            (Some(_), None) => return false,
            (Some(w), Some(h)) => {
                if !w.eq_ignore_ascii_case(lenient_segment(h)) {
                    return false;
                }
            }
        }
    }
}

/// A route ready for matching.
#[derive(Debug)]
pub struct Route {
    pub index: usize,
    pub config: RouteConfig,
}

impl Route {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_public(&self, path: &str) -> bool {
        self.config.public_paths.iter().any(|p| under(path, p))
    }

    pub fn is_logout_path(&self, path: &str) -> bool {
        self.config
            .logout_paths
            .iter()
            .any(|p| lenient_under(path, p))
    }

    pub fn activity(&self) -> ActivityMode {
        self.config.activity
    }
}

#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(configs: &[RouteConfig]) -> Self {
        Self {
            routes: configs
                .iter()
                .cloned()
                .enumerate()
                .map(|(index, config)| Route { index, config })
                .collect(),
        }
    }

    /// The first route whose prefix covers the normalized `path`.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| lenient_under(path, &r.config.path_prefix))
    }

    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let ok = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/%61%62c", "/abc"),
            ("/a/%2e%2E/b", "/b"),
            ("/a/%2e/b", "/a/b"),
            ("/a/.;x/b", "/a/b"),
            ("/a/..;x/b", "/b"),
            ("/public;x/../admin", "/admin"),
            ("/public/..%3b/x", "/x"),
            ("/public/..%3Bjsessionid=1/x", "/x"),
            ("/a/.%3B/b", "/a/b"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/x/..", "/"),
            ("/..a/b", "/..a/b"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/100%2541", "/100%2541"),
        ];
        for (raw, want) in ok {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
        }
        let bad = [
            ("a/b", PathError::NotOriginForm),
            ("*", PathError::NotOriginForm),
            ("/a%2fb", PathError::Forbidden),
            ("/a%2Fb", PathError::Forbidden),
            ("/a%5cb", PathError::Forbidden),
            ("/a\\b", PathError::Forbidden),
            ("/a%00", PathError::Forbidden),
            ("/a%0a", PathError::Forbidden),
            ("/a\tb", PathError::Forbidden),
            ("/a%zz", PathError::BadEncoding),
            ("/a%2", PathError::BadEncoding),
            ("/..", PathError::AboveRoot),
            ("/a/../../b", PathError::AboveRoot),
            ("/%2e%2e/x", PathError::AboveRoot),
            // Tomcat serves these as /admin (found by a review: they
            // reached the catch-all route with the identity of a non-admin)
            ("/;/admin", PathError::ParamsOnlySegment),
            ("/;jsessionid=1/admin/x", PathError::ParamsOnlySegment),
            ("/%3b/admin", PathError::ParamsOnlySegment),
            ("/%3Bx/admin", PathError::ParamsOnlySegment),
            ("/a/;x", PathError::ParamsOnlySegment),
            // best-fit and overlong forms of / and .
            ("/admin%EF%BC%8F", PathError::Forbidden),
            ("/admin%ef%bc%8e%ef%bc%8e", PathError::Forbidden),
            ("/a%E2%88%95b", PathError::Forbidden),
            ("/admin%C0%AE", PathError::BadEncoding),
            ("/%c0%ae%c0%ae/admin", PathError::BadEncoding),
            ("/%C0%AF", PathError::BadEncoding),
            ("/a%FF", PathError::BadEncoding),
            // decoded twice by some upstreams
            ("/x/%252e%252e/admin", PathError::Forbidden),
            ("/x/%252f", PathError::Forbidden),
            ("/x/%255C", PathError::Forbidden),
            // ...also when decoding assembles it (found by the fuzzer)
            ("/a%252%65", PathError::Forbidden),
            ("/%25%32%65", PathError::Forbidden),
        ];
        for (raw, want) in bad {
            assert_eq!(normalize_path(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn normalization_is_idempotent() {
        for raw in ["/a/./b/../c//d/", "/%7Euser/x%2e/y", "/a;b/..;c/d"] {
            let once = normalize_path(raw).unwrap();
            assert_eq!(normalize_path(&once).unwrap(), once, "{raw}");
        }
    }

    fn route(name: &str, prefix: &str, public: &[&str]) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            path_prefix: prefix.into(),
            upstream_url: "http://127.0.0.1:1".into(),
            upstream: "127.0.0.1:1".parse().unwrap(),
            public_paths: public.iter().map(|s| s.to_string()).collect(),
            required_roles: vec![],
            activity: ActivityMode::Interactive,
            logout_paths: vec![],
            forward_authorization: false,
            inject_client: false,
            csrf_protection: true,
        }
    }

    #[test]
    fn first_match_on_segment_boundary_fails_closed() {
        let t = RouteTable::new(&[
            route("admin", "/admin", &[]),
            route("app", "/", &["/public"]),
        ]);
        assert_eq!(t.find("/admin").unwrap().name(), "admin");
        assert_eq!(t.find("/admin/x").unwrap().name(), "admin");
        assert_eq!(t.find("/ADMIN/x").unwrap().name(), "admin");
        assert_eq!(t.find("/admin;jsessionid=1/x").unwrap().name(), "admin");
        assert_eq!(t.find("/administrator").unwrap().name(), "app");
        for trick in [
            "/admin./x",
            "/admin%20/x",
            "/admin.%20./x",
            "/Admin;a=b/x",
            "/admin%3Bx/y",
        ] {
            assert_eq!(t.find(trick).unwrap().name(), "admin", "{trick}");
        }
        let app = t.find("/public/x").unwrap();
        assert!(app.is_public("/public/x") && app.is_public("/public"));
        assert!(
            !app.is_public("/publicity")
                && !app.is_public("/PUBLIC/x")
                && !app.is_public("/public;x/y")
        );
    }
}
