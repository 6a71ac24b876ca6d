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
    // 4: TOTP replay protection: the last time step accepted per account;
    // a code of that step or an earlier one is refused (RFC 6238 5.2).
    "CREATE TABLE totp_used (
        account_id TEXT PRIMARY KEY NOT NULL,
        last_step  INTEGER NOT NULL,
        at         INTEGER NOT NULL
    );",
    // 5: code deliveries (one per message handed to a gateway) and every
    // status a gateway reported for them, with its time (milliseconds).
    // Never the message text: it carries the code.
    "CREATE TABLE deliveries (
        id           INTEGER PRIMARY KEY,
        code_id      TEXT,
        channel      TEXT NOT NULL,
        gateway      TEXT NOT NULL,
        message_id   TEXT,
        to_masked    TEXT NOT NULL,
        status       TEXT NOT NULL,
        error        TEXT,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX deliveries_by_message ON deliveries (gateway, message_id);
    CREATE INDEX deliveries_by_code ON deliveries (code_id);
    CREATE TABLE delivery_statuses (
        delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        status      TEXT NOT NULL,
        error       TEXT,
        at          INTEGER NOT NULL
    );
    CREATE INDEX delivery_statuses_by_delivery ON delivery_statuses (delivery_id, at);",
    // 6: one-time codes, only as a keyed hash (HMAC-SHA-256 over the code
    // id and the code), and every send for the abuse limits. `subject` is
    // the account id, or the destination number when no account is known;
    // times are milliseconds since the Unix epoch.
    "CREATE TABLE codes (
        id           TEXT PRIMARY KEY NOT NULL,
        subject      TEXT NOT NULL,
        call_id      TEXT NOT NULL,
        channel      TEXT NOT NULL,
        destination  TEXT NOT NULL,
        mac          BLOB NOT NULL,
        sent_at      INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        state        TEXT NOT NULL
    );
    CREATE INDEX codes_by_subject ON codes (subject, state, expires_at);
    CREATE INDEX codes_by_expiry ON codes (expires_at);
    CREATE TABLE code_sends (
        destination TEXT NOT NULL,
        caller      TEXT NOT NULL,
        at          INTEGER NOT NULL
    );
    CREATE INDEX code_sends_by_destination ON code_sends (destination, at);
    CREATE INDEX code_sends_by_caller ON code_sends (caller, at);",
    // 7: TOTP parameters per account (RFC 6238: the HMAC hash and the code
    // length); accounts enrolled before keep what authenticator apps assume.
    "ALTER TABLE accounts ADD COLUMN totp_algorithm TEXT NOT NULL DEFAULT 'SHA1';
    ALTER TABLE accounts ADD COLUMN totp_digits INTEGER NOT NULL DEFAULT 6;",
    // 8: call records, one per call, folded from its events and written at
    // its end (`store::records`). Times in milliseconds since the Unix
    // epoch (UTC). The caller number only masked; never a code, passphrase,
    // transcript or full number. `methods` is a JSON array of
    // {method, attempts, result, reasons}. `call_days` counts the records
    // per UTC day (days since the epoch) and dimension, kept in the same
    // transaction: the funnel queries (`store::report`) read only it.
    "CREATE TABLE call_records (
        call_id         TEXT PRIMARY KEY NOT NULL,
        started_at      INTEGER NOT NULL,
        answered_at     INTEGER,
        ended_at        INTEGER NOT NULL,
        caller_masked   TEXT NOT NULL,
        country         TEXT NOT NULL DEFAULT '',
        calling_code    TEXT NOT NULL DEFAULT '',
        dialled         TEXT NOT NULL,
        brand           TEXT NOT NULL DEFAULT '',
        flow            TEXT NOT NULL,
        steps           INTEGER NOT NULL,
        path            TEXT NOT NULL,
        outcome         TEXT NOT NULL,
        auth_method     TEXT,
        auth_result     TEXT,
        methods         TEXT NOT NULL DEFAULT '[]',
        lookup          TEXT,
        codes_sent      INTEGER NOT NULL DEFAULT 0,
        code_send       TEXT,
        transfer_result TEXT,
        transfer_agent  TEXT,
        hangup_by       TEXT
    );
    CREATE INDEX call_records_by_start ON call_records (started_at);
    CREATE INDEX call_records_by_country ON call_records (country, started_at);
    CREATE TABLE call_days (
        day          INTEGER NOT NULL,
        brand        TEXT NOT NULL,
        flow         TEXT NOT NULL,
        country      TEXT NOT NULL,
        calling_code TEXT NOT NULL,
        method       TEXT NOT NULL,
        outcome      TEXT NOT NULL,
        calls        INTEGER NOT NULL,
        PRIMARY KEY (day, brand, flow, country, calling_code, method, outcome)
    ) WITHOUT ROWID;",
    // 9: the operator console (issue 19): operators with an Argon2id PHC
    // string (never the password), sessions by the SHA-256 of their token
    // (a stolen file holds no usable cookie) with their CSRF token and
    // expiry (ms). The call-list indexes let the console page through ten
    // million records by outcome or flow newest first without a scan; the
    // outcome one covers the fraud page's repeated failures by caller, and
    // the partial one its lockout count.
    "CREATE TABLE operators (
        name          TEXT PRIMARY KEY NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE console_sessions (
        token_hash BLOB PRIMARY KEY NOT NULL,
        operator   TEXT NOT NULL,
        csrf       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
    CREATE INDEX console_sessions_by_operator ON console_sessions (operator);
    CREATE INDEX call_records_by_outcome ON call_records (outcome, started_at, caller_masked);
    CREATE INDEX call_records_locked ON call_records (started_at)
        WHERE code_send = 'locked' OR auth_result = 'locked';
    CREATE INDEX call_records_by_flow ON call_records (flow, started_at);
    CREATE INDEX deliveries_by_created ON deliveries (created_at);",
    // 10: codes read out on outbound calls: the call's length on its
    // delivery row, and one row per call placed (the destination in E.164,
    // like `code_sends`) for the per-destination call limits.
    "ALTER TABLE deliveries ADD COLUMN duration_ms INTEGER;
    CREATE TABLE voice_calls (
        destination TEXT NOT NULL,
        at          INTEGER NOT NULL
    );
    CREATE INDEX voice_calls_by_destination ON voice_calls (destination, at);",
    // 11: each call's event timeline for the console (issue 19): the
    // events' own privacy-safe fields as JSON, in order (`seq`), with their
    // time (ms); purged with the call's record.
    "CREATE TABLE call_events (
        call_id TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        at      INTEGER NOT NULL,
        kind    TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (call_id, seq)
    ) WITHOUT ROWID;",
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
