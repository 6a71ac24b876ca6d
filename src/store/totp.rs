//! TOTP enrolment parameters per account (hash and code length, migration
//! 7) and replay protection: the last time step accepted per account
//! (`totp_used`, migration 4), so a code once accepted is refused for the
//! rest of its window (RFC 6238 section 5.2).

use std::fmt;
use std::str::FromStr;

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};

/// The HMAC hash of an account's TOTP (RFC 6238 allows all three).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TotpAlgorithm {
    /// HMAC-SHA-1: what every authenticator app supports (the default).
    #[default]
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl TotpAlgorithm {
    /// The stored and `otpauth://` spelling (`SHA1`, `SHA256`, `SHA512`).
    pub fn as_str(self) -> &'static str {
        match self {
            TotpAlgorithm::Sha1 => "SHA1",
            TotpAlgorithm::Sha256 => "SHA256",
            TotpAlgorithm::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for TotpAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TotpAlgorithm {
    type Err = String;

    /// `sha1`, `SHA-256`, `sha512`…: case and a dash do not matter.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Ok(TotpAlgorithm::Sha1),
            "SHA256" => Ok(TotpAlgorithm::Sha256),
            "SHA512" => Ok(TotpAlgorithm::Sha512),
            _ => Err(format!(
                "TOTP algorithm `{s}`: expected sha1, sha256 or sha512"
            )),
        }
    }
}

/// How an account's TOTP codes are made (the step is always 30 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TotpParams {
    /// The HMAC hash.
    pub algorithm: TotpAlgorithm,
    /// Digits per code, 6–8.
    pub digits: u32,
}

impl Default for TotpParams {
    fn default() -> Self {
        TotpParams {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
        }
    }
}

impl TotpParams {
    /// Digits a code may have (RFC 4226 section 5.3).
    pub const DIGITS: std::ops::RangeInclusive<u32> = 6..=8;

    /// Refuse a code length outside 6–8.
    pub fn check(&self) -> Result<(), StoreError> {
        if Self::DIGITS.contains(&self.digits) {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "TOTP digits: {} is outside 6..8",
                self.digits
            )))
        }
    }

    /// Read the stored columns (an unknown spelling is an error, not a guess).
    pub(crate) fn from_columns(algorithm: &str, digits: i64) -> Result<Self, StoreError> {
        let p = TotpParams {
            algorithm: algorithm.parse().map_err(StoreError::Invalid)?,
            digits: u32::try_from(digits).unwrap_or(0),
        };
        p.check()?;
        Ok(p)
    }
}

impl Store {
    pub(crate) fn accept_totp_step_at(
        &self,
        account: &str,
        step: i64,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            // IMMEDIATE: the write lock is held from the read to the write,
            // so two calls entering the same code cannot both see it unused.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let last: Option<i64> = tx
                .query_row(
                    "SELECT last_step FROM totp_used WHERE account_id = ?1",
                    [account],
                    |r| r.get(0),
                )
                .optional()?;
            if last.is_some_and(|l| step <= l) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO totp_used (account_id, last_step, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id) DO UPDATE SET last_step = ?2, at = ?3",
                params![account, step, at],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_parse_loosely_and_print_as_otpauth_spells_them() {
        for (s, a) in [
            ("sha1", TotpAlgorithm::Sha1),
            ("SHA-256", TotpAlgorithm::Sha256),
            ("Sha512", TotpAlgorithm::Sha512),
        ] {
            assert_eq!(s.parse::<TotpAlgorithm>().unwrap(), a);
            assert_eq!(a.to_string().parse::<TotpAlgorithm>().unwrap(), a);
        }
        assert!("md5".parse::<TotpAlgorithm>().is_err());
        assert!(TotpParams::from_columns("SHA1", 9).is_err());
        assert_eq!(
            TotpParams::from_columns("SHA256", 8).unwrap(),
            TotpParams {
                algorithm: TotpAlgorithm::Sha256,
                digits: 8
            }
        );
    }
}
