//! HTTP framing and size rules, checked before anything else looks at a
//! request: a request that two parsers could read differently is refused,
//! never forwarded.
//!
//! pingora (httparse) already refuses malformed chunk sizes, a
//! `Transfer-Encoding` other than a lone `chunked`, `Transfer-Encoding` on
//! HTTP/1.0, obs-folded headers, two `Host` headers, differing duplicate
//! `Content-Length`s, absolute-form targets with another `Host`, HTTP/0.9 (tests in
//! `tests/security.rs` pin each). `Content-Length` beside
//! `Transfer-Encoding` it resolves as RFC 9112 §6.3 says: the chunked
//! framing wins, `Content-Length` is removed before any filter runs and the
//! connection closes after the response, so nothing behind the body is read
//! as another request (the check for both below is defence in depth should
//! that change). What it lets through and this refuses: equal duplicate or
//! comma-listed `Content-Length`s, HTTP/1.1 without `Host`, more than one
//! `Authorization` (one credential per request), and requests over the size
//! limits below.

use pingora::http::RequestHeader;

/// Longest request target (path + query) accepted; longer gets 414. Like
/// nginx's default `large_client_header_buffers` line size: no real page
/// needs more, and upstreams disagree about what they accept above it.
pub const MAX_REQUEST_TARGET: usize = 8 * 1024;
/// Largest header block (names + values) accepted; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields accepted; more gets 431 (pingora's own hard limit is
/// 256, answered with 400).
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 414
    TargetTooLong,
    /// 431
    HeadersTooLarge,
    /// 400: the request could be read in more than one way.
    Ambiguous(&'static str),
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Self::TargetTooLong => 414,
            Self::HeadersTooLarge => 431,
            Self::Ambiguous(_) => 400,
        }
    }

    pub fn body(self) -> &'static [u8] {
        use crate::error::body;
        match self {
            Self::TargetTooLong => body::URI_TOO_LONG,
            Self::HeadersTooLarge => body::HEADERS_TOO_LARGE,
            Self::Ambiguous(_) => body::INVALID_REQUEST,
        }
    }

    pub fn why(self) -> &'static str {
        match self {
            Self::TargetTooLong => "request target too long",
            Self::HeadersTooLarge => "header block too large",
            Self::Ambiguous(why) => why,
        }
    }
}

/// Runs on every request: no allocation, one pass over the headers.
pub fn check(req: &RequestHeader) -> Result<(), Refusal> {
    if req.raw_path().len() > MAX_REQUEST_TARGET {
        return Err(Refusal::TargetTooLong);
    }
    let headers = &req.headers;
    if headers.len() > MAX_HEADERS {
        return Err(Refusal::HeadersTooLarge);
    }
    let mut bytes = 0;
    let mut content_lengths = 0;
    let mut authorizations = 0;
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len();
        authorizations += usize::from(name == http::header::AUTHORIZATION);
        if name == http::header::CONTENT_LENGTH {
            content_lengths += 1;
            let v = value.as_bytes();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(Refusal::Ambiguous("Content-Length is not a plain number"));
            }
        }
    }
    if bytes > MAX_HEADER_BYTES {
        return Err(Refusal::HeadersTooLarge);
    }
    if authorizations > 1 {
        // Which one is the credential? The gateway reads the first, an
        // upstream with `forward_authorization` may read the last.
        return Err(Refusal::Ambiguous("more than one Authorization"));
    }
    if content_lengths > 1 {
        return Err(Refusal::Ambiguous("more than one Content-Length"));
    }
    if content_lengths == 1 && headers.contains_key(http::header::TRANSFER_ENCODING) {
        return Err(Refusal::Ambiguous(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if req.version == http::Version::HTTP_11 && !headers.contains_key(http::header::HOST) {
        return Err(Refusal::Ambiguous("HTTP/1.1 without Host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
        r.insert_header("host", "example").unwrap();
        for (k, v) in headers {
            r.append_header(*k, *v).unwrap();
        }
        r
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(check(&req("/a?b=c", &[("content-length", "12")])), Ok(()));
        let mut h2 = RequestHeader::build("GET", b"/", None).unwrap();
        h2.set_version(http::Version::HTTP_2);
        assert_eq!(check(&h2), Ok(()), "HTTP/2 carries :authority, not Host");
    }

    #[test]
    fn ambiguous_lengths_are_refused() {
        for cl in [
            &[("content-length", "4"), ("content-length", "4")][..],
            &[("content-length", "4, 4")],
            &[("content-length", "")],
            &[("content-length", " 4")],
            &[("content-length", "4"), ("transfer-encoding", "chunked")],
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
        ] {
            assert!(
                matches!(check(&req("/", cl)), Err(Refusal::Ambiguous(_))),
                "{cl:?}"
            );
        }
        let mut no_host = RequestHeader::build("GET", b"/", None).unwrap();
        no_host.set_version(http::Version::HTTP_11);
        assert!(matches!(check(&no_host), Err(Refusal::Ambiguous(_))));
    }

    #[test]
    fn limits_are_exact() {
        let at = format!("/{}", "a".repeat(MAX_REQUEST_TARGET - 1));
        assert_eq!(check(&req(&at, &[])), Ok(()));
        let over = format!("/{}", "a".repeat(MAX_REQUEST_TARGET));
        assert_eq!(check(&req(&over, &[])), Err(Refusal::TargetTooLong));
        let many: Vec<(&'static str, &str)> = vec![("x-a", "1"); MAX_HEADERS];
        assert_eq!(check(&req("/", &many)), Err(Refusal::HeadersTooLarge));
        let big = "v".repeat(MAX_HEADER_BYTES);
        assert_eq!(
            check(&req("/", &[("x-big", big.as_str())])),
            Err(Refusal::HeadersTooLarge)
        );
    }
}
