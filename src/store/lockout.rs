//! Failed checks per account and factor, kept in the database so a lockout
//! holds across calls and restarts: N failures within a window lock the
//! factor for that account until the oldest of them leaves the window (or a
//! success clears them).

use rusqlite::params;

use super::{Store, StoreError};

/// A factor whose failures are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    /// The spoken passphrase.
    Passphrase,
    /// One-time codes.
    Code,
    /// Authenticator-app codes.
    Totp,
}

impl Factor {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Passphrase => "passphrase",
            Factor::Code => "code",
            Factor::Totp => "totp",
        }
    }
}

impl Store {
    pub(crate) fn reserve_check_at(
        &self,
        account: &str,
        factor: Factor,
        at: i64,
        since: i64,
        max: u32,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            // IMMEDIATE: the write lock is taken before the count, so two
            // processes or threads cannot both see room for one more guess.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Old rows are of no use to any window: drop them as we go.
            tx.execute(
                "DELETE FROM auth_failures WHERE account_id = ?1 AND factor = ?2 AND at < ?3",
                params![account, factor.as_str(), since],
            )?;
            if count(&tx, account, factor, since)? >= max {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO auth_failures (account_id, factor, at) VALUES (?1, ?2, ?3)",
                params![account, factor.as_str(), at],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    pub(crate) fn failures_since_at(
        &self,
        account: &str,
        factor: Factor,
        since: i64,
    ) -> Result<u32, StoreError> {
        self.with(|c| count(c, account, factor, since))
    }

    pub(crate) fn clear_failures_of(
        &self,
        account: &str,
        factor: Factor,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM auth_failures WHERE account_id = ?1 AND factor = ?2",
                params![account, factor.as_str()],
            )?;
            Ok(())
        })
    }
}

fn count(
    c: &rusqlite::Connection,
    account: &str,
    factor: Factor,
    since: i64,
) -> Result<u32, StoreError> {
    Ok(c.query_row(
        "SELECT count(*) FROM auth_failures WHERE account_id = ?1 AND factor = ?2 AND at >= ?3",
        params![account, factor.as_str(), since],
        |r| r.get::<_, i64>(0),
    )? as u32)
}
