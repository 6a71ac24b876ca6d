//! Accounts: who may call, under which brand, with which secrets.
//!
//! A number is unique within a brand (a lookup by caller ID must find one
//! account). Secrets are sealed ([`super::sealed`]) before they reach SQL;
//! reading an account gives only whether each secret is set.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Row};
use zeroize::Zeroizing;

use super::{no_row, unix_now, AccountStore, SecretKey, Store, StoreError, TotpParams};
use crate::phone::{LineType, E164};

/// The account fields every account has; `--field` names may not reuse them.
pub const CORE_FIELDS: &[&str] = &[
    "id",
    "brand",
    "phone",
    "name",
    "email",
    "line_type",
    "passphrase",
    "totp",
    "country",
];

/// The sealed columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretField {
    /// The spoken passphrase (UTF-8 text).
    Passphrase,
    /// The TOTP shared secret (raw bytes).
    TotpSecret,
}

impl SecretField {
    /// The column, also bound into the seal's associated data.
    pub fn name(self) -> &'static str {
        match self {
            SecretField::Passphrase => "passphrase",
            SecretField::TotpSecret => "totp_secret",
        }
    }
}

/// An account as read: secrets only as "set or not".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    /// Stable id (`acc_…` unless given).
    pub id: String,
    /// The brand it belongs to ("" for none).
    pub brand: String,
    /// The number on file.
    pub phone: E164,
    /// Display name.
    pub name: Option<String>,
    /// E-mail address for codes by e-mail.
    pub email: Option<String>,
    /// The line type given for the account; `None`: from the number's metadata.
    pub line_type: Option<LineType>,
    /// Whether a passphrase is enrolled.
    pub has_passphrase: bool,
    /// Whether a TOTP secret is enrolled.
    pub has_totp: bool,
    /// How its TOTP codes are made (meaningful when `has_totp`).
    pub totp: TotpParams,
    /// Operator-defined fields (`--field key=value`).
    pub fields: BTreeMap<String, String>,
    /// When it was added (Unix seconds).
    pub created_at: i64,
    /// When it last changed (Unix seconds).
    pub updated_at: i64,
}

impl AccountRecord {
    /// The given line type, else what libphonenumber says of the number.
    pub fn effective_line_type(&self) -> LineType {
        self.line_type.unwrap_or_else(|| self.phone.line_type())
    }

