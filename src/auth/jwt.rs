//! Access tokens: signing, verification, and the verified-token cache.
//!
//! Verifying an EdDSA signature costs about 50 µs, ES256 about 300 µs: more
//! than a whole proxied request in nginx. So a token's signature and claims
//! are verified once and remembered in a [`TokenCache`] keyed by the exact
//! token bytes until the token's `exp`; every request still checks the live
//! session, so logout and revocation stay immediate.
//!
//! Time is never read by the JWT library (`validate_exp`/`validate_nbf` are
//! off): `exp`, `nbf` and the leeway are checked against our [`Clock`].
//!
//! [`Clock`]: crate::clock::Clock

use std::hash::{BuildHasher, Hasher};
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use dashmap::DashMap;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::file::Collector;
use crate::config::{JwtAlgorithm, JwtConfig};
use crate::session::SessionId;

/// Tokens longer than this are refused before any parsing or crypto.
/// A token with 300 long role names is about 25 KB; real ones are < 1 KB.
pub const MAX_TOKEN_LEN: usize = 32 * 1024;
/// Smallest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_HS256_SECRET: usize = 32;
/// Upper bound of the verified-token cache; beyond it tokens are verified
/// every time (correct, only slower) until the sweeper drops expired ones.
pub const TOKEN_CACHE_MAX: usize = 1_000_000;
const TOKEN_TYPE: &str = "at+jwt";

/// The claims of an access token (all required).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    pub roles: Vec<String>,
}

/// What the hot path needs from a verified token. `Copy`: no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub sid: SessionId,
    pub nbf: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("signature or claims invalid")]
    Invalid,
}

/// Signing key, verification keys and the published JWKS.
pub struct Keys {
    alg: Algorithm,
    encoding: EncodingKey,
    kid: Option<String>,
    decoding: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
    jwks_json: Vec<u8>,
    pub issuer: String,
    pub audience: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish()
    }
}

