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

use crate::flow::expr::{self, Condition};
use crate::flow::state::{reserved_owner, CallState};

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

/// Why a variable could not be set or a template rendered; the step fails
/// with it (never showing a secret's value).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum VarError {
    /// A public rendering referenced the secret variable named here.
    #[error("refusing to render secret variable `{0}`")]
    Secret(String),
    /// The template or condition is malformed or reads an unset variable; holds the [`expr::ExprError`] text.
    #[error("{0}")]
    Expr(String),
    /// The loader refuses these writes; this is the second lock.
    #[error("`{0}` is set by the engine and read-only to flows")]
    Reserved(String),
}

/// The variables a flow run writes (`set`, `into`, `vars:`, webhook answers)
/// plus `now`, `attempts` and `last_exit`. Names the engine owns (see
/// [`crate::flow::state`]) are never stored here: reads of them go to the
/// typed [`CallState`] through a [`Scope`]. `Debug` shows secrets masked.
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
    /// No variables at all (tests); a run starts from [`for_run`](Self::for_run).
    pub fn new() -> Self {
        Self::default()
    }

    /// The variables of a new run: `now` (UTC start of the run,
    /// `YYYY-MM-DDTHH:MM:SSZ`), `attempts` = 0, `last_exit` = "".
    pub fn for_run() -> Self {
        let mut v = Self::new();
        v.put("now", &utc_now(), false);
        v.set_attempts(0);
        v.put("last_exit", "", false);
        v
    }

    /// Set a flow variable. Reserved names ([`is_reserved_secret`]) are always
    /// secret; names the engine owns are refused.
    pub fn set(&mut self, name: &str, value: &str, secret: bool) -> Result<(), VarError> {
        if reserved_owner(name).is_some() {
            return Err(VarError::Reserved(name.to_string()));
        }
        self.put(name, value, secret);
        Ok(())
    }

    /// The attempts an input step used (`attempts`).
    pub fn set_attempts(&mut self, n: u32) {
        self.put("attempts", &n.to_string(), false);
    }

    /// The exit the last step took (`last_exit`).
    pub fn set_last_exit(&mut self, exit: &str) {
        self.put("last_exit", exit, false);
    }

    fn put(&mut self, name: &str, value: &str, secret: bool) {
        self.map.insert(
            name.to_string(),
            Var {
                value: value.to_string(),
                secret: secret || is_reserved_secret(name),
            },
        );
    }

    /// A flow variable's value, secret or not; engine-owned names are not
    /// here (read them through a [`Scope`]).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(|v| v.value.as_str())
    }

    /// Whether `name` is set and secret.
    pub fn is_secret(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|v| v.secret)
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

/// What a flow reads: the engine's [`CallState`] under the reserved names,
/// its own [`Vars`] under every other name. The one place templates and
/// conditions look names up, so a flow variable can never stand in for
/// engine state.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    /// Answers the reserved names.
    pub state: &'a CallState,
    /// Answers every other name.
    pub vars: &'a Vars,
}

impl<'a> Scope<'a> {
    /// A view over one run's engine state and flow variables.
    pub fn new(state: &'a CallState, vars: &'a Vars) -> Self {
        Self { state, vars }
    }

    /// A value and whether it is secret (engine state never is).
    fn lookup(&self, name: &str) -> Option<(String, bool)> {
        if reserved_owner(name).is_some() {
            return self.state.read(name).map(|v| (v, false));
        }
        self.vars.map.get(name).map(|v| (v.value.clone(), v.secret))
    }

    /// The value a flow reads under `name` (secrets included, unmasked:
    /// for conditions and backends, never for output).
    pub fn get(&self, name: &str) -> Option<String> {
        self.lookup(name).map(|(v, _)| v)
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
        let res = expr::render(t, &|name| match self.lookup(name) {
            Some((_, true)) => {
                touched.borrow_mut().get_or_insert_with(|| name.to_string());
                None
            }
            Some((v, false)) => Some(escape(&v)),
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
            let (v, s) = self.lookup(name)?;
            if s {
                *secret.borrow_mut() = true;
            }
            Some(v)
        });
        res.map(|s| (s, secret.into_inner()))
            .map_err(|e| VarError::Expr(e.to_string()))
    }

    /// Evaluate a condition; secrets may be compared (their values never leave).
    pub fn eval(&self, cond: &Condition) -> Result<bool, VarError> {
        cond.eval(&|name| self.get(name))
            .map_err(|e| VarError::Expr(e.to_string()))
    }

    /// Everything readable, secrets replaced by [`MASK`] (a run's final variables).
    pub fn masked(&self) -> BTreeMap<String, String> {
        let mut out = self.vars.masked();
        out.extend(self.state.readable());
        out
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
        v.set("code", "123456", false).unwrap();
        v.set("secret.pin", "1", false).unwrap();
        v.set("codes", "x", false).unwrap();
        assert!(v.is_secret("code") && v.is_secret("secret.pin") && !v.is_secret("codes"));
    }

    use super::*;
    use crate::call::CallInfo;

    #[test]
    fn secrets_are_refused_in_public_renders_and_masked() {
        let mut v = Vars::new();
        v.set("dob", "19800101", true).unwrap();
        v.set("name", "Alice", false).unwrap();
        let state = CallState::from_call(&CallInfo::default());
        let masked = v.masked();
        let v = Scope::new(&state, &v);
        assert_eq!(v.render_public("hi ${name}").unwrap(), "hi Alice");
        assert_eq!(
            v.render_public("x${dob}").unwrap_err(),
            VarError::Secret("dob".into())
        );
        assert_eq!(
            v.render_internal("${dob}").unwrap(),
            ("19800101".into(), true)
        );
        assert_eq!(masked["dob"], MASK);
        assert_eq!(v.masked()["dob"], MASK);
        assert_eq!(v.masked()["name"], "Alice");
    }

    #[test]
    fn builtins_from_call_info() {
        let mut info = CallInfo {
            call_id: "c1".into(),
            caller: "+1555".into(),
            dialled: "bank".into(),
            trust: crate::call::CallerTrust::PaiTrusted,
            ..Default::default()
        };
        info.headers
            .insert("p-asserted-identity".into(), "<sip:+1555@x>".into());
        let state = CallState::from_call(&info);
        let vars = Vars::for_run();
        let v = Scope::new(&state, &vars);
        assert_eq!(v.get("caller").as_deref(), Some("+1555"));
        assert_eq!(v.get("caller_trust").as_deref(), Some("pai_trusted"));
        assert_eq!(v.get("attempts").as_deref(), Some("0"));
        assert!(v.get("header.p-asserted-identity").is_some());
    }

    #[test]
    fn engine_names_cannot_be_written_or_shadowed() {
        let info = CallInfo {
            caller: "+1555".into(),
            ..Default::default()
        };
        let state = CallState::from_call(&info);
        let mut vars = Vars::for_run();
        for name in [
            "auth.result",
            "account.id",
            "caller",
            "caller_trust",
            "code.channel",
            "call_id",
            "dialled",
        ] {
            assert_eq!(
                vars.set(name, "spoofed", false),
                Err(VarError::Reserved(name.into()))
            );
        }
        vars.set("crm.auth.result", "passed", false).unwrap();
        let v = Scope::new(&state, &vars);
        assert_eq!(v.get("auth.result").as_deref(), Some("none"));
        assert_eq!(v.get("caller").as_deref(), Some("+1555"));
        assert_eq!(v.get("crm.auth.result").as_deref(), Some("passed"));
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
