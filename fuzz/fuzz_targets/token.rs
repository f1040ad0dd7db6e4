//! Access-token verification (`Keys::verify`, with its strict syntax check
//! `well_formed` in front of the JWT library) on arbitrary input.
//!
//! The first byte picks how the rest becomes a token:
//! * 0: the bytes as the token itself (raw header/cookie value);
//! * 1: `header \xff payload \xff signature`, each part base64url-encoded,
//!   so the fuzzer reaches the header's JSON parsing;
//! * 2: `header \xff payload`, correctly HMAC-signed with the HS256 test
//!   secret, so it also reaches the claims' parsing and checks.
//!
//! Properties: no panic; a token never verifies against the EdDSA key (its
//! private half is made at start-up and never seen by the fuzzer); a token
//! that verifies has our issuer/audience and consistent times.
#![no_main]

use std::sync::OnceLock;

use authgate::auth::jwt::Keys;
use authgate::config::{JwtAlgorithm, JwtConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use libfuzzer_sys::fuzz_target;

/// A fixed HS256 secret (48 bytes, not all alike): only for fuzzing.
const HS256_SECRET: &[u8] = b"authgate-fuzz-hs256-secret-0123456789abcdefghijk";

struct Fixture {
    hs256: Keys,
    eddsa: Keys,
}

fn fixture() -> &'static Fixture {
    static KEYS: OnceLock<Fixture> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("authgate-fuzz-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let secret = dir.join("jwt.secret");
        std::fs::write(&secret, HS256_SECRET).expect("write secret");
        let signing_key = dir.join("jwt.pem");
        std::fs::write(&signing_key, authgate::keys::ed25519_pkcs8_pem()).expect("write key");
        let cfg = |algorithm| JwtConfig {
            algorithm,
            signing_key: signing_key.clone(),
            secret_file: (algorithm == JwtAlgorithm::HS256).then(|| secret.clone()),
            verify_keys: vec![],
            issuer: "authgate".into(),
            audience: "authgate".into(),
            leeway: std::time::Duration::from_secs(2),
        };
        let hs256 = Keys::load_or_err(&cfg(JwtAlgorithm::HS256)).expect("HS256 keys");
        let eddsa = Keys::load_or_err(&cfg(JwtAlgorithm::EdDSA)).expect("EdDSA keys");
        let _ = std::fs::remove_dir_all(&dir);
        Fixture { hs256, eddsa }
    })
}

fn check(keys: &Keys, token: &str) -> bool {
    match keys.verify(token) {
        Ok((v, claims)) => {
            assert_eq!(claims.iss, keys.issuer);
            assert_eq!(claims.aud, keys.audience);
            assert!(v.nbf <= v.exp && claims.iat <= claims.exp);
            assert_eq!((v.nbf, v.exp), (claims.nbf, claims.exp));
            assert_eq!(v.sid.to_b64(), claims.sid);
            true
        }
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |b| *b == 0xff);
    let token = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let h = parts.next().unwrap_or_default();
            let p = parts.next().unwrap_or_default();
            let s = parts.next().unwrap_or_default();
            format!("{}.{}.{}", B64.encode(h), B64.encode(p), B64.encode(s))
        }
        _ => {
            let h = parts.next().unwrap_or_default();
            let p = parts.next().unwrap_or_default();
            let signing_input = format!("{}.{}", B64.encode(h), B64.encode(p));
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HS256_SECRET);
            let tag = ring::hmac::sign(&key, signing_input.as_bytes());
            format!("{signing_input}.{}", B64.encode(tag.as_ref()))
        }
    };
    let hs_ok = check(&f.hs256, &token);
    assert!(
        !check(&f.eddsa, &token),
        "a token verified against a key the fuzzer never saw: {token:?}"
    );
    if mode % 3 != 2 {
        // Without the secret's MAC a token must not verify either.
        assert!(!hs_ok, "an unsigned token verified: {token:?}");
    }
});