    /// The fields a flow reads as `account.<name>`: never a secret, only
    /// `passphrase`/`totp` = `set` or `none`.
    pub fn flow_fields(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = self
            .fields
            .iter()
            .filter(|(k, _)| !CORE_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let set = |b: bool| if b { "set" } else { "none" }.to_string();
        m.insert("id".into(), self.id.clone());
        m.insert("brand".into(), self.brand.clone());
        m.insert("phone".into(), self.phone.to_string());
        m.insert("line_type".into(), self.effective_line_type().to_string());
        m.insert("passphrase".into(), set(self.has_passphrase));
        m.insert("totp".into(), set(self.has_totp));
        if let Some(c) = self.phone.country() {
            m.insert("country".into(), c);
        }
        if let Some(n) = &self.name {
            m.insert("name".into(), n.clone());
        }
        if let Some(e) = &self.email {
            m.insert("email".into(), e.clone());
        }
        m
    }
}

/// A new account. Secrets arrive in clear and are sealed on the way in.
#[derive(Default)]
pub struct NewAccount {
    /// Wanted id; `None` draws `acc_` + 12 random characters.
    pub id: Option<String>,
    /// Brand ("" for none).
    pub brand: String,
    /// The number, already in E.164.
    pub phone: Option<E164>,
    /// Display name.
    pub name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Line type; `None`: from the metadata.
    pub line_type: Option<LineType>,
    /// Passphrase in clear (wiped on drop).
    pub passphrase: Option<Zeroizing<String>>,
    /// TOTP secret bytes (wiped on drop).
    pub totp_secret: Option<Zeroizing<Vec<u8>>>,
    /// TOTP hash and code length (default SHA-1, 6 digits).
    pub totp_params: TotpParams,
    /// Operator fields.
    pub fields: BTreeMap<String, String>,
}

/// Changes to an account: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Default)]
pub struct AccountUpdate {
    /// New number.
    pub phone: Option<E164>,
    /// New brand.
    pub brand: Option<String>,
    /// New or cleared name.
    pub name: Option<Option<String>>,
    /// New or cleared e-mail.
    pub email: Option<Option<String>>,
    /// New or cleared line type.
    pub line_type: Option<Option<LineType>>,
    /// New or cleared passphrase.
    pub passphrase: Option<Option<Zeroizing<String>>>,
    /// New or cleared TOTP secret.
    pub totp_secret: Option<Option<Zeroizing<Vec<u8>>>>,
    /// New TOTP hash and code length.
    pub totp_params: Option<TotpParams>,
    /// Fields to set (an empty value removes the field).
    pub fields: BTreeMap<String, String>,
}

const COLUMNS: &str = "id, brand, phone, name, email, line_type, passphrase IS NOT NULL, totp_secret IS NOT NULL, fields, created_at, updated_at, totp_algorithm, totp_digits";

/// A row as read, before its checks: the record, the raw fields JSON and
/// the raw TOTP columns.
type RawRow = (AccountRecord, String, (String, i64));

fn from_row(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    // The fields and TOTP columns are checked by `finish`, which can report them.
    let raw_phone: String = r.get(2)?;
    let fields: String = r.get(8)?;
    let line_type: Option<String> = r.get(5)?;
    Ok((
        AccountRecord {
            id: r.get(0)?,
            brand: r.get(1)?,
            phone: E164::trusted(raw_phone),
            name: r.get(3)?,
            email: r.get(4)?,
            line_type: line_type.and_then(|t| t.parse().ok()),
            has_passphrase: r.get(6)?,
            has_totp: r.get(7)?,
            totp: TotpParams::default(),
            fields: BTreeMap::new(),
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
        },
        fields,
        (r.get(11)?, r.get(12)?),
    ))
}

fn finish(row: RawRow) -> Result<AccountRecord, StoreError> {
    let (mut rec, fields, (algorithm, digits)) = row;
    rec.totp = TotpParams::from_columns(&algorithm, digits)
        .map_err(|e| StoreError::Invalid(format!("account `{}`: {e}", rec.id)))?;
    rec.fields = serde_json::from_str(&fields).map_err(|e| {
        StoreError::Invalid(format!(
            "account `{}`: stored fields unreadable: {e}",
            rec.id
        ))
    })?;
    Ok(rec)
}

fn check_field_names(fields: &BTreeMap<String, String>) -> Result<(), StoreError> {
    for k in fields.keys() {
        if CORE_FIELDS.contains(&k.as_str()) {
            return Err(StoreError::Invalid(format!(
                "field `{k}` is a built-in account field; use its own option"
            )));
        }
        let ok = !k.is_empty()
            && k.len() <= 64
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(StoreError::Invalid(format!(
                "field name `{k}`: use letters, digits and _ (not first), at most 64"
            )));
        }
    }
    Ok(())
}

fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstvwxyz23456789";
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes[..]);
    let tail: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("acc_{tail}")
}

fn check_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "account id `{id}`: use letters, digits, `_`, `-` and `.`, at most 64"
        )))
    }
}

