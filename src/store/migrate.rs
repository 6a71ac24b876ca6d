//! Versioned schema migrations, applied in order when the store opens.
//!
//! The version lives in SQLite's `user_version`; each migration runs in its
//! own transaction together with the version bump, so a crash leaves the
//! file at one version or the next, never between. A file from a newer
//! voxgate (a version above [`LATEST`]) is refused rather than guessed at.

use rusqlite::Connection;

use super::StoreError;

/// The schema, one entry per version: `MIGRATIONS[0]` takes an empty file to
/// version 1. Never edit an entry that has shipped; add one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: accounts. One account per (brand, number); the number is E.164.
    // Secrets are sealed blobs (`store::sealed`), never text.
    "CREATE TABLE accounts (
        id          TEXT PRIMARY KEY NOT NULL,
        brand       TEXT NOT NULL DEFAULT '',
        phone       TEXT NOT NULL,
        name        TEXT,
        email       TEXT,
        line_type   TEXT,
        passphrase  BLOB,
        totp_secret BLOB,
        fields      TEXT NOT NULL DEFAULT '{}',
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        UNIQUE (brand, phone)
    );",
    // 2: store-wide facts (the secret key's check value), and listing by
    // brand without a scan.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    );
    CREATE INDEX accounts_by_brand ON accounts (brand, id);",
    // 3: failed checks of a factor (passphrase now, codes next) per account,
    // counted in a window across calls and restarts for lockouts.
    "CREATE TABLE auth_failures (
        account_id TEXT NOT NULL,
        factor     TEXT NOT NULL,
        at         INTEGER NOT NULL
    );
    CREATE INDEX auth_failures_by_account ON auth_failures (account_id, factor, at);",
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// The file's schema version (0 for a new, empty file).
pub(crate) fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))?)
}

/// Bring the file up to [`LATEST`]; returns the version it had.
pub(crate) fn apply(conn: &mut Connection) -> Result<u32, StoreError> {
    let from = version(conn)?;
    if from > LATEST {
        return Err(StoreError::TooNew {
            found: from,
            known: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let to = i as u32 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Migration { to, source: e })?;
        tx.pragma_update(None, "user_version", to)?;
        tx.commit()?;
    }
    Ok(from)
}

/// Apply migrations only up to `to` (tests build every earlier version).
#[cfg(test)]
pub(crate) fn apply_up_to(conn: &mut Connection, to: u32) -> Result<(), StoreError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().take(to as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
