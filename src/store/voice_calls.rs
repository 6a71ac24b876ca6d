//! Outbound code calls placed, per destination: the `codes_voice`
//! per-destination limits are judged and the call counted in one write
//! transaction, so parallel calls cannot slip past a limit together.

use rusqlite::{params, TransactionBehavior};

use super::{Store, StoreError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Which per-destination limit refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallLimit {
    /// Calls to this number in the last hour.
    Hour,
    /// Calls to this number in the last day.
    Day,
}

impl Store {
    /// Count an outbound code call to `destination` at `now_ms` unless one
    /// of the limits (`hour`, `day` calls) is reached; `Some(limit)`: refused.
    pub fn begin_voice_call(
        &self,
        destination: &str,
        now_ms: i64,
        hour: u32,
        day: u32,
    ) -> Result<Option<CallLimit>, StoreError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let count = |since: i64| -> Result<i64, StoreError> {
                Ok(tx.query_row(
                    "SELECT count(*) FROM voice_calls WHERE destination = ?1 AND at > ?2",
                    params![destination, since],
                    |r| r.get(0),
                )?)
            };
            if count(now_ms - HOUR_MS)? >= i64::from(hour) {
                return Ok(Some(CallLimit::Hour));
            }
            if count(now_ms - DAY_MS)? >= i64::from(day) {
                return Ok(Some(CallLimit::Day));
            }
            tx.execute(
                "INSERT INTO voice_calls (destination, at) VALUES (?1, ?2)",
                params![destination, now_ms],
            )?;
            tx.commit()?;
            Ok(None)
        })
    }

    /// Forget calls older than a day (the longest limit window).
    pub fn purge_voice_calls(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM voice_calls WHERE at <= ?1",
                params![now_ms - DAY_MS],
            )?)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_count_per_destination_per_hour_and_day() {
        let d = crate::store::tests::TempDir::new("voice-calls");
        let s = Store::open(&d.file("v.db")).unwrap();
        let t0 = 1_000 * DAY_MS;
        assert_eq!(s.begin_voice_call("+1650", t0, 2, 3).unwrap(), None);
        assert_eq!(s.begin_voice_call("+1650", t0 + 1, 2, 3).unwrap(), None);
        assert_eq!(
            s.begin_voice_call("+1650", t0 + 2, 2, 3).unwrap(),
            Some(CallLimit::Hour)
        );
        // Another number is not affected.
        assert_eq!(s.begin_voice_call("+1651", t0 + 2, 2, 3).unwrap(), None);
        let later = t0 + HOUR_MS + 10;
        assert_eq!(s.begin_voice_call("+1650", later, 2, 3).unwrap(), None);
        assert_eq!(
            s.begin_voice_call("+1650", later + 1, 2, 3).unwrap(),
            Some(CallLimit::Day)
        );
        assert_eq!(s.purge_voice_calls(t0 + DAY_MS + 5).unwrap(), 3);
        assert_eq!(
            s.begin_voice_call("+1650", t0 + DAY_MS + 5, 2, 3).unwrap(),
            None
        );
    }
}