/// Insert one account on `c` (inside the caller's transaction, if any).
fn insert(c: &Connection, a: &NewAccount, key: Option<&SecretKey>) -> Result<String, StoreError> {
    let phone = a
        .phone
        .as_ref()
        .ok_or_else(|| StoreError::Invalid("an account needs a phone number".into()))?;
    check_field_names(&a.fields)?;
    a.totp_params.check()?;
    let id = match &a.id {
        Some(id) => {
            check_id(id)?;
            id.clone()
        }
        None => new_id(),
    };
    let needs_key = a.passphrase.is_some() || a.totp_secret.is_some();
    let key = match (needs_key, key) {
        (true, None) => return Err(StoreError::NeedsKey),
        (_, k) => k,
    };
    let seal = |field: SecretField, v: Option<&[u8]>| {
        v.zip(key).map(|(v, k)| k.seal(&id, field.name(), v))
    };
    let pass = seal(
        SecretField::Passphrase,
        a.passphrase.as_ref().map(|p| p.as_bytes()),
    );
    let totp = seal(
        SecretField::TotpSecret,
        a.totp_secret.as_ref().map(|t| &t[..]),
    );
    let now = unix_now();
    let fields =
        serde_json::to_string(&a.fields).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut st = c.prepare_cached(
        "INSERT INTO accounts (id, brand, phone, name, email, line_type, passphrase, totp_secret, fields, created_at, updated_at, totp_algorithm, totp_digits)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12)",
    )?;
    let res = st.execute(params![
        id,
        a.brand,
        phone.as_str(),
        a.name,
        a.email,
        a.line_type.map(|t| t.as_str()),
        pass,
        totp,
        fields,
        now,
        a.totp_params.algorithm.as_str(),
        a.totp_params.digits
    ]);
    match res {
        Ok(_) => Ok(id),
        Err(e) if is_unique(&e, "accounts.id") => Err(StoreError::DuplicateId(id)),
        Err(e) if is_unique(&e, "accounts.brand") => Err(StoreError::DuplicateNumber {
            phone: phone.to_string(),
            brand: a.brand.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

fn is_unique(e: &rusqlite::Error, column: &str) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, Some(msg))
        if f.code == rusqlite::ErrorCode::ConstraintViolation && msg.contains(column))
}

/// Rows per transaction of [`Store::add_batches`] (a writer in another
/// process waits at most one such transaction, ~1–2 s).
pub const COMMIT_ROWS: usize = 100_000;

/// The page cache (KiB) of a connection that has run [`Store::add_batches`]:
/// enough for the indexes of about a million accounts.
const BULK_CACHE_KIB: i64 = 128 * 1024;

/// How one row of a batch import fared.
#[derive(Debug)]
pub struct ImportOutcome {
    /// Index of the row in the batch.
    pub index: usize,
    /// The new id, or why the row was refused.
    pub result: Result<String, StoreError>,
}

impl Store {
    /// Add an account; its secrets are sealed with `key` (required when it has any).
    pub fn add(&self, a: &NewAccount, key: Option<&SecretKey>) -> Result<String, StoreError> {
        if let Some(k) = key {
            self.check_key(k)?;
        }
        self.with(|c| insert(c, a, key))
    }

    /// Add accounts arriving in batches (an import); `done` gets each batch's
    /// tag and how each of its rows fared. A refused row (duplicate, bad
    /// field) is reported and skipped, the others are kept; they are
    /// committed every [`COMMIT_ROWS`] rows or so. With `dry_run` everything
    /// is one transaction, rolled back at the end (so a number repeated
    /// anywhere in the file is found), and `key` is not checked: a dry run may
    /// seal with a throw-away key, nothing is kept.
    pub fn add_batches<T>(
        &self,
        batches: impl IntoIterator<Item = (Vec<NewAccount>, T)>,
        key: Option<&SecretKey>,
        dry_run: bool,
        mut done: impl FnMut(T, Vec<ImportOutcome>),
    ) -> Result<(), StoreError> {
        if let Some(k) = key.filter(|_| !dry_run) {
            self.check_key(k)?;
        }
        self.with(|c| {
            // Each row goes into three indexes (id, brand+phone, brand+id) at
            // random places: with SQLite's default 2 MiB page cache a
            // million-row import re-reads and re-writes index pages for
            // nearly every row. The connection may keep up to this much
            // (pages are only held once used).
            let cache: i64 = c.pragma_query_value(None, "cache_size", |r| r.get(0))?;
            if cache > -BULK_CACHE_KIB {
                c.pragma_update(None, "cache_size", -BULK_CACHE_KIB)?;
            }
            // A commit writes every page the transaction changed to the WAL,
            // and random inserts change most index pages: few, large
            // transactions write far less than one per batch.
            let mut tx = c.transaction()?;
            let mut uncommitted = 0usize;
            for (rows, tag) in batches {
                let mut out = Vec::with_capacity(rows.len());
                for (index, a) in rows.iter().enumerate() {
                    // One INSERT per row: a refused row leaves nothing behind.
                    let result = insert(&tx, a, key);
                    out.push(ImportOutcome { index, result });
                }
                uncommitted += rows.len();
                drop(rows);
                done(tag, out);
                if !dry_run && uncommitted >= COMMIT_ROWS {
                    tx.commit()?;
                    tx = c.transaction()?;
                    uncommitted = 0;
                }
            }
            if dry_run {
                tx.rollback()?;
            } else {
                tx.commit()?;
            }
            Ok(())
        })
    }

    /// Change an account; returns the record as it now is.
    pub fn update(
        &self,
        id: &str,
        u: &AccountUpdate,
        key: Option<&SecretKey>,
    ) -> Result<AccountRecord, StoreError> {
        check_field_names(
            &u.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )?;
        if let Some(k) = key {
            self.check_key(k)?;
        }
        let needs_key =
            matches!(u.passphrase, Some(Some(_))) || matches!(u.totp_secret, Some(Some(_)));
        if needs_key && key.is_none() {
            return Err(StoreError::NeedsKey);
        }
        self.with(|c| {
            let tx = c.transaction()?;
            let Some(cur) = get_on(&tx, id)? else {
                return Err(StoreError::NotFound(id.to_string()));
            };
            let phone = u.phone.clone().unwrap_or(cur.phone.clone());
            let brand = u.brand.clone().unwrap_or(cur.brand.clone());
            let name = u.name.clone().unwrap_or(cur.name.clone());
            let email = u.email.clone().unwrap_or(cur.email.clone());
            let line_type = u.line_type.unwrap_or(cur.line_type);
            let totp = u.totp_params.unwrap_or(cur.totp);
            totp.check()?;
            let mut fields = cur.fields.clone();
            for (k, v) in &u.fields {
                if v.is_empty() {
                    fields.remove(k);
                } else {
                    fields.insert(k.clone(), v.clone());
                }
            }
            let fields_json =
                serde_json::to_string(&fields).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let res = tx.execute(
                "UPDATE accounts SET phone = ?2, brand = ?3, name = ?4, email = ?5, line_type = ?6,
                        fields = ?7, updated_at = ?8, totp_algorithm = ?9, totp_digits = ?10
                 WHERE id = ?1",
                params![
                    id,
                    phone.as_str(),
                    brand,
                    name,
                    email,
                    line_type.map(|t| t.as_str()),
                    fields_json,
                    unix_now(),
                    totp.algorithm.as_str(),
                    totp.digits
                ],
            );
            match res {
                Err(e) if is_unique(&e, "accounts.brand") => {
                    return Err(StoreError::DuplicateNumber {
                        phone: phone.to_string(),
                        brand,
                    })
                }
                r => {
                    r?;
                }
            }
            for (field, change) in [
                (
                    SecretField::Passphrase,
                    u.passphrase
                        .as_ref()
                        .map(|p| p.as_ref().map(|p| p.as_bytes())),
                ),
                (
                    SecretField::TotpSecret,
                    u.totp_secret.as_ref().map(|t| t.as_ref().map(|t| &t[..])),
                ),
            ] {
                let Some(change) = change else { continue };
                let sealed = change.zip(key).map(|(v, k)| k.seal(id, field.name(), v));
                tx.execute(
                    &format!("UPDATE accounts SET {} = ?2 WHERE id = ?1", field.name()),
                    params![id, sealed],
                )?;
            }
            let rec = get_on(&tx, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            tx.commit()?;
            Ok(rec)
        })
    }

    /// Remove an account; `NotFound` if there was none.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.with(
            |c| match c.execute("DELETE FROM accounts WHERE id = ?1", [id])? {
                0 => Err(StoreError::NotFound(id.to_string())),
                _ => Ok(()),
            },
        )
    }

    /// Every account (of `brand`, if given), by brand then id, to `each`;
    /// `each` returning an error stops the walk.
    pub fn for_each(
        &self,
        brand: Option<&str>,
        mut each: impl FnMut(AccountRecord) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM accounts WHERE ?1 IS NULL OR brand = ?1 ORDER BY brand, id"
            );
            let mut st = c.prepare(&sql)?;
            let mut rows = st.query([brand])?;
            while let Some(r) = rows.next()? {
                each(finish(from_row(r)?)?)?;
            }
            Ok(())
        })
    }

    /// How many accounts there are.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            Ok(c.query_row("SELECT count(*) FROM accounts", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    /// The account `key` names: an id, or a number (in `brand`).
    pub fn resolve(
        &self,
        key: &str,
        brand: &str,
        country: crate::phone::Country,
    ) -> Result<AccountRecord, StoreError> {
        if let Some(a) = self.get(key)? {
            return Ok(a);
        }
        if let Ok(n) = crate::phone::normalise(key, country) {
            if let Some(a) = self.find(brand, &n)? {
                return Ok(a);
            }
        }
        Err(StoreError::NotFound(key.to_string()))
    }
}

