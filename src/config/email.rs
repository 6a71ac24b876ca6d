//! E-mail: the `email:` part of the config — the SMTP relay codes go
//! through, the sender, and the message templates (subject and text per
//! brand and language, like the SMS templates).
//!
//! ```yaml
//! email:
//!   smtp:
//!     host: smtp.example.com
//!     port: 587                     # default: 587 starttls, 465 implicit, 25 none
//!     tls: starttls                 # starttls | implicit | none (loopback only)
//!     username_env: SMTP_USER       # the NAMES of environment variables,
//!     password_env: SMTP_PASSWORD   # never the credentials themselves
//!     timeout: 10s
//!     ca_file: /etc/voxgate/relay-ca.pem  # optional: trust only this CA (a private relay)
//!   from: "Acme Bank <codes@acme.example>"
//!   same_code: true                 # fallback from another channel: the same code (false: a new one)
//!   brand_names: { acme: "Acme Bank" }
//!   templates:
//!     "*":  { en: { subject: "Your {brand} code", text: "Your code is {code}. It expires in {minutes} min." } }
//!     acme: { de: { subject: "Ihr {brand}-Code", text: "Ihr Code: {code} (gültig {minutes} Min.)" } }
//! ```
//!
//! Every text must carry `{code}`; a subject must not (subjects end up in
//! mail logs and notification previews). Credentials are read from the
//! environment when `serve` starts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::parse_duration;
use super::sms::PLACEHOLDERS;

/// How the connection to the SMTP relay is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, never skipped).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// No TLS: only to a loopback relay (tests, a local MTA).
    None,
}

/// `email.smtp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    /// The relay's host name (checked against its certificate).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// The environment variable holding the user name (none: no AUTH).
    pub username_env: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// Limit of the whole exchange with the relay (default 10 s).
    pub timeout: Duration,
    /// PEM file of the CA(s) the relay's certificate must chain to, trusted
    /// instead of the system's roots (a relay with a private CA; tests).
    /// `None`: the platform's verifier and roots. Verification is never off.
    pub ca_file: Option<std::path::PathBuf>,
}

/// One message template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailTemplate {
    /// The subject line (no `{code}`).
    pub subject: String,
    /// The plain-text body (with `{code}`).
    pub text: String,
}

/// The `email:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailConfig {
    /// The relay.
    pub smtp: SmtpConfig,
    /// The `From:` mailbox (`Name <addr>` or `addr`).
    pub from: String,
    /// When another channel failed to take a code, send that same code by
    /// e-mail (default `true`); `false`: draw a new one (the first is not live).
    pub same_code: bool,
    /// (brand, language) → template; brand "" is every brand's (`"*"`).
    pub templates: BTreeMap<(String, String), EmailTemplate>,
    /// Brand → the name messages call it by.
    pub brand_names: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    smtp: RawSmtp,
    from: String,
    same_code: Option<bool>,
    brand_names: Option<BTreeMap<String, String>>,
    templates: Option<BTreeMap<String, BTreeMap<String, RawTemplate>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    username_env: Option<String>,
    password_env: Option<String>,
    timeout: Option<String>,
    ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    subject: String,
    text: String,
}

fn env_name(field: &str, v: Option<String>) -> Result<Option<String>, String> {
    match v {
        Some(n) if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Err(format!(
                "email.smtp.{field}: the NAME of an environment variable (letters, digits, _), never the credential itself"
            ))
        }
        other => Ok(other),
    }
}

/// `127.0.0.1`, `::1`, `localhost`: hosts a plain connection may go to.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Placeholders of `t` that are not known ones.
fn unknown_placeholder(t: &str) -> Option<String> {
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else { break };
        let name = &after[..j];
        if !PLACEHOLDERS.contains(&name) {
            return Some(name.to_string());
        }
        rest = &after[j + 1..];
    }
    None
}

/// Check one template (`where_` names it in errors).
pub(crate) fn check_template(where_: &str, t: &EmailTemplate) -> Result<(), String> {
    if !t.text.contains("{code}") {
        return Err(format!(
            "email.templates.{where_}.text: the text has no `{{code}}`"
        ));
    }
    if t.subject.contains("{code}") {
        return Err(format!(
            "email.templates.{where_}.subject: no `{{code}}` in a subject (subjects show in previews and mail logs)"
        ));
    }
    if t.subject.contains(['\r', '\n']) {
        return Err(format!("email.templates.{where_}.subject: one line"));
    }
    for (f, v) in [("subject", &t.subject), ("text", &t.text)] {
        if let Some(p) = unknown_placeholder(v) {
            return Err(format!(
                "email.templates.{where_}.{f}: unknown placeholder `{{{p}}}` (known: {})",
                PLACEHOLDERS.join(", ")
            ));
        }
    }
    Ok(())
}

