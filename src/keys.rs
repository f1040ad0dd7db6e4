//! Development key material: `authgate gen-keys` and `tls.generate_self_signed`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410 §7); the 32-byte
/// seed follows. v1 is what openssl writes and every JWT library reads.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

pub const TLS_CERT_FILE: &str = "tls-cert.pem";
pub const TLS_KEY_FILE: &str = "tls-key.pem";
pub const JWT_KEY_FILE: &str = "jwt-signing-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0} already exists; refusing to overwrite it (move it away first)")]
    Exists(PathBuf),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("cannot create a self-signed certificate: {0}")]
    Cert(String),
}

/// A fresh Ed25519 signing key as a PKCS#8 PEM document.
pub fn ed25519_pkcs8_pem() -> String {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&crate::auth::jwt::random_bytes::<32>());
    pem("PRIVATE KEY", &der)
}

/// The public half of an Ed25519 PKCS#8 PEM key, as an SPKI PEM document
/// (what `auth.jwt.verify_keys` takes after a rotation).
pub fn ed25519_public_pem(private_pem: &[u8]) -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(private_pem).ok()?;
    let pair =
        ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der()).ok()?;
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
    Some(pem("PUBLIC KEY", &spki))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A self-signed certificate for localhost and 127.0.0.1: (cert PEM, key PEM).
pub fn self_signed_tls() -> Result<(String, String), KeyError> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| KeyError::Cert(e.to_string()))?;
    Ok((ck.cert.pem(), ck.signing_key.serialize_pem()))
}

/// Writes a new file; never overwrites; `secret` files get mode 0600.
pub fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| KeyError::Write(dir.to_path_buf(), e))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 });
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists(path.to_path_buf())
        } else {
            KeyError::Write(path.to_path_buf(), e)
        }
    })?;
    f.write_all(contents.as_bytes())
        .map_err(|e| KeyError::Write(path.to_path_buf(), e))
}

/// `authgate gen-keys --dir DIR`: all three files or none.
pub fn gen_keys(dir: &Path) -> Result<Vec<PathBuf>, KeyError> {
    let files = [
        dir.join(TLS_CERT_FILE),
        dir.join(TLS_KEY_FILE),
        dir.join(JWT_KEY_FILE),
    ];
    if let Some(existing) = files.iter().find(|p| p.exists()) {
        return Err(KeyError::Exists(existing.clone()));
    }
    let (cert, key) = self_signed_tls()?;
    write_new(&files[0], &cert, false)?;
    write_new(&files[1], &key, true)?;
    write_new(&files[2], &ed25519_pkcs8_pem(), true)?;
    Ok(files.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn gen_keys_writes_private_keys_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let files = gen_keys(dir.path()).unwrap();
        assert_eq!(files.len(), 3);
        for f in &files[1..] {
            assert_eq!(
                std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(matches!(gen_keys(dir.path()), Err(KeyError::Exists(_))));
        let certs = pingora::tls::load_certs_and_key_files(
            files[0].to_str().unwrap(),
            files[1].to_str().unwrap(),
        );
        assert!(matches!(certs, Ok(Some(_))));
    }
}