fn get_on(c: &Connection, id: &str) -> Result<Option<AccountRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1");
    c.query_row(&sql, [id], from_row)
        .optional()?
        .map(finish)
        .transpose()
}

impl AccountStore for Store {
    fn find(&self, brand: &str, phone: &E164) -> Result<Option<AccountRecord>, StoreError> {
        self.with(|c| {
            let sql = format!("SELECT {COLUMNS} FROM accounts WHERE brand = ?1 AND phone = ?2");
            let mut st = c.prepare_cached(&sql)?;
            st.query_row(params![brand, phone.as_str()], from_row)
                .optional()?
                .map(finish)
                .transpose()
        })
    }

    fn get(&self, id: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.with(|c| get_on(c, id))
    }

    fn secret(
        &self,
        id: &str,
        field: SecretField,
        key: &SecretKey,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let sealed: Option<Vec<u8>> = self.with(|c| {
            Ok(c.query_row(
                &format!("SELECT {} FROM accounts WHERE id = ?1", field.name()),
                [id],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .map(Some)
            .or_else(no_row)?
            .flatten())
        })?;
        sealed
            .map(|s| key.open(id, field.name(), &s).map_err(StoreError::from))
            .transpose()
    }

    fn reserve_check(
        &self,
        account: &str,
        factor: super::lockout::Factor,
        at: i64,
        since: i64,
        max: u32,
    ) -> Result<bool, StoreError> {
        self.reserve_check_at(account, factor, at, since, max)
    }

    fn failures_since(
        &self,
        account: &str,
        factor: super::lockout::Factor,
        since: i64,
    ) -> Result<u32, StoreError> {
        self.failures_since_at(account, factor, since)
    }

    fn clear_failures(
        &self,
        account: &str,
        factor: super::lockout::Factor,
    ) -> Result<(), StoreError> {
        self.clear_failures_of(account, factor)
    }

    fn accept_totp_step(&self, account: &str, step: i64, at: i64) -> Result<bool, StoreError> {
        self.accept_totp_step_at(account, step, at)
    }
}
