//! One-time codes: kept only as a keyed hash, judged and counted inside
//! write transactions, so every limit holds across calls, processes and
//! restarts (a code sent before a `kill -9` still verifies after it, and
//! its wrong entries are not forgotten).
//!
//! The caller of this module (the code backend) draws the code and its id
//! and computes the MAC with [`code_mac`]; the store never sees a code in
//! clear, except the entered one during [`Store::check_code`], which it
//! compares by MAC in constant time and drops.

use hmac::{Hmac, Mac};
use rusqlite::{params, Transaction, TransactionBehavior};
use sha2::Sha256;

use super::lockout::Factor;
use super::{Store, StoreError};

/// HMAC-SHA-256 of a code with its id bound in: the same code under another
/// id gives another MAC, so stored MACs cannot be compared across codes.
pub fn code_mac(key: &[u8; 32], code_id: &str, code: &str) -> Vec<u8> {
    mac_of(key, code_id, code).finalize().into_bytes().to_vec()
}

fn mac_of(key: &[u8; 32], code_id: &str, code: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(code_id.as_bytes());
    m.update(b"\0");
    m.update(code.as_bytes());
    m
}

/// Sends allowed in the last hour and the last day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// In the last 60 minutes.
    pub hour: u32,
    /// In the last 24 hours.
    pub day: u32,
}

/// The rules a send is judged by, all from the server's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendRules {
    /// Within this long (ms) after a live code went to the subject, none is sent.
    pub cooldown_ms: i64,
    /// A new code cancels the subject's earlier live codes.
    pub cancel_previous: bool,
    /// Sends per destination.
    pub per_destination: Window,
    /// Sends per caller number.
    pub per_caller: Window,
    /// Wrong codes per account in the lockout window that lock it.
    pub max_failures: u32,
    /// The lockout window (ms).
    pub lockout_ms: i64,
}

/// A code about to be sent.
#[derive(Clone, Debug)]
pub struct NewCode<'a> {
    /// Random id (bound into the MAC).
    pub id: &'a str,
    /// Whose code (`acct:…` or `num:…`).
    pub subject: &'a str,
    /// The account, for the lockout (none for a number subject).
    pub account_id: Option<&'a str>,
    /// The call that asked.
    pub call_id: &'a str,
    /// `sms`, `voice`, …
    pub channel: &'a str,
    /// Destination (E.164).
    pub destination: &'a str,
    /// The caller's number (E.164), when known.
    pub caller: Option<&'a str>,
    /// [`code_mac`] of the code.
    pub mac: &'a [u8],
    /// Now (ms since the Unix epoch).
    pub now_ms: i64,
    /// Expiry (ms).
    pub expires_at_ms: i64,
    /// Wrong entries before the code is burnt.
    pub max_attempts: u32,
}

/// Which limit refused a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Per destination, last hour.
    DestinationHour,
    /// Per destination, last day.
    DestinationDay,
    /// Per caller, last hour.
    CallerHour,
    /// Per caller, last day.
    CallerDay,
}

/// What [`Store::begin_send`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendDecision {
    /// The code is stored and counted: send it.
    Send,
    /// A live code went to the subject within the cooldown; nothing stored.
    StillValid,
    /// An abuse limit refuses it; nothing stored.
    Limited(Limit),
    /// The account is locked for codes; nothing stored.
    Locked,
}

/// What [`Store::check_code`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Right and in time: the code is used up.
    Accepted,
    /// Wrong; the live codes have attempts left.
    Wrong,
    /// Wrong, and that used up the last live code's attempts.
    Burnt,
    /// The subject's codes have all expired.
    Expired,
    /// No code is live for the subject.
    NoCode,
    /// The account is locked for codes.
    Locked,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn locked(
    tx: &Transaction<'_>,
    account: Option<&str>,
    rules: &SendRules,
    now: i64,
) -> Result<bool, StoreError> {
    let Some(a) = account else { return Ok(false) };
    let n: i64 = tx.query_row(
        "SELECT count(*) FROM auth_failures WHERE account_id = ?1 AND factor = ?2 AND at >= ?3",
        params![a, Factor::Code.as_str(), (now - rules.lockout_ms) / 1000],
        |r| r.get(0),
    )?;
    Ok(n >= i64::from(rules.max_failures))
}

