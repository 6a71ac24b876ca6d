//! `voxgate codes show|cancel`: the one-time codes of an account, for
//! operators (the control a 2FA console gives: see what was sent, cancel a
//! live code so a new one can go out at once). Never the code itself.

use std::process::ExitCode;

use anyhow::bail;

use super::accounts::{load_config, StoreArgs};
use crate::backends::CodeSubject;
use crate::events::{mask_email, mask_number};
use crate::store::Store;

/// Which codes: an account's, or a number's when no account was known.
pub enum Whose {
    /// By account id.
    Account(String),
    /// By the number the code went to (E.164).
    Number(String),
}

fn subject(w: &Whose) -> anyhow::Result<CodeSubject> {
    Ok(match w {
        Whose::Account(id) => CodeSubject::Account(id.clone()),
        Whose::Number(n) => match crate::phone::for_lookup(n, Default::default()) {
            Some(e) => CodeSubject::Number(e.as_str().to_string()),
            None => bail!("`{n}` is not a phone number"),
        },
    })
}

fn when(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil(days);
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `voxgate codes show`: the kept codes of `whose`, newest first.
pub fn show(args: &StoreArgs, whose: &Whose) -> anyhow::Result<ExitCode> {
    let cfg = load_config(args)?;
    let store = Store::open(&cfg.database)?;
    let codes = store.codes_of(&subject(whose)?.key())?;
    if codes.is_empty() {
        println!("no codes kept");
    }
    for c in codes {
        println!(
            "{}  {:<11} {:<5} to {}  sent {}  expires {}  wrong entries {}/{}",
            &c.id[..8.min(c.id.len())],
            c.state,
            c.channel,
            if c.channel == "email" {
                mask_email(&c.destination)
            } else {
                mask_number(&c.destination)
            },
            when(c.sent_at),
            when(c.expires_at),
            c.attempts,
            c.max_attempts
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `voxgate codes cancel`: every live code of `whose` stops working; the
/// next `send_code` sends a new one at once (no cooldown applies).
pub fn cancel(args: &StoreArgs, whose: &Whose) -> anyhow::Result<ExitCode> {
    let cfg = load_config(args)?;
    let store = Store::open(&cfg.database)?;
    let n = store.cancel_codes(&subject(whose)?.key())?;
    println!("cancelled {n} live code(s)");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_utc_iso() {
        assert_eq!(super::when(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::when(1_800_000_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(super::when(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
