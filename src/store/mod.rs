//! The embedded store: one SQLite file (WAL mode) holding accounts now, and
//! codes and call records as they land.
//!
//! Everything here is blocking: `serve` calls it from tokio's blocking pool
//! (`backends::directory`), never from the signalling or media threads, so
//! a slow disk delays a lookup, not SIP or RTP. [`AccountStore`] is the
//! small interface the engine uses, so a shared server database can stand
//! in for SQLite in a multi-engine deployment.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub mod accounts;
pub mod browse;
pub mod codes;
pub mod deliveries;
pub mod lockout;
pub mod migrate;
pub mod open_calls;
pub mod operators;
pub mod records;
pub mod report;
pub mod sealed;
pub mod timeline;
pub mod totp;
pub mod voice_calls;

pub use accounts::{AccountRecord, AccountUpdate, NewAccount, SecretField};
pub use sealed::{KeyError, SecretKey};
pub use totp::{TotpAlgorithm, TotpParams};

use crate::phone::E164;

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the store refused; `Display` is fit for the operator (it names the
/// file and never a secret).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file or its folder cannot be created, opened or written.
    #[error("{path}: cannot open the database: {reason}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The OS's or SQLite's words.
        reason: String,
    },
    /// The file is not an SQLite database, or is damaged.
    #[error("{path}: the database file is corrupt or not a voxgate database ({reason})")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's words.
        reason: String,
    },
    /// Another process held the lock for longer than the busy timeout.
    #[error("the database is locked by another process (waited 5 s)")]
    Locked,
    /// The disk or its permissions refused a write.
    #[error("the database cannot be written: {0}")]
    ReadOnly(String),
    /// Written by a newer voxgate.
    #[error("the database has schema version {found}; this voxgate knows up to {known} (upgrade voxgate)")]
    TooNew {
        /// The file's version.
        found: u32,
        /// [`migrate::LATEST`].
        known: u32,
    },
    /// A migration failed; the file stays at the version before it.
    #[error("migrating the database to version {to} failed: {source}")]
    Migration {
        /// The version it was going to.
        to: u32,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The secret key is missing, wrong or unreadable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Secrets were given without a key to seal them with (a caller's bug:
    /// the CLI loads the key whenever it has secrets to store).
    #[error("secrets can only be stored with the secret key at hand")]
    NeedsKey,
    /// The key given is not the one this database's secrets are sealed with.
    #[error("the secret key is not the one this database's secrets were sealed with (check {env} or the key file; `voxgate keys rotate` changes keys)", env = sealed::KEY_ENV)]
    KeyMismatch,
    /// An account with this number already exists in this brand.
    #[error("an account with number {phone} already exists{}", brand_suffix(.brand))]
    DuplicateNumber {
        /// The number.
        phone: String,
        /// Its brand ("" for none).
        brand: String,
    },
    /// The account id is taken.
    #[error("account id `{0}` already exists")]
    DuplicateId(String),
    /// No such account.
    #[error("no account `{0}`")]
    NotFound(String),
    /// A value the store cannot hold (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// Any other SQLite failure.
    #[error("database error: {0}")]
    Sqlite(String),
}

fn brand_suffix(brand: &str) -> String {
    if brand.is_empty() {
        String::new()
    } else {
        format!(" in brand `{brand}`")
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => StoreError::Locked,
            Some(C::ReadOnly | C::CannotOpen | C::PermissionDenied | C::DiskFull) => {
                StoreError::ReadOnly(e.to_string())
            }
            Some(C::NotADatabase | C::DatabaseCorrupt) => StoreError::Corrupt {
                path: PathBuf::new(),
                reason: e.to_string(),
            },
            _ => StoreError::Sqlite(e.to_string()),
        }
    }
}