impl Keys {
    /// Loads the key material named by the config; problems are reported
    /// against `auth.jwt.*`.
    pub fn load(cfg: &JwtConfig, c: &mut Collector) -> Option<Keys> {
        let alg = cfg.algorithm.as_jsonwebtoken();
        let (encoding, decoding, jwk) = match cfg.algorithm {
            JwtAlgorithm::HS256 => {
                let path = cfg.secret_file.as_deref()?;
                let secret = match std::fs::read(path) {
                    Ok(s) => s,
                    Err(e) => {
                        c.err(
                            "auth.jwt.secret_file",
                            format!("cannot read {}: {e}", path.display()),
                        );
                        return None;
                    }
                };
                let secret = trim_ascii_end(&secret);
                if secret.len() < MIN_HS256_SECRET || secret.iter().all(|b| *b == secret[0]) {
                    c.err(
                        "auth.jwt.secret_file",
                        format!("{} holds a weak secret: HS256 needs at least {MIN_HS256_SECRET} random bytes (e.g. `head -c 48 /dev/urandom > FILE`)", path.display()),
                    );
                    return None;
                }
                let enc = EncodingKey::from_secret(secret).ok()?;
                let dec = DecodingKey::from_secret(secret).ok()?;
                (enc, dec, None)
            }
            algorithm => {
                let path = &cfg.signing_key;
                let pem = match std::fs::read(path) {
                    Ok(p) => p,
                    Err(e) => {
                        c.err(
                            "auth.jwt.signing_key",
                            format!(
                                "cannot read {}: {e} ({})",
                                path.display(),
                                key_hint(algorithm)
                            ),
                        );
                        return None;
                    }
                };
                match signing_pair(algorithm, alg, &pem) {
                    Ok((enc, dec, jwk)) => (enc, dec, Some(jwk)),
                    Err(msg) => {
                        c.err("auth.jwt.signing_key", format!("{}: {msg}", path.display()));
                        return None;
                    }
                }
            }
        };
        let publish = |mut jwk: Jwk| {
            let kid = jwk.thumbprint(ThumbprintHash::SHA256).ok();
            jwk.common.key_id = kid.clone();
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwk.common.key_algorithm = Some(alg.into());
            (kid, jwk)
        };
        let mut jwks = JwkSet { keys: vec![] };
        let kid = jwk.map(|jwk| {
            let (kid, jwk) = publish(jwk);
            jwks.keys.push(jwk);
            kid
        });
        let kid = kid.flatten();
        let mut decoders = vec![(kid.clone(), decoding)];
        // Older keys: they verify, they never sign (rotation).
        for (i, path) in cfg.verify_keys.iter().enumerate() {
            let key = format!("auth.jwt.verify_keys[{i}]");
            let pem = match std::fs::read(path) {
                Ok(p) => p,
                Err(e) => {
                    c.err(key, format!("cannot read {}: {e}", path.display()));
                    continue;
                }
            };
            match verifying_key(cfg.algorithm, alg, &pem) {
                Ok((dec, jwk)) => {
                    let (vkid, jwk) = publish(jwk);
                    if decoders.iter().any(|(k, _)| *k == vkid) {
                        c.err(
                            key,
                            format!(
                                "{} is the same key as the signing key or an earlier verify key",
                                path.display()
                            ),
                        );
                        continue;
                    }
                    decoders.push((vkid, dec));
                    jwks.keys.push(jwk);
                }
                Err(msg) => c.err(key, format!("{}: {msg}", path.display())),
            }
        }
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_issuer(&[cfg.issuer.as_str()]);
        validation.set_audience(&[cfg.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        Some(Keys {
            alg,
            encoding,
            decoding: decoders,
            kid,
            validation,
            jwks_json: serde_json::to_vec(&jwks).unwrap_or_else(|_| b"{\"keys\":[]}".to_vec()),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
        })
    }

    /// Loads keys or returns the problems as a message (tests, benches).
    pub fn load_or_err(cfg: &JwtConfig) -> Result<Keys, crate::config::Problems> {
        let mut c = Collector::new(Path::new("config"));
        match Keys::load(cfg, &mut c) {
            Some(k) if c.problems.is_empty() => Ok(k),
            _ => Err(crate::config::Problems(c.problems)),
        }
    }

    pub fn jwks_json(&self) -> &[u8] {
        &self.jwks_json
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Signs an access token.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(self.alg);
        header.typ = Some(TOKEN_TYPE.to_string());
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// Verifies signature, algorithm, `typ`, `iss`, `aud` and the presence of
    /// every claim. Time claims are returned, not checked (see module doc).
    pub fn verify(&self, token: &str) -> Result<(Verified, AccessClaims), TokenError> {
        if !well_formed(token) {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // Only our own header shapes: pinned alg, our typ, our kid (if any),
        // and nothing that could make a library fetch or trust a key.
        if header.alg != self.alg
            || header.typ.as_deref() != Some(TOKEN_TYPE)
            || header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Err(TokenError::Invalid);
        }
        let key = self
            .decoding
            .iter()
            .find(|(kid, _)| header.kid.is_none() || kid.as_deref() == header.kid.as_deref())
            .map(|(_, k)| k)
            .ok_or(TokenError::Invalid)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let sid = SessionId::from_b64(&claims.sid).ok_or(TokenError::Invalid)?;
        if claims.nbf > claims.exp || claims.iat > claims.exp {
            return Err(TokenError::Invalid);
        }
        Ok((
            Verified {
                sid,
                nbf: claims.nbf,
                exp: claims.exp,
            },
            claims,
        ))
    }
}

fn trim_ascii_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &b[..end]
}

/// Three non-empty base64url parts and a sane size, before any decoding.
fn well_formed(token: &str) -> bool {
    let b = token.as_bytes();
    if b.is_empty() || b.len() > MAX_TOKEN_LEN {
        return false;
    }
    let mut dots = 0;
    let mut part_len = 0;
    for &ch in b {
        if ch == b'.' {
            if part_len == 0 {
                return false;
            }
            dots += 1;
            part_len = 0;
        } else if ch.is_ascii_alphanumeric() || ch == b'-' || ch == b'_' {
            part_len += 1;
        } else {
            return false;
        }
    }
    dots == 2 && part_len > 0
}

/// A verification key from a PEM public key (SPKI, or PKCS#1 for RSA), or
/// from a former signing key (its public half is used).
fn verifying_key(
    algorithm: JwtAlgorithm,
    alg: Algorithm,
    pem: &[u8],
) -> Result<(DecodingKey, Jwk), String> {
    let public = match algorithm {
        JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(pem),
        JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        JwtAlgorithm::HS256 => return Err("HS256 has no public keys".into()),
    };
    if let Ok(dec) = public {
        if let Ok(jwk) = Jwk::from_decoding_key(&dec, Some(alg)) {
            // Normalize through the JWK so every key verifies the same way.
            if let Ok(dec) = DecodingKey::from_jwk(&jwk) {
                return Ok((dec, jwk));
            }
        }
    }
    signing_pair(algorithm, alg, pem)
        .map(|(_, dec, jwk)| (dec, jwk))
        .map_err(|_| format!("not a PEM public key (or former signing key) for {alg:?}"))
}

/// How to make a signing key for `algorithm`.
fn key_hint(algorithm: JwtAlgorithm) -> &'static str {
    match algorithm {
        JwtAlgorithm::EdDSA => "create one with `authgate gen-keys`",
        JwtAlgorithm::ES256 => "create one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out FILE`",
        JwtAlgorithm::RS256 => "create one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out FILE`",
        JwtAlgorithm::HS256 => "HS256 uses auth.jwt.secret_file",
    }
}

/// The encoding key, the matching decoding key and the public JWK.
fn signing_pair(
    algorithm: JwtAlgorithm,
    alg: Algorithm,
    pem: &[u8],
) -> Result<(EncodingKey, DecodingKey, Jwk), String> {
    let bad = |what: &str| format!("not a PEM {what} private key ({})", key_hint(algorithm));
    match algorithm {
        JwtAlgorithm::EdDSA => {
            let enc = EncodingKey::from_ed_pem(pem).map_err(|_| bad("Ed25519 (PKCS#8)"))?;
            // ring reads both PKCS#8 v1 (openssl) and v2 (ring, rcgen) documents.
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(enc.as_bytes())
                .map_err(|_| bad("Ed25519 (PKCS#8)"))?;
            let public = ring::signature::KeyPair::public_key(&pair)
                .as_ref()
                .to_vec();
            let dec = DecodingKey::from_ed_der(&public);
            let jwk = Jwk::from_decoding_key(&dec, Some(alg))
                .map_err(|e| format!("unusable Ed25519 key: {e}"))?;
            Ok((enc, dec, jwk))
        }
        JwtAlgorithm::ES256 => {
            let enc = EncodingKey::from_ec_pem(pem).map_err(|_| bad("P-256 (PKCS#8)"))?;
            let jwk = Jwk::from_encoding_key(&enc, alg).map_err(|_| bad("P-256 (PKCS#8)"))?;
            let dec =
                DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable P-256 key: {e}"))?;
            Ok((enc, dec, jwk))
        }
        JwtAlgorithm::RS256 => {
            let enc = EncodingKey::from_rsa_pem(pem).map_err(|_| bad("RSA"))?;
            let jwk = Jwk::from_encoding_key(&enc, alg).map_err(|_| bad("RSA"))?;
            if let jsonwebtoken::jwk::AlgorithmParameters::RSA(p) = &jwk.algorithm {
                let bits = B64.decode(&p.n).map(|n| n.len() * 8).unwrap_or(0);
                if bits < 2048 {
                    return Err(format!("the RSA key has {bits} bits; use at least 2048"));
                }
            }
            let dec = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable RSA key: {e}"))?;
            Ok((enc, dec, jwk))
        }
        JwtAlgorithm::HS256 => Err("HS256 uses auth.jwt.secret_file".into()),
    }
}

/// Remembers tokens whose signature and claims were verified, keyed by a
/// keyed hash of the token and confirmed by comparing the whole token.
pub struct TokenCache {
    map: DashMap<u64, CachedToken, NoHashBuilder>,
    hasher: std::collections::hash_map::RandomState,
    max: usize,
}

struct CachedToken {
    token: Box<[u8]>,
    verified: Verified,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_capacity_limit(TOKEN_CACHE_MAX)
    }
}

