//! The safe-redirect rule for `rd` (signin, logout): `safe_redirect_for`
//! resolves the target against `public_url` and honours it only on the
//! same origin (SPEC §3).
//!
//! Input: the first byte picks a `public_url`, the rest is `rd`.
//!
//! Properties: no panic; the result is a local path: it starts with `/` but
//! not `//` or `/\` (a browser would read those as another host), holds no
//! space or control character (a `Location` header), and resolved against
//! `public_url` it stays on the same origin.
#![no_main]

use std::sync::OnceLock;

use authgate::auth::endpoints::safe_redirect_for;
use libfuzzer_sys::fuzz_target;

const BASES: [&str; 4] = [
    "https://gw.example:8443",
    "https://localhost",
    "http://127.0.0.1:8080",
    "https://[::1]:8443",
];

fn bases() -> &'static [url::Url] {
    static B: OnceLock<Vec<url::Url>> = OnceLock::new();
    B.get_or_init(|| BASES.iter().map(|b| url::Url::parse(b).unwrap()).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let base = &bases()[usize::from(pick) % BASES.len()];
    let rd = String::from_utf8_lossy(rest);
    let target = safe_redirect_for(base, Some(&rd));
    assert!(target.starts_with('/'), "{rd:?} -> {target:?}");
    assert!(
        !target.starts_with("//") && !target.starts_with("/\\"),
        "open redirect: rd={rd:?} -> Location: {target:?} (public_url {base})"
    );
    assert!(
        target.bytes().all(|b| b.is_ascii_graphic()),
        "{rd:?} -> {target:?}: not a clean header value"
    );
    let resolved = base.join(&target).expect("a local path resolves");
    assert_eq!(
        resolved.origin(),
        base.origin(),
        "rd={rd:?} -> {target:?} leaves {base}"
    );
});
