//! `records:`: call records in the store (docs/records.md).
//!
//! ```yaml
//! records:
//!   enabled: true          # write one record per call
//!   mask_caller: true      # keep only the country code and the last 4 digits
//!   retention_days: 90     # older records are purged by themselves
//! ```

use serde::Deserialize;

/// How call records are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordsConfig {
    /// Write a record per call (default on).
    pub enabled: bool,
    /// Keep only the country calling code and the last 4 digits of the
    /// caller's number (`+44•••1234`, default); off keeps the first 4 and
    /// last 4 as the event stream does. Never the full number.
    pub mask_caller: bool,
    /// Records of calls older than this many days are deleted (default 90).
    pub retention_days: u32,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            enabled: true,
            mask_caller: true,
            retention_days: 90,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecords {
    enabled: Option<bool>,
    mask_caller: Option<bool>,
    retention_days: Option<u32>,
}

impl RawRecords {
    /// Check and convert; errors start with `records.`.
    pub(super) fn into_config(self) -> Result<RecordsConfig, String> {
        let d = RecordsConfig::default();
        let retention_days = self.retention_days.unwrap_or(d.retention_days);
        if !(1..=36_500).contains(&retention_days) {
            return Err(format!(
                "records.retention_days: {retention_days} is outside 1..36500"
            ));
        }
        Ok(RecordsConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            mask_caller: self.mask_caller.unwrap_or(d.mask_caller),
            retention_days,
        })
    }
}
