//! Password hashing and verification (argon2id).
//!
//! Verification costs tens of milliseconds of CPU and ~19 MiB of memory by
//! design, so it runs on tokio's blocking pool, never on the proxy's async
//! workers, with at most [`Verifier::permits`] at a time and a bounded queue:
//! past it, signin answers 503 at once instead of piling up work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// Signins allowed to wait for a verification slot; beyond it: 503.
pub const MAX_QUEUED_VERIFICATIONS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// Too many verifications running and waiting.
    Busy,
}

pub struct Verifier {
    slots: Arc<Semaphore>,
    permits: usize,
    queued: AtomicUsize,
    max_queued: usize,
    /// Verified against when the user does not exist, so an unknown user
    /// costs the same time as a wrong password.
    dummy_hash: String,
}

impl Verifier {
    /// `permits` verifications at once (one per core is right: each is pure CPU).
    pub fn new(permits: usize, max_queued: usize) -> Self {
        let permits = permits.max(1);
        let dummy_hash = hash_password(&crate::auth::jwt::random_b64::<24>()).unwrap_or_default();
        Self {
            slots: Arc::new(Semaphore::new(permits)),
            permits,
            queued: AtomicUsize::new(0),
            max_queued,
            dummy_hash,
        }
    }

    pub fn permits(&self) -> usize {
        self.permits
    }

    /// Verifies `password` against `hash`, or against the dummy hash when
    /// `hash` is None (unknown user); the result is then always false.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> Result<bool, VerifyError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.permits + self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(VerifyError::Busy);
        }
        let _queued = QueueSlot(&self.queued);
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| VerifyError::Busy)?;
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy_hash).to_string();
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .map_err(|_| VerifyError::Busy)?;
        Ok(known && ok)
    }
}

struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An argon2id PHC string with the crate's defaults (m=19456 KiB, t=2, p=1:
/// the OWASP minimum) and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_right_password_only_and_unknown_user_is_false() {
        let v = Verifier::new(1, 4);
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(v.verify(Some(&h), "correct horse").await, Ok(true));
        assert_eq!(v.verify(Some(&h), "wrong").await, Ok(false));
        assert_eq!(v.verify(None, "correct horse").await, Ok(false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saturation_answers_busy_instead_of_queueing_forever() {
        let v = Arc::new(Verifier::new(1, 0));
        let h = hash_password("pw").unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (v, h) = (v.clone(), h.clone());
                tokio::spawn(async move { v.verify(Some(&h), "pw").await })
            })
            .collect();
        let mut busy = 0;
        for t in tasks {
            if t.await.unwrap() == Err(VerifyError::Busy) {
                busy += 1;
            }
        }
        assert!(
            busy > 0,
            "8 parallel verifications with 1 slot and no queue all ran"
        );
    }
}