/// Now, in milliseconds since the Unix epoch (the store's time unit for
/// codes and deliveries).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What the engine asks of an account store; SQLite's [`Store`] is one.
pub trait AccountStore: Send + Sync {
    /// The account with this number in `brand` ("" = no brand).
    fn find(&self, brand: &str, phone: &E164) -> Result<Option<AccountRecord>, StoreError>;
    /// The account with this id.
    fn get(&self, id: &str) -> Result<Option<AccountRecord>, StoreError>;
    /// An account's sealed secret, opened with `key`, for one check; `None`
    /// when the account has none. The caller must not log it.
    fn secret(
        &self,
        id: &str,
        field: SecretField,
        key: &SecretKey,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, StoreError>;
    /// Reserve one check of `factor` for `account` at `at` (Unix seconds):
    /// in one write transaction, refuse (`false`) when `max` failures lie
    /// since `since`, else count this check as a failure now (`true`). A
    /// check that then succeeds clears the failures; one that fails leaves
    /// its count. Judging only after the reservation means parallel calls
    /// cannot get more than `max` guesses in.
    fn reserve_check(
        &self,
        account: &str,
        factor: lockout::Factor,
        at: i64,
        since: i64,
        max: u32,
    ) -> Result<bool, StoreError>;
    /// Failed checks of `factor` for `account` since `since` (Unix seconds).
    fn failures_since(
        &self,
        account: &str,
        factor: lockout::Factor,
        since: i64,
    ) -> Result<u32, StoreError>;
    /// Forget the failures of `factor` for `account` (after a success).
    fn clear_failures(&self, account: &str, factor: lockout::Factor) -> Result<(), StoreError>;
    /// Accept TOTP time step `step` for `account` at `at` (Unix seconds):
    /// in one write transaction, refuse (`false`) when a step at or after it
    /// was accepted before (a replayed code), else record it (`true`).
    fn accept_totp_step(&self, account: &str, step: i64, at: i64) -> Result<bool, StoreError>;
}

/// The SQLite store: a file and a few open connections to it.
pub struct Store {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (creating it and its folder if needed) the database at `path`
    /// and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let mut conn = connect(path).map_err(|e| locate(e, path))?;
        let from = migrate::apply(&mut conn).map_err(|e| locate(e, path))?;
        if from < migrate::LATEST {
            tracing::info!(file = %path.display(), from, to = migrate::LATEST, "database schema migrated");
        }
        Ok(Store {
            path: path.to_path_buf(),
            idle: Mutex::new(vec![conn]),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on a connection of the pool (opened if none is idle).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => connect(&self.path).map_err(|e| locate(e, &self.path))?,
        };
        let out = f(&mut conn).map_err(|e| locate(e, &self.path));
        if let Ok(mut v) = self.idle.lock() {
            // A few idle connections are plenty: lookups are sub-millisecond.
            if v.len() < 8 {
                v.push(conn);
            }
        }
        out
    }

    /// Check `key` against the key this database's secrets are sealed with,
    /// recording it if the database has none yet.
    pub fn check_key(&self, key: &SecretKey) -> Result<(), StoreError> {
        self.with(|c| {
            let stored: Option<Vec<u8>> = c
                .query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| {
                    r.get(0)
                })
                .map(Some)
                .or_else(no_row)?;
            match stored {
                Some(v) if key.matches_check(&v) => Ok(()),
                Some(_) => Err(StoreError::KeyMismatch),
                None => {
                    c.execute(
                        "INSERT INTO meta (key, value) VALUES ('key_check', ?1)",
                        [key.check_value()],
                    )?;
                    Ok(())
                }
            }
        })
    }

    /// Whether the database has recorded a key (it has sealed secrets or had).
    pub fn has_key_check(&self) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM meta WHERE key = 'key_check'",
                [],
                |r| r.get::<_, i64>(0),
            )? > 0)
        })
    }

    /// Re-seal every secret under `new` in one transaction (after checking
    /// `old`); returns how many secrets were re-sealed.
    pub fn rotate_key(&self, old: &SecretKey, new: &SecretKey) -> Result<usize, StoreError> {
        self.check_key(old)?;
        self.with(|c| {
            let tx = c.transaction()?;
            let mut n = 0;
            {
                let mut read = tx.prepare(
                    "SELECT id, passphrase, totp_secret FROM accounts
                     WHERE passphrase IS NOT NULL OR totp_secret IS NOT NULL",
                )?;
                let mut write = tx.prepare(
                    "UPDATE accounts SET passphrase = ?2, totp_secret = ?3 WHERE id = ?1",
                )?;
                let rows = read.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<Vec<u8>>>(1)?,
                        r.get::<_, Option<Vec<u8>>>(2)?,
                    ))
                })?;
                for row in rows {
                    let (id, pass, totp) = row?;
                    let reseal = |field: SecretField, v: Option<Vec<u8>>| {
                        v.map(|v| {
                            let plain = old.open(&id, field.name(), &v)?;
                            Ok::<_, StoreError>(new.seal(&id, field.name(), &plain))
                        })
                        .transpose()
                    };
                    let p = reseal(SecretField::Passphrase, pass)?;
                    let t = reseal(SecretField::TotpSecret, totp)?;
                    n += usize::from(p.is_some()) + usize::from(t.is_some());
                    write.execute(rusqlite::params![id, p, t])?;
                }
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('key_check', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [new.check_value()],
            )?;
            tx.commit()?;
            Ok(n)
        })
    }
}

/// `query_row`'s "no row" as `None`.
pub(crate) fn no_row<T>(e: rusqlite::Error) -> Result<Option<T>, StoreError> {
    match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e.into()),
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers (lookups) never wait for a writer (an import); NORMAL
    // sync is durable across a process crash, the usual pairing with WAL.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            reason: format!("cannot switch to WAL mode (journal mode stays {mode})"),
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Wiped pages keep no deleted secrets on disk.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(conn)
}

/// Put the file's path into errors that lack it.
fn locate(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Corrupt { reason, .. } => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        },
        StoreError::ReadOnly(r) => StoreError::Open {
            path: path.to_path_buf(),
            reason: r,
        },
        e => e,
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod codes_tests;
#[cfg(test)]
mod tests;
