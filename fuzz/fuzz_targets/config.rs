//! Config and users-file parsing (`Config::from_str`, `Users::from_str`:
//! YAML, `${ENV}` substitution, and the validation that collects every
//! problem) on arbitrary UTF-8 text: always `Ok` or `Err`, never a panic.
//!
//! `Config::from_str` resolves each route's `upstream` host (a config that
//! exists has resolved upstreams): a fuzzer must not send DNS queries for
//! made-up names, so text whose tree has an `upstream` URL with a domain
//! host (rather than an IP address) is given to the users-file parser only.
#![no_main]

use std::path::Path;

use authgate::auth::users::Users;
use authgate::config::file::{parse_yaml, Collector};
use authgate::config::Config;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// True if some mapping of the tree has an `upstream` URL whose host is a
/// domain name (only those are resolved; `public_url` and the rest are not).
fn names_a_host(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().any(names_a_host),
        Value::Object(map) => {
            let resolves = match map.get("upstream") {
                Some(Value::String(s)) => url::Url::parse(s)
                    .map(|u| matches!(u.host(), Some(url::Host::Domain(_))))
                    .unwrap_or(false),
                _ => false,
            };
            resolves || map.values().any(names_a_host)
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.yaml");
    let _ = Users::from_str(text, path);
    // The tree exactly as Config::from_str will see it (after ${ENV}).
    let mut c = Collector::new(path);
    if let Some(tree) = parse_yaml(text, &mut c) {
        if names_a_host(&tree) {
            return;
        }
    }
    let _ = Config::from_str(text, path);
});