impl RawEmail {
    /// Check and convert.
    pub(super) fn into_config(self) -> Result<EmailConfig, String> {
        let s = self.smtp;
        if s.host.trim().is_empty() {
            return Err("email.smtp.host: empty".into());
        }
        let tls = match s.tls.as_deref() {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("implicit") => SmtpTls::Implicit,
            Some("none") => SmtpTls::None,
            Some(o) => {
                return Err(format!(
                    "email.smtp.tls: `{o}`; expected starttls, implicit or none"
                ))
            }
        };
        if tls == SmtpTls::None && !is_loopback(&s.host) {
            return Err(format!(
                "email.smtp.tls: none only to a loopback relay (127.0.0.1, ::1, localhost), not `{}`: codes would cross the network in clear",
                s.host
            ));
        }
        let port = s.port.unwrap_or(match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        });
        let username_env = env_name("username_env", s.username_env)?;
        let password_env = env_name("password_env", s.password_env)?;
        if username_env.is_some() != password_env.is_some() {
            return Err("email.smtp: username_env and password_env go together".into());
        }
        let timeout = match s.timeout {
            Some(t) => parse_duration(&t).map_err(|e| format!("email.smtp.timeout: {e}"))?,
            None => Duration::from_secs(10),
        };
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            return Err("email.smtp.timeout: between 1ms and 60s (a caller is waiting)".into());
        }
        let ca_file = match s.ca_file {
            Some(_) if tls == SmtpTls::None => {
                return Err("email.smtp.ca_file: only with tls: starttls or implicit".into())
            }
            Some(f) if f.trim().is_empty() => return Err("email.smtp.ca_file: empty".into()),
            other => other.map(std::path::PathBuf::from),
        };
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!(
                "email.from: `{}` is not a mailbox (`Name <addr@host>` or `addr@host`)",
                self.from
            ));
        }
        let mut templates = BTreeMap::new();
        for (brand, langs) in self.templates.unwrap_or_default() {
            for (lang, t) in langs {
                let t = EmailTemplate {
                    subject: t.subject,
                    text: t.text,
                };
                check_template(&format!("{brand}.{lang}"), &t)?;
                let b = if brand == super::sms::ANY_BRAND {
                    String::new()
                } else {
                    brand.clone()
                };
                templates.insert((b, lang), t);
            }
        }
        Ok(EmailConfig {
            smtp: SmtpConfig {
                host: s.host,
                port,
                tls,
                username_env,
                password_env,
                timeout,
                ca_file,
            },
            from: self.from,
            same_code: self.same_code.unwrap_or(true),
            templates,
            brand_names: self.brand_names.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn parse(yaml: &str) -> Result<Option<EmailConfig>, String> {
        Config::parse("c.yaml", yaml)
            .map(|c| c.email)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn full_config() {
        let c = parse(
            "email:\n  smtp: { host: smtp.example.com, username_env: SMTP_USER, password_env: SMTP_PASSWORD, timeout: 5s }\n  from: 'Acme <codes@acme.example>'\n  same_code: false\n  templates:\n    '*': { en: { subject: 'Your {brand} code', text: 'Code {code}, {minutes} min' } }\n    acme: { de: { subject: 'Ihr Code', text: 'Code: {code}' } }\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.smtp.port, 587);
        assert_eq!(c.smtp.tls, SmtpTls::StartTls);
        assert_eq!(c.smtp.username_env.as_deref(), Some("SMTP_USER"));
        assert_eq!(c.smtp.timeout, Duration::from_secs(5));
        assert!(!c.same_code);
        assert_eq!(
            c.templates[&(String::new(), "en".into())].subject,
            "Your {brand} code"
        );
        assert!(c.templates.contains_key(&("acme".into(), "de".into())));
        assert_eq!(parse("").unwrap(), None);
        let c = parse("email: { smtp: { host: 127.0.0.1, port: 2525, tls: none }, from: a@b.c }\n")
            .unwrap()
            .unwrap();
        assert_eq!((c.smtp.port, c.smtp.tls), (2525, SmtpTls::None));
        assert!(c.same_code);
    }

    #[test]
    fn errors_say_what() {
        let smtp = "smtp: { host: smtp.example.com }";
        for (yaml, want) in [
            ("email: { smtp: { host: mail.example.com, tls: none }, from: a@b.c }".to_string(), "only to a loopback relay"),
            ("email: { smtp: { host: h, tls: ssl }, from: a@b.c }".to_string(), "email.smtp.tls: `ssl`"),
            ("email: { smtp: { host: h, password_env: 'hunter2!' }, from: a@b.c }".to_string(), "the NAME of an environment variable"),
            ("email: { smtp: { host: h, password_env: P }, from: a@b.c }".to_string(), "go together"),
            (format!("email: {{ {smtp}, from: 'not a mailbox' }}"), "email.from: `not a mailbox`"),
            (format!("email: {{ {smtp}, from: a@b.c, templates: {{ '*': {{ en: {{ subject: s, text: 'no code' }} }} }} }}"), "email.templates.*.en.text: the text has no `{code}`"),
            (format!("email: {{ {smtp}, from: a@b.c, templates: {{ x: {{ en: {{ subject: 'c {{code}}', text: '{{code}}' }} }} }} }}"), "email.templates.x.en.subject: no `{code}`"),
            (format!("email: {{ {smtp}, from: a@b.c, templates: {{ x: {{ en: {{ subject: s, text: '{{code}} {{cdoe}}' }} }} }} }}"), "unknown placeholder `{cdoe}`"),
            (format!("email: {{ {smtp}, from: a@b.c, password: x }}"), "password"),
            ("email: { smtp: { host: 127.0.0.1, tls: none, ca_file: ca.pem }, from: a@b.c }".to_string(), "email.smtp.ca_file: only with tls: starttls or implicit"),
        ] {
            let e = parse(&yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}\n→ {e}");
        }
    }
}
