//! The `*.test.yaml` format (see the module docs of `runner` for an example).
//!
//! Parsed with serde-saphyr so every error carries `line:col`; values that
//! need checking after parsing (flow path, outcome names) keep their span.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::scripted::Action;
use crate::duration;

/// One `*.test.yaml` file: the flow under test and its cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Flow file, relative to the test file.
    pub flow: Spanned<String>,
    /// The cases, run in order, each on a fresh call and fresh stubs.
    pub tests: Vec<TestCase>,
}

/// One test: the call, the backend fixtures, what the caller does and what
/// must come of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in the report; its span points failures at the case.
    pub name: Spanned<String>,
    /// The calling number (`caller`); `+15550000000` when absent.
    #[serde(default = "default_caller")]
    pub caller: String,
    /// How far the caller ID is believed (`caller.trust`): `pai_trusted`,
    /// `from_header` or `anonymous`; absent: `anonymous` for an `anonymous`
    /// caller, else `from_header`.
    #[serde(default)]
    pub trust: Option<crate::call::CallerTrust>,
    /// The brand of the dialled number's route (lookups see it); "" when absent.
    #[serde(default)]
    pub brand: String,
    /// The dialled number (`dialled`); empty when absent.
    #[serde(default)]
    pub dialled: String,
    /// The call's id; `test-call-<n>` (1-based case index) when absent.
    #[serde(default)]
    pub call_id: Option<String>,
    /// Request headers the call exposes (lower-cased).
    #[serde(default)]
    pub headers: BTreeMap<String, Scalar>,
    /// Number → account fields, or `error` (lookups of that number fail).
    /// Absent: the directory is unavailable.
    #[serde(default)]
    pub directory: Option<BTreeMap<String, DirEntry>>,
    /// Number → passphrase. Absent: the verifier is unavailable.
    #[serde(default)]
    pub passphrase: Option<BTreeMap<String, String>>,
    /// How the one-time-code service answers. Absent: it is unavailable.
    #[serde(default)]
    pub codes: Option<CodesFixture>,
    /// The webhook's canned answer. Absent: webhooks are unavailable.
    #[serde(default)]
    pub webhook: Option<WebhookFixture>,
    /// The TOTP codes accepted. Absent: the verifier is unavailable.
    #[serde(default)]
    pub totp: Option<TotpFixture>,
    /// Backends (or `transfer`) that fail with an error in this test.
    #[serde(default)]
    pub fail: Vec<Spanned<String>>,
    /// The transfer target refuses with this SIP status.
    #[serde(default)]
    pub transfer_fails: Option<u16>,
    /// The recogniser fails from this recognition on (1 = the first; same as
    /// `fail: [recognizer]`).
    #[serde(default)]
    pub recognizer_fails_at: Option<u32>,
    /// What the caller does, in order; every action must be performed.
    #[serde(default)]
    pub script: Vec<ScriptItem>,
    /// What must hold when the run ends; an empty `expect` checks nothing.
    #[serde(default)]
    pub expect: Expect,
}

fn default_caller() -> String {
    "+15550000000".into()
}

/// The `codes:` fixture: how sending and verifying one-time codes behave
/// (the sent code is offered to the script as `${sent_code}`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CodesFixture {
    /// `ok` | `rate_limited` | `error`.
    #[serde(default)]
    pub send: Option<Spanned<String>>,
    /// `ok` (default) | `error`: every verification fails with an error.
    #[serde(default)]
    pub verify: Option<Spanned<String>>,
}

/// A directory fixture entry: account fields, or `error`.
#[derive(Clone, Debug, PartialEq)]
pub enum DirEntry {
    /// The number's account, field → value (read as `account.<field>`).
    Account(BTreeMap<String, String>),
    /// Looking this number up fails with a backend error.
    Error,
}

impl<'de> Deserialize<'de> for DirEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DirEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("account fields (a mapping) or `error`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DirEntry, E> {
                if v == "error" {
                    Ok(DirEntry::Error)
                } else {
                    Err(E::custom(format!(
                        "expected account fields or `error`, got `{v}`"
                    )))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<DirEntry, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, Scalar>()? {
                    out.insert(k, v.0);
                }
                Ok(DirEntry::Account(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `webhook:` fixture: one canned answer for every webhook step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFixture {
    /// HTTP status of the answer; 200 when absent.
    #[serde(default = "default_status")]
    pub status: u16,
    /// JSON body of the answer; absent means JSON `null` (no fields set).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// No answer at all: the step takes its `timeout` exit (or `error`).
    #[serde(default)]
    pub timeout: bool,
}

fn default_status() -> u16 {
    200
}

/// The `totp:` fixture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpFixture {
    /// Codes the verifier accepts (at any time, once each: the same code
    /// again is refused as replayed); every other code is wrong.
    #[serde(default)]
    pub valid: Vec<Scalar>,
    /// Codes already accepted before this call: entering one is a replay.
    #[serde(default)]
    pub used: Vec<Scalar>,
    /// The factor is locked for the account (too many wrong codes).
    #[serde(default)]
    pub locked: bool,
    /// The account has a TOTP secret (default `true`).
    #[serde(default = "enrolled_by_default")]
    pub enrolled: bool,
}

fn enrolled_by_default() -> bool {
    true
}

/// The `expect:` block; each field given is checked, absent ones are not.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The exact list of step ids the run went through.
    pub path: Option<Vec<String>>,
    /// Steps that must appear in this order (others may come between).
    pub path_includes: Option<Vec<String>>,
    /// Steps that must not appear.
    pub path_excludes: Option<Vec<String>>,
    /// `transferred` | `hung_up` | `ended` | `error`.
    pub outcome: Option<Spanned<String>>,
    /// Substring of the error message (outcome `error`).
    pub error_contains: Option<String>,
    /// Final variable values (secrets show as `***`).
    #[serde(default)]
    pub vars: BTreeMap<String, Scalar>,
    /// Event names that must occur in this order (others may come between).
    pub events: Option<Vec<String>>,
    /// Event names that must not occur.
    pub events_exclude: Option<Vec<String>>,
    /// The exact list of prompts started, in order (rendered names).
    pub prompts: Option<Vec<String>>,
    /// Prompts that must have started at least once, in any order.
    pub prompts_include: Option<Vec<String>>,
    /// The last transfer request must match this.
    pub transfer: Option<ExpectTransfer>,
    /// How many codes the code stub sent.
    pub codes_sent: Option<u32>,
    /// Prompts cut short by the caller (keys or speech).
    pub barge_ins: Option<u32>,
}

/// `expect.transfer`: what the last transfer request carried. Requires that
/// a transfer was requested at all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectTransfer {
    /// The exact rendered target URI; not checked when absent.
    pub target: Option<String>,
    /// Headers that must be sent with these values (names case-insensitive;
    /// other headers may be sent too).
    #[serde(default)]
    pub headers: BTreeMap<String, Scalar>,
}

/// Any YAML scalar as text (`dob: 19800101`, `status: 200`, `name: Alice`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar (string, number or boolean)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `5s`, `200ms`, `1.5s`, `2m`, or a bare number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// Test-file durations: the config's lenient dialect (`min`, `5 s`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    duration::parse(s, duration::Dialect::Lenient).ok()
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Scalar::deserialize(d)?;
        parse_duration(&s.0).map(Dur).ok_or_else(|| {
            de::Error::custom(format!("`{}` is not a duration (like 5s, 200ms, 2m)", s.0))
        })
    }
}

