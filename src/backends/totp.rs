//! Authenticator-app codes (RFC 6238 TOTP) checked against the account
//! store: the account's secret is opened from its seal only for the check
//! (and wiped after), codes are computed with `totp-rs` for each 30-second
//! step within ±`window` and compared in constant time, a code once
//! accepted is refused again (the store's `totp_used`), and wrong codes
//! count per account across calls towards a lockout. Store work runs on
//! tokio's blocking pool.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::{Zeroize, Zeroizing};

use super::{BoxFut, ServiceError, TotpCheck, TotpVerifier};
use crate::store::lockout::Factor;
use crate::store::{AccountStore, SecretField, SecretKey, StoreError, TotpAlgorithm, TotpParams};

pub use crate::config::TotpPolicy;

/// The time step (RFC 6238's X), fixed at the 30 s every authenticator app uses.
pub const STEP_SECS: u64 = 30;

/// The widest `window` a flow may ask for (steps either side of now).
pub const MAX_WINDOW: u32 = 3;

/// A `totp-rs` generator whose copy of the secret is wiped when dropped.
struct Generator(totp_rs::TOTP);

impl Generator {
    fn new(secret: &[u8], params: TotpParams) -> Self {
        let algorithm = match params.algorithm {
            TotpAlgorithm::Sha1 => totp_rs::Algorithm::SHA1,
            TotpAlgorithm::Sha256 => totp_rs::Algorithm::SHA256,
            TotpAlgorithm::Sha512 => totp_rs::Algorithm::SHA512,
        };
        // Unchecked: the store already holds the digits to 6–8, and secrets
        // enrolled elsewhere may be shorter than totp-rs's 128-bit floor
        // (RFC 4226 asks for 80 at least, which the CLI enforces).
        Generator(totp_rs::TOTP::new_unchecked(
            algorithm,
            params.digits as usize,
            0,
            STEP_SECS,
            secret.to_vec(),
            None,
            String::new(),
        ))
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.0.secret.zeroize();
    }
}

/// The code of `secret` under `params` at Unix time `unix` (its 30-second
/// step). A secret: never log it.
pub fn code_at(secret: &[u8], params: TotpParams, unix: u64) -> Zeroizing<String> {
    Zeroizing::new(Generator::new(secret, params).0.generate(unix))
}

/// The newest time step within ±`window` of `unix` whose code is `code`,
/// if any. Every step is computed and compared in constant time (no early
/// exit), so timing does not tell which step matched.
pub fn matching_step(
    secret: &[u8],
    params: TotpParams,
    code: &str,
    unix: u64,
    window: u32,
) -> Option<u64> {
    let g = Generator::new(secret, params);
    let now = unix / STEP_SECS;
    let window = u64::from(window.min(MAX_WINDOW));
    let mut found = None;
    for step in now.saturating_sub(window)..=now.saturating_add(window) {
        // skew 0: `check` compares this one step's code, in constant time.
        if g.0.check(code, step * STEP_SECS) {
            found = Some(step);
        }
    }
    found
}

/// The store-backed verifier `serve` uses.
pub struct StoreTotp {
    store: Arc<dyn AccountStore>,
    key: Arc<SecretKey>,
    policy: TotpPolicy,
}

impl StoreTotp {
    /// A verifier over `store`, opening secrets with `key`.
    pub fn new(store: Arc<dyn AccountStore>, key: Arc<SecretKey>, policy: TotpPolicy) -> Self {
        StoreTotp { store, key, policy }
    }

    fn since(&self, now: SystemTime) -> i64 {
        unix(now) - self.policy.window.as_secs() as i64
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Run blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Failed(format!("account store: {e}")))?
        .map_err(|e| ServiceError::Failed(format!("account store: {e}")))
}

/// What the check needs, read in one blocking trip.
enum Loaded {
    NotEnrolled,
    Locked,
    Secret(Zeroizing<Vec<u8>>, TotpParams),
}

impl TotpVerifier for StoreTotp {
    fn verify<'a>(
        &'a self,
        account_id: &'a str,
        code: &'a str,
        window: u32,
        now: SystemTime,
    ) -> BoxFut<'a, Result<TotpCheck, ServiceError>> {
        Box::pin(async move {
            let (store, key) = (self.store.clone(), self.key.clone());
            let id = account_id.to_string();
            let (at, since, max) = (unix(now), self.since(now), self.policy.max_failures);
            let loaded = {
                let id = id.clone();
                blocking(move || {
                    let Some(acc) = store.get(&id)?.filter(|a| a.has_totp) else {
                        return Ok(Loaded::NotEnrolled);
                    };
                    if store.failures_since(&id, Factor::Totp, since)? >= max {
                        return Ok(Loaded::Locked);
                    }
                    // The guess is counted before it is judged, so parallel
                    // calls cannot get more than `max` guesses in.
                    if !store.reserve_check(&id, Factor::Totp, at, since, max)? {
                        return Ok(Loaded::Locked);
                    }
                    Ok(match store.secret(&id, SecretField::TotpSecret, &key)? {
                        Some(s) => Loaded::Secret(s, acc.totp),
                        None => Loaded::NotEnrolled,
                    })
                })
                .await?
            };
            let step = match loaded {
                Loaded::NotEnrolled => return Ok(TotpCheck::NotEnrolled),
                Loaded::Locked => return Ok(TotpCheck::Locked),
                Loaded::Secret(secret, params) => {
                    matching_step(&secret, params, code, at.max(0) as u64, window)
                }
            };
            let Some(step) = step else {
                return Ok(TotpCheck::Wrong);
            };
            let store = self.store.clone();
            blocking(move || {
                if !store.accept_totp_step(&id, step as i64, at)? {
                    // Counted as a failure (the reservation stays).
                    return Ok(TotpCheck::Replayed);
                }
                store.clear_failures(&id, Factor::Totp)?;
                Ok(TotpCheck::Accepted)
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests;
