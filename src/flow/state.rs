//! Per-call state the engine owns: who is calling and how far we trust it,
//! the account found, the code sent, the authentication tried.
//!
//! This used to travel through the flow's variable map, where a `set:` step
//! or a CRM answer (`webhook into: auth`) could overwrite `auth.result` or
//! `account.id`, and where `verify_code` chose its method from a
//! `code.channel` variable. Now steps write these typed fields and backends
//! take their subject and code key from here; flows can only *read* them,
//! through [`CallState::read`], under the names listed in [`RESERVED`] — and
//! any write to one of those names is refused when the flow loads
//! ([`reserved_owner`]) and again at run time ([`crate::flow::vars::Vars::set`]).

use std::collections::BTreeMap;

use crate::backends::Account;
use crate::backends::PassphraseSubject;
use crate::call::{CallInfo, CallerTrust, TransferFailure};
use crate::events::{AuthMethod, AuthOutcome};
use crate::flow::model::CodeChannel;

/// How a reserved name is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match {
    /// Exactly this name.
    Exact,
    /// This name and everything under `name.`.
    Family,
    /// Only what is under `name.` (the bare name belongs to flows: `code` is
    /// the flow's own secret variable, `code.*` is the engine's).
    Under,
    /// Every name starting with these characters (`caller`, `caller_trust`,
    /// `caller.trust`, `callerid`…), so no look-alike can pose as the caller.
    Starting,
}

/// A name (or family of names) only the engine writes, with who writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// How flow authors see it: `auth.*`, `caller*`, `dialled`.
    pub pattern: &'static str,
    /// What sets it, for messages.
    pub owner: &'static str,
    root: &'static str,
    how: Match,
}

impl Reserved {
    const fn new(
        pattern: &'static str,
        root: &'static str,
        how: Match,
        owner: &'static str,
    ) -> Self {
        Self {
            pattern,
            owner,
            root,
            how,
        }
    }

    fn matches(&self, name: &str) -> bool {
        let under = || {
            name.strip_prefix(self.root)
                .is_some_and(|rest| rest.starts_with('.'))
        };
        match self.how {
            Match::Exact => name == self.root,
            Match::Family => name == self.root || under(),
            Match::Under => under(),
            Match::Starting => name.starts_with(self.root),
        }
    }
}

/// Every name flows may read but never write.
pub const RESERVED: &[Reserved] = &[
    Reserved::new(
        "auth.*",
        "auth",
        Match::Family,
        "the verify_passphrase, verify_code and verify_totp steps",
    ),
    Reserved::new(
        "account.*",
        "account",
        Match::Family,
        "the lookup_caller step",
    ),
    Reserved::new("code.*", "code", Match::Under, "the send_code step"),
    Reserved::new(
        "caller*",
        "caller",
        Match::Starting,
        "the call (its caller ID and how far it is trusted)",
    ),
    Reserved::new("call.*", "call", Match::Family, "the call"),
    Reserved::new("call_id", "call_id", Match::Exact, "the call"),
    Reserved::new("dialled", "dialled", Match::Exact, "the call"),
    Reserved::new(
        "transfer.*",
        "transfer",
        Match::Family,
        "the transfer step (its SIP status and failure reason)",
    ),
    Reserved::new(
        "header.*",
        "header",
        Match::Family,
        "the call's SIP headers",
    ),
];

/// The reserved family `name` belongs to, if any. For a prefix that a step
/// writes under (`webhook into: x` writes `x.*`) pass `"x."`.
pub fn reserved_owner(name: &str) -> Option<&'static Reserved> {
    RESERVED.iter().find(|r| r.matches(name))
}

/// The reserved names as flow authors write them, for messages and docs.
pub fn reserved_list() -> String {
    RESERVED
        .iter()
        .map(|r| r.pattern)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The account `lookup_caller` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownAccount {
    fields: Account,
}

impl KnownAccount {
    /// The account's `id` field, if the directory returned one (the TOTP subject).
    pub fn id(&self) -> Option<&str> {
        self.field("id")
    }

    /// The account's `phone` field, if any (the passphrase subject).
    pub fn phone(&self) -> Option<&str> {
        self.field("phone")
    }

    /// Any field the directory returned; flows read it as `account.<name>`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// The one-time code the code backend accepted to send on this call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCode {
    /// The channel really used, which decides `verify_code`'s method.
    pub channel: CodeChannel,
    /// Whose code it is (the key the code backend filed it under).
    pub subject: crate::backends::CodeSubject,
    /// Destination as events show it ([`crate::events::mask_number`]).
    pub sent_to_masked: String,
}

impl PendingCode {
    /// The method a `verify_code` of this code authenticates with.
    pub fn method(&self) -> AuthMethod {
        match self.channel {
            CodeChannel::Sms => AuthMethod::SmsCode,
            CodeChannel::Voice => AuthMethod::VoiceCode,
            CodeChannel::Email => AuthMethod::EmailCode,
        }
    }
}

/// One verification a step finished, in the order they happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthAttempt {
    /// How the caller was checked (`auth.method`).
    pub method: AuthMethod,
    /// What came of it (`auth.result`).
    pub outcome: AuthOutcome,
    /// A short explanation for people (`auth.reason`, e.g. "code expired");
    /// never a secret.
    pub reason: String,
}

