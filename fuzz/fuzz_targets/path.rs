//! `routes::normalize_path`: the one function that turns a request path into
//! the path that is both matched against routes and forwarded upstream.
//!
//! Properties: no panic; an accepted path starts with `/`, has no `.` or
//! `..` segment left (`/./`, `/../`, a trailing `/..` or `/.`), no empty
//! segment (`//`), and normalizing it again gives the same path.
#![no_main]

use authgate::routes::normalize_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let Ok(path) = normalize_path(&raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(
        !path.contains("/../") && !path.contains("/./"),
        "{raw:?} -> {path:?}"
    );
    assert!(
        !path.ends_with("/..") && !path.ends_with("/."),
        "{raw:?} -> {path:?}"
    );
    assert!(!path.contains("//"), "{raw:?} -> {path:?}");
    assert_eq!(
        normalize_path(&path).as_deref(),
        Ok(path.as_str()),
        "not idempotent: {raw:?}"
    );
});
