//! Operators' passwords (Argon2id), the login rate limit, session cookies
//! and CSRF tokens.
//!
//! The session cookie is `HttpOnly; SameSite=Strict; Path=/` (and `Secure`
//! when configured); its token is 256 random bits, stored only hashed.
//! Every POST carries a CSRF token: the session's for logout, and for the
//! login form a pre-session token that must match its own cookie (double
//! submit), so another site cannot log a browser in under its account.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::HeaderMap;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "vg_session";
/// The login form's CSRF cookie.
pub const LOGIN_COOKIE: &str = "vg_login";

/// The PHC string (Argon2id, default parameters, random salt) of
/// `password`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `phc`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random token (256 bits, URL-safe base64).
pub fn token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    data_encoding::BASE64URL_NOPAD.encode(&b)
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value for `name=value` living `max_age` (zero: delete).
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// Failed logins per key (client address, operator name) in a sliding
/// minute; bounded so a flood of names cannot grow it without end.
#[derive(Debug)]
pub struct LoginLimiter {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Keys tracked at most; beyond it the oldest-idle are forgotten.
const MAX_KEYS: usize = 10_000;

impl LoginLimiter {
    /// At most `max` failures per key per minute.
    pub fn new(max: u32) -> LoginLimiter {
        LoginLimiter {
            max,
            window: Duration::from_secs(60),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any of `keys` has used up its failures.
    pub fn blocked(&self, keys: &[&str]) -> bool {
        let Ok(mut m) = self.failures.lock() else {
            return true;
        };
        let now = Instant::now();
        keys.iter().any(|k| {
            m.get_mut(*k).is_some_and(|q| {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.window)
                {
                    q.pop_front();
                }
                q.len() >= self.max as usize
            })
        })
    }

    /// Count a failure against each of `keys`.
    pub fn failed(&self, keys: &[&str]) {
        let Ok(mut m) = self.failures.lock() else {
            return;
        };
        let now = Instant::now();
        if m.len() >= MAX_KEYS {
            let window = self.window;
            m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= window));
        }
        for k in keys {
            let q = m.entry((*k).to_string()).or_default();
            q.push_back(now);
            while q.len() > self.max as usize {
                q.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_as_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn limiter_blocks_after_max_failures_per_key() {
        let l = LoginLimiter::new(2);
        assert!(!l.blocked(&["ip:a", "name:x"]));
        l.failed(&["ip:a", "name:x"]);
        l.failed(&["ip:a", "name:y"]);
        assert!(l.blocked(&["ip:a", "name:z"]));
        assert!(!l.blocked(&["ip:b", "name:x"]));
    }

    #[test]
    fn cookies_are_read_and_set_strict() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; vg_session=abc".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        let c = set_cookie("vg_session", "t", Duration::from_secs(60), false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("", ""));
    }
}