/// Everything the engine knows about the caller beyond the flow's own variables.
#[derive(Clone, Debug, PartialEq)]
pub struct CallState {
    call_id: String,
    caller: String,
    trust: CallerTrust,
    dialled: String,
    headers: BTreeMap<String, String>,
    account: Option<KnownAccount>,
    code: Option<PendingCode>,
    auth: Vec<AuthAttempt>,
    transfer: Option<TransferFailed>,
}

/// Why the last transfer failed: what `transfer.status` and
/// `transfer.reason` read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferFailed {
    /// The final SIP (or sipfrag) status, if there was one.
    pub status: Option<u16>,
    /// `busy`, `not_found`, `no_answer`, `unreachable`, `refused`.
    pub reason: TransferFailure,
}

impl CallState {
    /// The state at the start of a run: the call's identity and headers, no
    /// account, no code, no verification yet.
    pub fn from_call(info: &CallInfo) -> Self {
        Self {
            call_id: info.call_id.clone(),
            caller: info.caller.clone(),
            trust: info.trust,
            dialled: info.dialled.clone(),
            headers: info.headers.clone(),
            account: None,
            code: None,
            auth: Vec::new(),
            transfer: None,
        }
    }

    /// The key the code backend files this call's code under.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The caller's number as the call layer gave it (`caller`); see
    /// [`trust`](Self::trust) before believing it.
    pub fn caller(&self) -> &str {
        &self.caller
    }

    /// How far [`caller`](Self::caller) can be believed.
    pub fn trust(&self) -> CallerTrust {
        self.trust
    }

    /// The account `lookup_caller` found; `None` before or when none was found.
    pub fn account(&self) -> Option<&KnownAccount> {
        self.account.as_ref()
    }

    /// The latest code `send_code` got sent on this call, if any.
    pub fn code(&self) -> Option<&PendingCode> {
        self.code.as_ref()
    }

    /// Every verification finished on this call, oldest first.
    pub fn auth_attempts(&self) -> &[AuthAttempt] {
        &self.auth
    }

    /// The latest verification: what `auth.result` / `auth.method` report.
    pub fn auth_result(&self) -> Option<&AuthAttempt> {
        self.auth.last()
    }

    /// Whose TOTP secret: the id of the account `lookup_caller` found;
    /// `None` without one (never the caller's number, which could equal
    /// some account's id).
    pub fn totp_subject(&self) -> Option<&str> {
        self.account.as_ref().and_then(KnownAccount::id)
    }

    /// Whose code a `send_code` to `to` sends: the account found, else the
    /// destination number.
    pub fn code_subject_for(&self, to: &str) -> crate::backends::CodeSubject {
        match self.account.as_ref().and_then(KnownAccount::id) {
            Some(id) => crate::backends::CodeSubject::Account(id.to_string()),
            None => crate::backends::CodeSubject::Number(to.to_string()),
        }
    }

    /// Whose code a `verify_code` checks: the code sent on this call, else
    /// the account found (a code sent on an earlier call), else the caller.
    pub fn code_subject(&self) -> crate::backends::CodeSubject {
        if let Some(c) = &self.code {
            return c.subject.clone();
        }
        self.code_subject_for(&self.caller)
    }

    /// Whose passphrase: the account found (its id and number), else the
    /// caller number alone.
    pub fn passphrase_subject(&self) -> PassphraseSubject {
        let account = self.account.as_ref();
        PassphraseSubject {
            account_id: account.and_then(KnownAccount::id).map(str::to_string),
            number: account
                .and_then(KnownAccount::phone)
                .unwrap_or(&self.caller)
                .to_string(),
        }
    }

    pub(crate) fn found_account(&mut self, fields: Account) {
        self.account = Some(KnownAccount { fields });
    }

    pub(crate) fn forget_account(&mut self) {
        self.account = None;
    }

    pub(crate) fn code_sent(&mut self, code: PendingCode) {
        self.code = Some(code);
    }

    pub(crate) fn transfer_failed(&mut self, failed: TransferFailed) {
        self.transfer = Some(failed);
    }

    pub(crate) fn record_auth(&mut self, method: AuthMethod, outcome: AuthOutcome, reason: &str) {
        self.auth.push(AuthAttempt {
            method,
            outcome,
            reason: reason.to_string(),
        });
    }

