//! The gateway's reading of its own cookies (`headers::cookie`, and
//! `auth::credential` with the Bearer-first rule) and their removal before
//! proxying (`headers::strip_cookies`), on arbitrary `Cookie` headers.
//!
//! Input: lines separated by `\n`, each one `Cookie` header value (HTTP/2
//! may split cookies over several headers); with the first byte odd, the
//! first line is an `Authorization` header instead.
//!
//! Properties: no panic; after stripping, neither gateway cookie can be
//! read any more, and every other cookie reads as it did before.
#![no_main]

use authgate::headers;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use pingora::http::RequestHeader;

const ACCESS: &str = "__Host-authgate";
const REFRESH: &str = "__Secure-authgate-refresh";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut req = RequestHeader::build("GET", b"/app", None).expect("request");
    let mut lines = rest.split(|b| *b == b'\n').take(16);
    if flags & 1 == 1 {
        if let Some(v) = lines.next().and_then(|l| HeaderValue::from_bytes(l).ok()) {
            req.insert_header("authorization", v)
                .expect("authorization");
        }
    }
    let mut names: Vec<String> = Vec::new();
    for line in lines {
        let Ok(v) = HeaderValue::from_bytes(line) else {
            continue;
        };
        if let Ok(s) = v.to_str() {
            names.extend(
                s.split(';')
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, _)| k.trim().to_string()),
            );
        }
        req.append_header("cookie", v).expect("cookie");
    }

    if let Some((token, via)) = authgate::auth::credential(&req, ACCESS) {
        match via {
            authgate::auth::Via::Bearer => assert_eq!(Some(token), headers::bearer(&req)),
            authgate::auth::Via::Cookie => {
                assert!(headers::bearer(&req).is_none());
                assert_eq!(Some(token), headers::cookie(&req, ACCESS));
            }
        }
    }
    let before: Vec<Option<String>> = names
        .iter()
        .map(|n| headers::cookie(&req, n).map(str::to_string))
        .collect();

    headers::strip_cookies(&mut req, [ACCESS, REFRESH]);

    assert_eq!(headers::cookie(&req, ACCESS), None, "access cookie left");
    assert_eq!(headers::cookie(&req, REFRESH), None, "refresh cookie left");
    for (name, was) in names.iter().zip(&before) {
        if name == ACCESS || name == REFRESH {
            continue;
        }
        assert_eq!(
            headers::cookie(&req, name),
            was.as_deref(),
            "cookie {name:?} changed by stripping"
        );
    }
    // Stripping again changes nothing.
    let once: Vec<Vec<u8>> = req
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    headers::strip_cookies(&mut req, [ACCESS, REFRESH]);
    let twice: Vec<Vec<u8>> = req
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    assert_eq!(once, twice, "strip_cookies is not idempotent");
});