impl TokenCache {
    pub fn with_capacity_limit(max: usize) -> Self {
        Self {
            map: DashMap::with_hasher(NoHashBuilder),
            hasher: std::collections::hash_map::RandomState::new(),
            max,
        }
    }

    fn key(&self, token: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(token.as_bytes());
        h.finish()
    }

    /// A verified token's facts, if this exact token was verified before.
    pub fn get(&self, token: &str) -> Option<Verified> {
        let entry = self.map.get(&self.key(token))?;
        // Constant-time: a timing difference must not reveal how much of a
        // forged token matches a real one.
        if ct_eq_words(&entry.token, token.as_bytes()) {
            Some(entry.verified)
        } else {
            None
        }
    }

    pub fn insert(&self, token: &str, verified: Verified) {
        if self.map.len() >= self.max {
            return;
        }
        self.map.insert(
            self.key(token),
            CachedToken {
                token: token.as_bytes().into(),
                verified,
            },
        );
    }

    /// Drops tokens whose `exp` (plus leeway) has passed.
    pub fn purge_expired(&self, now_s: u64, leeway_s: u64) {
        self.map.retain(|_, t| t.verified.exp + leeway_s >= now_s);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Constant-time equality of two byte strings, 8 bytes per step: no branch
/// depends on the contents, only on the lengths (a token's length is no
/// secret). `subtle`'s slice comparison fences every byte; on a ~450-byte
/// token that was half the cost of a cache hit (callgrind, 2026-12-04).
fn ct_eq_words(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut acc, mut chunks_a, mut chunks_b) = (0u64, a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut chunks_a).zip(&mut chunks_b) {
        let x = u64::from_ne_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_ne_bytes(y.try_into().expect("8 bytes"));
        acc |= x ^ y;
    }
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        acc |= u64::from(x ^ y);
    }
    std::hint::black_box(acc) == 0
}

