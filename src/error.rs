//! Responses the gateway writes itself, and the one place that maps
//! denials and errors to HTTP. Bodies are fixed strings: details go to the
//! log, never to the client.

use bytes::Bytes;
use http::header::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::session::DenyReason;

/// A complete response: status, extra headers, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, HeaderValue)>,
    pub body: Bytes,
}

pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";
pub const JS: &str = "text/javascript; charset=utf-8";
/// One year, the value HSTS preload lists ask for; no `includeSubDomains`:
/// the gateway cannot speak for other hosts of the domain.
const HSTS: &str = "max-age=31536000";
const DEFAULT_HTML_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

impl Reply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type: Some(JSON),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn json_value(status: u16, v: &serde_json::Value) -> Self {
        Self::json(status, serde_json::to_vec(v).unwrap_or_default())
    }

    pub fn html(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: Some(HTML),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A redirect with no body.
    pub fn redirect(status: u16, location: &str) -> Self {
        let mut r = Self::new(status);
        r.header("location", location);
        r
    }

    /// Adds a header; values that are not valid header bytes are dropped
    /// (every value we add is built from validated parts).
    pub fn header(&mut self, name: &'static str, value: impl AsRef<str>) -> &mut Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn with(mut self, name: &'static str, value: impl AsRef<str>) -> Self {
        self.header(name, value);
        self
    }

    /// Writes the response. `Cache-Control: no-store` on everything the
    /// gateway answers itself: these responses carry tokens or session state.
    pub async fn send(self, session: &mut Session) -> pingora::Result<()> {
        let mut resp = ResponseHeader::build(self.status, Some(6 + self.headers.len()))?;
        if let Some(ct) = self.content_type {
            resp.insert_header("content-type", ct)?;
        }
        resp.insert_header("content-length", self.body.len().to_string())?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header("x-content-type-options", "nosniff")?;
        // Not `no-referrer`: under it Chromium sends `Origin: null` on the
        // login form's same-origin POST, which the CSRF check must refuse.
        // `same-origin` still sends nothing to other origins.
        resp.insert_header("referrer-policy", "same-origin")?;
        // Browsers honour it only over HTTPS, which is what public_url
        // promises (directly or through a TLS terminator in front).
        resp.insert_header("strict-transport-security", HSTS)?;
        if self.content_type == Some(HTML)
            && !self
                .headers
                .iter()
                .any(|(k, _)| *k == "content-security-policy")
        {
            // Pages without a policy of their own (403) run nothing, load
            // nothing and cannot be framed.
            resp.insert_header("content-security-policy", DEFAULT_HTML_CSP)?;
            resp.insert_header("x-frame-options", "DENY")?;
        }
        for (k, v) in self.headers {
            resp.append_header(k, v)?;
        }
        if session.is_http2() && !session.is_body_done() {
            drain_h2_request_body(session).await;
        }
        let empty = self.body.is_empty() || session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(resp), empty).await?;
        if !empty {
            session.write_response_body(Some(self.body), true).await?;
        }
        Ok(())
    }
}

/// An HTTP/2 request body left unread makes h2 reset the stream (CANCEL)
/// when the request ends, and the reset can overtake the response still
/// queued behind it: the client gets a stream error instead of our 401,
/// 303 or 413. So the rest of the body is read and dropped first, within
/// bounds; a client that sends more, or too slowly, gets the reset.
async fn drain_h2_request_body(session: &mut Session) {
    let drain = async {
        let mut seen = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            seen += chunk.len();
            if seen > H2_DRAIN_MAX_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(H2_DRAIN_TIMEOUT, drain).await;
}

/// Bounds of [`drain_h2_request_body`]: enough for any form or JSON the
/// gateway refuses, far from letting a client hold a worker.
const H2_DRAIN_MAX_BYTES: usize = 8 * 1024 * 1024;
const H2_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Fixed JSON bodies.
pub mod body {
    pub const INVALID_REQUEST: &[u8] = br#"{"error":"invalid_request"}"#;
    pub const INVALID_CREDENTIALS: &[u8] = br#"{"error":"invalid_credentials"}"#;
    pub const RATE_LIMITED: &[u8] = br#"{"error":"rate_limited"}"#;
    pub const UNAVAILABLE: &[u8] = br#"{"error":"unavailable"}"#;
    pub const NOT_FOUND: &[u8] = br#"{"error":"not_found"}"#;
    pub const METHOD_NOT_ALLOWED: &[u8] = br#"{"error":"method_not_allowed"}"#;
    pub const FORBIDDEN: &[u8] = br#"{"error":"forbidden"}"#;
    pub const FORBIDDEN_ORIGIN: &[u8] = br#"{"error":"forbidden_origin"}"#;
    pub const BAD_GATEWAY: &[u8] = br#"{"error":"bad_gateway"}"#;
    pub const TOO_LARGE: &[u8] = br#"{"error":"payload_too_large"}"#;
    pub const UNSUPPORTED_MEDIA: &[u8] = br#"{"error":"unsupported_media_type"}"#;
    pub const INTERNAL: &[u8] = br#"{"error":"internal"}"#;
    pub const URI_TOO_LONG: &[u8] = br#"{"error":"uri_too_long"}"#;
    pub const HEADERS_TOO_LARGE: &[u8] = br#"{"error":"headers_too_large"}"#;
}

pub fn fixed(status: u16, body: &'static [u8]) -> Reply {
    Reply::json(status, Bytes::from_static(body))
}

/// 401 for an API request (SPEC §3).
pub fn unauthorized(reason: DenyReason) -> Reply {
    let body: &'static [u8] = match reason {
        DenyReason::Logout => br#"{"error":"unauthorized","reason":"logout"}"#,
        DenyReason::Replaced => br#"{"error":"unauthorized","reason":"replaced"}"#,
        DenyReason::Revoked => br#"{"error":"unauthorized","reason":"revoked"}"#,
        DenyReason::Idle => br#"{"error":"unauthorized","reason":"idle"}"#,
        DenyReason::Lifetime => br#"{"error":"unauthorized","reason":"lifetime"}"#,
        DenyReason::Expired => br#"{"error":"unauthorized","reason":"expired"}"#,
        DenyReason::Invalid => br#"{"error":"unauthorized","reason":"invalid"}"#,
        DenyReason::Missing => br#"{"error":"unauthorized","reason":"missing"}"#,
    };
    let mut r = Reply::json(401, Bytes::from_static(body));
    r.headers.push((
        "www-authenticate",
        HeaderValue::from_static(r#"Bearer realm="authgate", error="invalid_token""#),
    ));
    r
}

/// Percent-encodes a query parameter value (everything but unreserved).
pub fn query_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
