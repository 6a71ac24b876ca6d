//! Flow variables, each flagged secret or not.
//!
//! Secrets (digits from a `secret: true` collect, anything derived from them)
//! may be compared in conditions and sent to backends, but rendering them into
//! anything the caller hears, a SIP header, a URL or a record is refused here
//! at runtime — the validator checks the same statically, this is the second
//! lock on the door.

use std::cell::RefCell;
use std::collections::BTreeMap;

use thiserror::Error;

use crate::call::CallInfo;
use crate::flow::expr::{self, Condition};

/// What masked secrets look like in any output.
pub const MASK: &str = "***";

/// Names that always hold secrets whoever sets them, as the validator assumes:
/// `code`, `otp`, `passphrase`, `transcript` and anything under `secret.`.
pub fn is_reserved_secret(name: &str) -> bool {
    matches!(name, "code" | "otp" | "passphrase" | "transcript") || name.starts_with("secret.")
}

#[derive(Clone, PartialEq, Eq)]
struct Var {
    value: String,
    secret: bool,
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum VarError {
    #[error("refusing to render secret variable `{0}`")]
    Secret(String),
    #[error("{0}")]
    Expr(String),
}

/// The variable store of one flow run. `Debug` shows secrets masked.
#[derive(Clone, Default)]
pub struct Vars {
    map: BTreeMap<String, Var>,
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.masked()).finish()
    }
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    /// Built-ins from the call: `caller`, `dialled`, `call_id`, `caller_trust`,
    /// `header.<name>`, `now` (UTC start of the run, `YYYY-MM-DDTHH:MM:SSZ`),
    /// and `attempts` = 0, `last_exit` = "".
    ///
    /// `caller_trust` is `x-caller-trust` if the call layer set it, else
    /// `asserted` when a P-Asserted-Identity was present, else `unverified`.
    pub fn with_call(info: &CallInfo) -> Self {
        let mut v = Self::new();
        v.set("caller", &info.caller, false);
        v.set("dialled", &info.dialled, false);
        v.set("call_id", &info.call_id, false);
        let trust = info
            .headers
            .get("x-caller-trust")
            .cloned()
            .unwrap_or_else(|| {
                if info.headers.contains_key("p-asserted-identity") {
                    "asserted".into()
                } else {
                    "unverified".into()
                }
            });
        v.set("caller_trust", &trust, false);
        for (k, val) in &info.headers {
            v.set(&format!("header.{k}"), val, false);
        }
        v.set("now", &utc_now(), false);
        v.set("attempts", "0", false);
        v.set("last_exit", "", false);
        v
    }

    /// Set a variable. Reserved names ([`is_reserved_secret`]) are always secret.
    pub fn set(&mut self, name: &str, value: &str, secret: bool) {
        self.map.insert(
            name.to_string(),
            Var {
                value: value.to_string(),
                secret: secret || is_reserved_secret(name),
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(|v| v.value.as_str())
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|v| v.secret)
    }

    /// Render a template for anything that leaves the engine (prompts, headers,
    /// URLs): referencing a secret is an error.
    pub fn render_public(&self, t: &str) -> Result<String, VarError> {
        self.render_public_with(t, &|v| v.to_string())
    }

    /// Like [`render_public`](Self::render_public) for a URL: every value is
    /// percent-encoded (RFC 3986 unreserved characters kept), so `+1555…`
    /// stays a plus and a value can't add path segments or query fields.
    pub fn render_url(&self, t: &str) -> Result<String, VarError> {
        self.render_public_with(t, &percent_encode)
    }

    fn render_public_with(
        &self,
        t: &str,
        escape: &dyn Fn(&str) -> String,
    ) -> Result<String, VarError> {
        let touched = RefCell::new(None::<String>);
        let res = expr::render(t, &|name| match self.map.get(name) {
            Some(v) if v.secret => {
                touched.borrow_mut().get_or_insert_with(|| name.to_string());
                None
            }
            Some(v) => Some(escape(&v.value)),
            None => None,
        });
        if let Some(name) = touched.into_inner() {
            return Err(VarError::Secret(name));
        }
        res.map_err(|e| VarError::Expr(e.to_string()))
    }

    /// Render a template that stays inside the engine or goes to a backend
    /// (`set`, webhook bodies). Returns the value and whether a secret was used,
    /// so the result inherits secrecy.
    pub fn render_internal(&self, t: &str) -> Result<(String, bool), VarError> {
        let secret = RefCell::new(false);
        let res = expr::render(t, &|name| {
            let v = self.map.get(name)?;
            if v.secret {
                *secret.borrow_mut() = true;
            }
            Some(v.value.clone())
        });
        res.map(|s| (s, secret.into_inner()))
            .map_err(|e| VarError::Expr(e.to_string()))
    }

    /// Evaluate a condition; secrets may be compared (their values never leave).
    pub fn eval(&self, cond: &Condition) -> Result<bool, VarError> {
        cond.eval(&|name| self.get(name).map(str::to_string))
            .map_err(|e| VarError::Expr(e.to_string()))
    }

    /// All variables with secrets replaced by [`MASK`].
    pub fn masked(&self) -> BTreeMap<String, String> {
        self.map
            .iter()
            .map(|(k, v)| {
                let shown = if v.secret {
                    MASK.to_string()
                } else {
                    v.value.clone()
                };
                (k.clone(), shown)
            })
            .collect()
    }
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_from_unix(secs)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn utc_from_unix(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc_from_unix(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(super::utc_from_unix(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn reserved_names_are_always_secret() {
        let mut v = super::Vars::new();
        v.set("code", "123456", false);
        v.set("secret.pin", "1", false);
        v.set("codes", "x", false);
        assert!(v.is_secret("code") && v.is_secret("secret.pin") && !v.is_secret("codes"));
    }

    use super::*;

    #[test]
    fn secrets_are_refused_in_public_renders_and_masked() {
        let mut v = Vars::new();
        v.set("dob", "19800101", true);
        v.set("name", "Alice", false);
        assert_eq!(v.render_public("hi ${name}").unwrap(), "hi Alice");
        assert_eq!(
            v.render_public("x${dob}").unwrap_err(),
            VarError::Secret("dob".into())
        );
        assert_eq!(
            v.render_internal("${dob}").unwrap(),
            ("19800101".into(), true)
        );
        assert_eq!(v.masked()["dob"], MASK);
        assert_eq!(v.masked()["name"], "Alice");
    }

    #[test]
    fn builtins_from_call_info() {
        let mut info = CallInfo {
            call_id: "c1".into(),
            caller: "+1555".into(),
            dialled: "bank".into(),
            ..Default::default()
        };
        info.headers
            .insert("p-asserted-identity".into(), "<sip:+1555@x>".into());
        let v = Vars::with_call(&info);
        assert_eq!(v.get("caller"), Some("+1555"));
        assert_eq!(v.get("caller_trust"), Some("asserted"));
        assert_eq!(v.get("attempts"), Some("0"));
        assert!(v.get("header.p-asserted-identity").is_some());
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod url_tests {
    use super::percent_encode;

    #[test]
    fn encodes_reserved_and_keeps_unreserved() {
        assert_eq!(
            percent_encode("+1555 01/x?y&z=é"),
            "%2B1555%2001%2Fx%3Fy%26z%3D%C3%A9"
        );
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
    }
}