/// The cache key already is a keyed SipHash of the token: hashing it again
/// would only cost time.
#[derive(Clone, Default)]
pub struct NoHashBuilder;

impl BuildHasher for NoHashBuilder {
    type Hasher = NoHash;
    fn build_hasher(&self) -> NoHash {
        NoHash(0)
    }
}

pub struct NoHash(u64);

impl Hasher for NoHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Random bytes from the OS, base64url.
pub fn random_b64<const N: usize>() -> String {
    B64.encode(random_bytes::<N>())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS RNG failing is not recoverable and must never yield a
    // predictable id: abort the request (caught by pingora as a panic)
    // rather than continue.
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the operating system's random number generator failed");
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::JwtConfig;
    use std::time::Duration;

    #[test]
    fn word_wise_comparison_matches_plain_equality() {
        let base: Vec<u8> = (0..=255u8).cycle().take(461).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 460, 461] {
            let a = &base[..len];
            assert!(ct_eq_words(a, a), "equal, len {len}");
            for i in 0..len {
                let mut b = a.to_vec();
                b[i] ^= 0x01;
                assert!(!ct_eq_words(a, &b), "differs at {i} of {len}");
            }
            if len > 0 {
                assert!(!ct_eq_words(a, &a[..len - 1]), "shorter, len {len}");
            }
        }
    }

    pub fn eddsa_config(dir: &Path) -> JwtConfig {
        let key = dir.join("jwt.pem");
        std::fs::write(&key, crate::keys::ed25519_pkcs8_pem()).unwrap();
        JwtConfig {
            algorithm: JwtAlgorithm::EdDSA,
            signing_key: key,
            secret_file: None,
            verify_keys: vec![],
            issuer: "authgate".into(),
            audience: "authgate".into(),
            leeway: Duration::from_secs(2),
        }
    }

    fn claims(sid: SessionId) -> AccessClaims {
        AccessClaims {
            iss: "authgate".into(),
            aud: "authgate".into(),
            sub: "demo".into(),
            sid: sid.to_b64(),
            iat: 100,
            nbf: 100,
            exp: 200,
            jti: random_b64::<16>(),
            roles: vec!["user".into()],
        }
    }

    #[test]
    fn signed_token_verifies_and_tampering_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_err(&eddsa_config(dir.path())).unwrap();
        let sid = SessionId::random();
        let t = keys.sign(&claims(sid)).unwrap();
        let (v, c) = keys.verify(&t).unwrap();
        assert_eq!(v.sid, sid);
        assert_eq!(c.sub, "demo");
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"].as_str(), keys.kid());

        // flip one payload character
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let mut p = B64.decode(&parts[1]).unwrap();
        p[5] ^= 1;
        parts[1] = B64.encode(p);
        assert_eq!(keys.verify(&parts.join(".")), Err(TokenError::Invalid));
        for bad in ["", "a.b", "a.b.c.d", "a..c", "a.b.c d", "é.b.c"] {
            assert!(keys.verify(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            keys.verify(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn alg_none_other_families_wrong_typ_iss_aud_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = eddsa_config(dir.path());
        let keys = Keys::load_or_err(&cfg).unwrap();
        let sid = SessionId::random();
        let good = keys.sign(&claims(sid)).unwrap();
        let payload = good.split('.').nth(1).unwrap();
        for header in [
            r#"{"alg":"none","typ":"at+jwt"}"#,
            r#"{"alg":"NONE","typ":"at+jwt"}"#,
            r#"{"alg":"HS256","typ":"at+jwt"}"#,
            r#"{"alg":"EdDSA","typ":"JWT"}"#,
            r#"{"alg":"EdDSA"}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","jku":"http://evil/"}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"unknown"}"#,
        ] {
            let t = format!(
                "{}.{}.{}",
                B64.encode(header),
                payload,
                good.split('.').nth(2).unwrap()
            );
            assert!(keys.verify(&t).is_err(), "{header} accepted");
        }
        // HS256 key confusion: sign with the public key bytes as a secret.
        let mut hs = Header::new(Algorithm::HS256);
        hs.typ = Some("at+jwt".into());
        let forged = jsonwebtoken::encode(
            &hs,
            &claims(sid),
            &EncodingKey::from_secret(keys.jwks_json()).unwrap(),
        )
        .unwrap();
        assert!(keys.verify(&forged).is_err());

        for (field, value) in [("iss", "other"), ("aud", "other")] {
            let mut c = claims(sid);
            if field == "iss" {
                c.iss = value.into()
            } else {
                c.aud = value.into()
            }
            assert!(
                keys.verify(&keys.sign(&c).unwrap()).is_err(),
                "{field} accepted"
            );
        }
    }

    #[test]
    fn weak_hs256_secret_is_refused_and_strong_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = eddsa_config(dir.path());
        cfg.algorithm = JwtAlgorithm::HS256;
        let f = dir.path().join("s");
        cfg.secret_file = Some(f.clone());
        std::fs::write(&f, "short-secret\n").unwrap();
        assert!(Keys::load_or_err(&cfg)
            .unwrap_err()
            .to_string()
            .contains("weak secret"));
        std::fs::write(&f, [b'a'; 64]).unwrap();
        assert!(Keys::load_or_err(&cfg).is_err());
        std::fs::write(&f, random_bytes::<48>()).unwrap();
        let keys = Keys::load_or_err(&cfg).unwrap();
        assert_eq!(keys.jwks_json(), b"{\"keys\":[]}");
        let t = keys.sign(&claims(SessionId::random())).unwrap();
        assert!(keys.verify(&t).is_ok());
    }

    #[test]
    fn rotation_old_keys_verify_new_key_signs_and_jwks_lists_all() {
        let dir = tempfile::tempdir().unwrap();
        let old_cfg = eddsa_config(dir.path());
        let old = Keys::load_or_err(&old_cfg).unwrap();
        let old_token = old.sign(&claims(SessionId::random())).unwrap();
        // rotate: a new signing key; the old one as a public key, plus a
        // former signing key given as its private PEM
        let old_public = dir.path().join("old.pub.pem");
        std::fs::write(
            &old_public,
            crate::keys::ed25519_public_pem(&std::fs::read(&old_cfg.signing_key).unwrap()).unwrap(),
        )
        .unwrap();
        let older_private = dir.path().join("older.pem");
        std::fs::write(&older_private, crate::keys::ed25519_pkcs8_pem()).unwrap();
        let mut cfg = old_cfg.clone();
        cfg.signing_key = dir.path().join("new.pem");
        std::fs::write(&cfg.signing_key, crate::keys::ed25519_pkcs8_pem()).unwrap();
        cfg.verify_keys = vec![old_public.clone(), older_private];
        let new = Keys::load_or_err(&cfg).unwrap();
        assert!(
            new.verify(&old_token).is_ok(),
            "old token no longer verifies"
        );
        let new_token = new.sign(&claims(SessionId::random())).unwrap();
        assert!(new.verify(&new_token).is_ok());
        assert!(old.verify(&new_token).is_err());
        let jwks: serde_json::Value = serde_json::from_slice(new.jwks_json()).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids.len(), 3);
        assert_eq!(kids[0], new.kid().unwrap());
        assert_eq!(kids[1], old.kid().unwrap());
        // the signing key again, and garbage, are refused with their index
        cfg.verify_keys = vec![cfg.signing_key.clone(), dir.path().join("missing.pem")];
        let msg = Keys::load_or_err(&cfg).unwrap_err().to_string();
        assert!(
            msg.contains("verify_keys[0]") && msg.contains("same key"),
            "{msg}"
        );
        assert!(msg.contains("verify_keys[1]: cannot read"), "{msg}");
    }

    #[test]
    fn cache_hits_only_the_exact_token() {
        let cache = TokenCache::default();
        let v = Verified {
            sid: SessionId::random(),
            nbf: 1,
            exp: 100,
        };
        cache.insert("aaa.bbb.ccc", v);
        assert_eq!(cache.get("aaa.bbb.ccc"), Some(v));
        assert_eq!(cache.get("aaa.bbb.ccd"), None);
        cache.purge_expired(103, 2);
        assert_eq!(cache.get("aaa.bbb.ccc"), None);
    }
}