fn sends_since(
    tx: &Transaction<'_>,
    column: &str,
    value: &str,
    since: i64,
) -> Result<u32, StoreError> {
    let sql = format!("SELECT count(*) FROM code_sends WHERE {column} = ?1 AND at > ?2");
    Ok(tx.query_row(&sql, params![value, since], |r| r.get::<_, i64>(0))? as u32)
}

impl Store {
    /// Judge a send by the lockout, the cooldown and the abuse limits, and
    /// when it may go, store the code and count the send — all in one write
    /// transaction, so parallel calls cannot slip past a limit together.
    pub fn begin_send(
        &self,
        code: &NewCode<'_>,
        rules: &SendRules,
    ) -> Result<SendDecision, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = code.now_ms;
            if locked(&tx, code.account_id, rules, now)? {
                return Ok(SendDecision::Locked);
            }
            let recent: i64 = tx.query_row(
                "SELECT count(*) FROM codes WHERE subject = ?1 AND state = 'live' AND expires_at > ?2 AND sent_at > ?3",
                params![code.subject, now, now - rules.cooldown_ms],
                |r| r.get(0),
            )?;
            if recent > 0 {
                return Ok(SendDecision::StillValid);
            }
            let checks = [
                ("destination", Some(code.destination), HOUR_MS, rules.per_destination.hour, Limit::DestinationHour),
                ("destination", Some(code.destination), DAY_MS, rules.per_destination.day, Limit::DestinationDay),
                ("caller", code.caller, HOUR_MS, rules.per_caller.hour, Limit::CallerHour),
                ("caller", code.caller, DAY_MS, rules.per_caller.day, Limit::CallerDay),
            ];
            for (column, value, span, max, limit) in checks {
                if let Some(v) = value {
                    if sends_since(&tx, column, v, now - span)? >= max {
                        return Ok(SendDecision::Limited(limit));
                    }
                }
            }
            if rules.cancel_previous {
                tx.execute(
                    "UPDATE codes SET state = 'cancelled' WHERE subject = ?1 AND state = 'live'",
                    params![code.subject],
                )?;
            }
            tx.execute(
                "INSERT INTO codes (id, subject, call_id, channel, destination, mac, sent_at, expires_at, attempts, max_attempts, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, 'live')",
                params![
                    code.id,
                    code.subject,
                    code.call_id,
                    code.channel,
                    code.destination,
                    code.mac,
                    now,
                    code.expires_at_ms,
                    code.max_attempts
                ],
            )?;
            tx.execute(
                "INSERT INTO code_sends (destination, caller, at) VALUES (?1, ?2, ?3)",
                params![code.destination, code.caller.unwrap_or(""), now],
            )?;
            tx.commit()?;
            Ok(SendDecision::Send)
        })
    }

    /// The code `id` could not be handed to any gateway: it is not live
    /// (no caller has it), but its send still counts towards the limits.
    pub fn code_undeliverable(&self, id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE codes SET state = 'undelivered' WHERE id = ?1 AND state = 'live'",
                params![id],
            )?;
            Ok(())
        })
    }

    /// Cancel every live code of `subject` (returns how many).
    pub fn cancel_codes(&self, subject: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE codes SET state = 'cancelled' WHERE subject = ?1 AND state = 'live'",
                params![subject],
            )?)
        })
    }

    /// Check an entered code against `subject`'s live codes at `now_ms`:
    /// in one write transaction, a right one is used up; a wrong entry
    /// counts on every live code (burning those out of attempts) and, for
    /// an account, towards its lockout. `key` is the codes' MAC key.
    pub fn check_code(
        &self,
        key: &[u8; 32],
        subject: &str,
        account_id: Option<&str>,
        entered: &str,
        now_ms: i64,
        rules: &SendRules,
    ) -> Result<CheckOutcome, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if locked(&tx, account_id, rules, now_ms)? {
                return Ok(CheckOutcome::Locked);
            }
            let live: Vec<(String, Vec<u8>, i64, u32, u32)> = {
                let mut st = tx.prepare(
                    "SELECT id, mac, expires_at, attempts, max_attempts FROM codes
                     WHERE subject = ?1 AND state = 'live' ORDER BY sent_at",
                )?;
                let rows = st.query_map(params![subject], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            if live.is_empty() {
                return Ok(CheckOutcome::NoCode);
            }
            let (valid, expired): (Vec<_>, Vec<_>) = live
                .into_iter()
                .partition(|(_, _, exp, _, _)| *exp > now_ms);
            for (id, ..) in &expired {
                tx.execute(
                    "UPDATE codes SET state = 'expired' WHERE id = ?1",
                    params![id],
                )?;
            }
            if valid.is_empty() {
                tx.commit()?;
                return Ok(CheckOutcome::Expired);
            }
            // Compare with every valid code (no early exit: the time taken
            // says nothing about which one matched).
            let mut matched = None;
            for (id, mac, ..) in &valid {
                if mac_of(key, id, entered).verify_slice(mac).is_ok() && matched.is_none() {
                    matched = Some(id.clone());
                }
            }
            if let Some(id) = matched {
                tx.execute("UPDATE codes SET state = 'used' WHERE id = ?1", params![id])?;
                if let Some(a) = account_id {
                    tx.execute(
                        "DELETE FROM auth_failures WHERE account_id = ?1 AND factor = ?2",
                        params![a, Factor::Code.as_str()],
                    )?;
                }
                tx.commit()?;
                return Ok(CheckOutcome::Accepted);
            }
            let mut any_left = false;
            for (id, _, _, attempts, max) in &valid {
                let used = attempts + 1;
                let state = if used >= *max { "burnt" } else { "live" };
                any_left |= used < *max;
                tx.execute(
                    "UPDATE codes SET attempts = ?2, state = ?3 WHERE id = ?1",
                    params![id, used, state],
                )?;
            }
            if let Some(a) = account_id {
                tx.execute(
                    "INSERT INTO auth_failures (account_id, factor, at) VALUES (?1, ?2, ?3)",
                    params![a, Factor::Code.as_str(), now_ms / 1000],
                )?;
            }
            tx.commit()?;
            Ok(if any_left {
                CheckOutcome::Wrong
            } else {
                CheckOutcome::Burnt
            })
        })
    }

    /// Delete codes that ended (used, burnt, expired, cancelled or past
    /// their expiry) before `before_ms`, and send counts older than a day
    /// before `now_ms` (the longest limit window). Returns (codes, sends)
    /// deleted.
    pub fn purge_codes(&self, now_ms: i64, before_ms: i64) -> Result<(usize, usize), StoreError> {
        self.with(|c| {
            let codes = c.execute(
                "DELETE FROM codes WHERE expires_at < ?1",
                params![before_ms],
            )?;
            let sends = c.execute(
                "DELETE FROM code_sends WHERE at <= ?1",
                params![now_ms - DAY_MS],
            )?;
            Ok((codes, sends))
        })
    }

    /// Counts of codes by state (for reports and tests).
    pub fn code_states(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT state, count(*) FROM codes GROUP BY state ORDER BY state")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

/// A code as operators may see it: never the code or its MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// The code's id.
    pub id: String,
    /// `sms`, `email`, …
    pub channel: String,
    /// Destination (E.164 or address) — masked by whoever shows it.
    pub destination: String,
    /// `live`, `used`, `burnt`, `expired`, `cancelled`, `undelivered`.
    pub state: String,
    /// Sent (ms).
    pub sent_at: i64,
    /// Expires (ms).
    pub expires_at: i64,
    /// Wrong entries so far.
    pub attempts: u32,
    /// Wrong entries allowed.
    pub max_attempts: u32,
}

impl Store {
    /// The codes of `subject` still kept, newest first.
    pub fn codes_of(&self, subject: &str) -> Result<Vec<CodeInfo>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, channel, destination, state, sent_at, expires_at, attempts, max_attempts
                 FROM codes WHERE subject = ?1 ORDER BY sent_at DESC",
            )?;
            let rows = st.query_map(params![subject], |r| {
                Ok(CodeInfo {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    destination: r.get(2)?,
                    state: r.get(3)?,
                    sent_at: r.get(4)?,
                    expires_at: r.get(5)?,
                    attempts: r.get(6)?,
                    max_attempts: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}