/// One script line: `hangup`, or a mapping with one of
/// `digits` (+ `gap`), `say` (+ `confidence`), `audio`, `silence`, `advance`, `wait`, `hangup`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptItem(pub Action);

impl<'de> Deserialize<'de> for ScriptItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ScriptItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`hangup` or a mapping with digits / say / silence / advance")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScriptItem, E> {
                match v {
                    "hangup" => Ok(ScriptItem(Action::Hangup)),
                    other => Err(E::custom(format!(
                        "unknown script action `{other}` (expected `hangup` or a mapping with digits / say / silence / advance)"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ScriptItem, A::Error> {
                let mut actions: Vec<Action> = Vec::new();
                let mut gap = None;
                let mut confidence = None;
                while let Some(key) = m.next_key::<String>()? {
                    match key.as_str() {
                        "digits" => {
                            let s: String = m.next_value().map_err(|_: A::Error| {
                                de::Error::custom("`digits` must be a quoted string, e.g. digits: \"0123#\"")
                            })?;
                            actions.push(Action::Digits {
                                digits: s,
                                gap: Duration::ZERO,
                            });
                        }
                        "gap" => gap = Some(m.next_value::<Dur>()?.0),
                        "say" => actions.push(Action::Say {
                            text: m.next_value::<Scalar>()?.0,
                            confidence: 0.0,
                        }),
                        "audio" => actions.push(Action::Audio(
                            m.next_value::<String>()?.into(),
                        )),
                        "confidence" => confidence = Some(m.next_value::<f32>()?),
                        "silence" => actions.push(Action::Silence(m.next_value::<Dur>()?.0)),
                        "advance" => actions.push(Action::Advance(m.next_value::<Dur>()?.0)),
                        "wait" => actions.push(Action::WaitPrompt(m.next_value::<String>()?)),
                        "hangup" => {
                            m.next_value::<IgnoredAny>()?;
                            actions.push(Action::Hangup);
                        }
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown script key `{other}` (expected digits, gap, say, confidence, audio, silence, advance, wait, hangup)"
                            )))
                        }
                    }
                }
                if actions.len() != 1 {
                    return Err(de::Error::custom(
                        "a script line needs exactly one of digits / say / audio / silence / advance / wait / hangup",
                    ));
                }
                let mut action = actions.remove(0);
                match &mut action {
                    Action::Digits { gap: g, .. } => *g = gap.unwrap_or(Duration::from_millis(100)),
                    Action::Say { confidence: c, .. } => *c = confidence.unwrap_or(0.95),
                    _ if gap.is_some() || confidence.is_some() => {
                        return Err(de::Error::custom(
                            "`gap` goes with `digits`, `confidence` with `say`",
                        ))
                    }
                    _ => {}
                }
                Ok(ScriptItem(action))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("fast"), None);
    }

    #[test]
    fn script_items() {
        let yaml = "- hangup\n- digits: \"12#\"\n  gap: 50ms\n- say: purple\n  confidence: 0.4\n- silence: 3s\n- advance: 61s\n";
        let items: Vec<ScriptItem> = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(items[0].0, Action::Hangup);
        assert_eq!(
            items[1].0,
            Action::Digits {
                digits: "12#".into(),
                gap: Duration::from_millis(50)
            }
        );
        assert_eq!(
            items[2].0,
            Action::Say {
                text: "purple".into(),
                confidence: 0.4
            }
        );
        assert_eq!(items[3].0, Action::Silence(Duration::from_secs(3)));
        assert_eq!(items[4].0, Action::Advance(Duration::from_secs(61)));
    }

    #[test]
    fn bad_script_item_has_location() {
        let yaml = "- digits: \"1\"\n- jump: 3\n";
        let err = serde_saphyr::from_str::<Vec<ScriptItem>>(yaml).unwrap_err();
        let loc = err.location().expect("location");
        assert_eq!(loc.line(), 2);
    }
}