    /// The value a flow reads under a reserved name (`None`: not set).
    ///
    /// `auth.result` and `auth.method` read `none` until a verification
    /// finished, `auth.reason` reads empty; `account.id` reads `none` while
    /// no account was found (so a header can always carry it).
    pub fn read(&self, name: &str) -> Option<String> {
        let auth = self.auth_result();
        let s = |v: &str| Some(v.to_string());
        match name {
            "caller" => s(&self.caller),
            "caller_trust" | "caller.trust" => s(self.trust.as_str()),
            "dialled" => s(&self.dialled),
            "call_id" => s(&self.call_id),
            "auth.result" => s(auth.map_or("none", |a| a.outcome.as_str())),
            "auth.method" => s(auth.map_or("none", |a| a.method.as_str())),
            "auth.reason" => s(auth.map_or("", |a| a.reason.as_str())),
            "code.sent_to" => self.code.as_ref().map(|c| c.sent_to_masked.clone()),
            "code.channel" => self.code.as_ref().map(|c| c.channel.as_str().to_string()),
            "account.id" if self.account.is_none() => s("none"),
            "transfer.status" => self
                .transfer
                .as_ref()
                .map(|t| t.status.map_or(String::new(), |c| c.to_string())),
            "transfer.reason" => self
                .transfer
                .as_ref()
                .map(|t| t.reason.as_str().to_string()),
            _ => {
                if let Some(field) = name.strip_prefix("account.") {
                    return self.account.as_ref()?.field(field).map(str::to_string);
                }
                let header = name.strip_prefix("header.")?;
                self.headers.get(header).cloned()
            }
        }
    }

    /// Every name [`read`](Self::read) answers, with its value (for a run's outcome).
    pub fn readable(&self) -> BTreeMap<String, String> {
        let mut names: Vec<String> = [
            "caller",
            "caller_trust",
            "caller.trust",
            "dialled",
            "call_id",
            "auth.result",
            "auth.method",
            "auth.reason",
            "code.sent_to",
            "code.channel",
            "account.id",
            "transfer.status",
            "transfer.reason",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(a) = &self.account {
            names.extend(a.fields.keys().map(|k| format!("account.{k}")));
        }
        names.extend(self.headers.keys().map(|k| format!("header.{k}")));
        names
            .into_iter()
            .filter_map(|n| self.read(&n).map(|v| (n, v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> CallInfo {
        let mut info = CallInfo {
            call_id: "c1".into(),
            caller: "+1555".into(),
            dialled: "bank".into(),
            trust: CallerTrust::PaiTrusted,
            ..Default::default()
        };
        info.headers
            .insert("p-asserted-identity".into(), "<sip:+1555@x>".into());
        info
    }

    #[test]
    fn reserved_names_and_prefixes() {
        for n in [
            "auth",
            "auth.result",
            "account.id",
            "account",
            "code.channel",
            "caller",
            "caller_trust",
            "caller.trust",
            "callers",
            "call.id",
            "call",
            "call_id",
            "dialled",
            "header.x",
            "transfer.reason",
            "transfer",
            "auth.",
            "code.",
        ] {
            assert!(reserved_owner(n).is_some(), "{n} is reserved");
        }
        for n in [
            "code",
            "codes",
            "accounts",
            "authx",
            "crm.auth.result",
            "crm.",
            "dialled_before",
            "call_ids",
            "my.caller",
            "headers",
        ] {
            assert!(reserved_owner(n).is_none(), "{n} is free");
        }
    }

    #[test]
    fn reads_come_from_typed_state() {
        let mut s = CallState::from_call(&info());
        assert_eq!(s.read("caller").as_deref(), Some("+1555"));
        assert_eq!(s.read("caller_trust").as_deref(), Some("pai_trusted"));
        assert_eq!(s.read("caller.trust").as_deref(), Some("pai_trusted"));
        assert_eq!(s.read("auth.result").as_deref(), Some("none"));
        assert_eq!(s.read("account.id").as_deref(), Some("none"));
        assert_eq!(s.read("account.phone"), None);
        assert_eq!(s.read("code.channel"), None);
        assert!(s.read("header.p-asserted-identity").is_some());
        assert_eq!(s.totp_subject(), None);

        let mut acc = Account::new();
        acc.insert("id".into(), "ACC-1".into());
        acc.insert("phone".into(), "+1666".into());
        s.found_account(acc);
        assert_eq!(
            s.code_subject(),
            crate::backends::CodeSubject::Account("ACC-1".into())
        );
        s.code_sent(PendingCode {
            channel: CodeChannel::Voice,
            subject: s.code_subject_for("+1666"),
            sent_to_masked: "+1******66".into(),
        });
        s.record_auth(AuthMethod::VoiceCode, AuthOutcome::Passed, "code accepted");
        assert_eq!(s.read("account.id").as_deref(), Some("ACC-1"));
        assert_eq!(s.totp_subject(), Some("ACC-1"));
        assert_eq!(s.passphrase_subject().number, "+1666");
        assert_eq!(s.passphrase_subject().account_id.as_deref(), Some("ACC-1"));
        assert_eq!(s.read("code.channel").as_deref(), Some("voice"));
        assert_eq!(s.read("auth.result").as_deref(), Some("passed"));
        assert_eq!(s.read("auth.method").as_deref(), Some("voice_code"));
        assert_eq!(s.readable()["account.phone"], "+1666");
    }
}
