//! Codes by e-mail: one SMTP relay (lettre over tokio, rustls only:
//! STARTTLS, implicit TLS, or plain to a loopback relay), a text template
//! per brand and language.
//!
//! The message carries the code, so it is a secret: nothing here logs it,
//! and errors carry only the relay's reply code or the kind of failure —
//! never the message, never the recipient's address.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use zeroize::Zeroizing;

use crate::config::email::{EmailConfig, EmailTemplate, SmtpTls};

/// The template used when the config gives none for a brand and language.
pub const DEFAULT_SUBJECT: &str = "Your {brand} verification code";
/// The text used when the config gives none.
pub const DEFAULT_TEXT: &str = "Your {brand} verification code is {code}.\n\nIt expires in {minutes} min. Never share it: {brand} will never ask you for it.\n";

/// Subjects and texts per brand and language, with `{code}`, `{minutes}`,
/// `{seconds}` and `{brand}` filled in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmailTemplates {
    by_key: BTreeMap<(String, String), EmailTemplate>,
    names: BTreeMap<String, String>,
}

/// A rendered message.
pub struct Rendered {
    /// The subject line (no code in it).
    pub subject: String,
    /// The text, with the code (a secret).
    pub text: Zeroizing<String>,
}

impl EmailTemplates {
    /// Templates by (brand, language) (brand "" = every brand's) and brand names.
    pub fn new(
        by_key: BTreeMap<(String, String), EmailTemplate>,
        names: BTreeMap<String, String>,
    ) -> Self {
        EmailTemplates { by_key, names }
    }

    /// The template for `brand` in `language`: the brand's, its English,
    /// every brand's in the language, every brand's English, the built-in one.
    pub fn template(&self, brand: &str, language: &str) -> (&str, &str) {
        let keys = [(brand, language), (brand, "en"), ("", language), ("", "en")];
        keys.iter()
            .find_map(|(b, l)| self.by_key.get(&(b.to_string(), l.to_string())))
            .map_or((DEFAULT_SUBJECT, DEFAULT_TEXT), |t| {
                (t.subject.as_str(), t.text.as_str())
            })
    }

    /// The message for `code`, valid for `ttl`.
    pub fn render(&self, brand: &str, language: &str, code: &str, ttl: Duration) -> Rendered {
        let name = self
            .names
            .get(brand)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(if brand.is_empty() { "voxgate" } else { brand });
        let minutes = ttl.as_secs().div_ceil(60).max(1).to_string();
        let seconds = ttl.as_secs().to_string();
        let fill = |t: &str| {
            t.replace("{brand}", name)
                .replace("{minutes}", &minutes)
                .replace("{seconds}", &seconds)
        };
        let (subject, text) = self.template(brand, language);
        Rendered {
            subject: fill(subject),
            text: Zeroizing::new(fill(text).replace("{code}", code)),
        }
    }
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// The relay refused the message (its reply code, e.g. `550`).
    #[error("refused by the SMTP relay: {code} ({kind})")]
    Refused {
        /// The three-digit reply code.
        code: String,
        /// `permanent` (5xx) or `transient` (4xx).
        kind: &'static str,
    },
    /// The address is not one a message can go to.
    #[error("not an e-mail address")]
    BadAddress,
    /// The relay could not be reached or the exchange broke (TLS, timeout, …).
    #[error("SMTP: {0}")]
    Failed(String),
}

/// Why the `email:` config could not become a sender (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum EmailBuildError {
    /// An environment variable the config names is not set.
    #[error("email.smtp.{field}: environment variable {var} is not set")]
    MissingEnv {
        /// `username_env` or `password_env`.
        field: &'static str,
        /// The variable's name.
        var: String,
    },
    /// The `From:` mailbox or the TLS set-up is unusable.
    #[error("email: {0}")]
    Invalid(String),
}

/// The e-mail channel: the relay, the sender and the templates.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    relay: String,
    /// Texts.
    pub templates: EmailTemplates,
    /// A fallback from another channel sends the same code (else a new one).
    pub same_code: bool,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("relay", &self.relay)
            .field("same_code", &self.same_code)
            .finish()
    }
}

/// The e-mail channel of `cfg`; credentials from the process environment.
pub fn build(cfg: &EmailConfig) -> Result<Email, EmailBuildError> {
    build_with_env(cfg, &|name| std::env::var(name).ok())
}

/// [`build`] with the environment given as `env`.
pub fn build_with_env(
    cfg: &EmailConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Email, EmailBuildError> {
    let s = &cfg.smtp;
    let tls_err = |e: lettre::transport::smtp::Error| EmailBuildError::Invalid(e.to_string());
    let builder = match (s.tls, &s.ca_file) {
        (SmtpTls::StartTls, None) => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host).map_err(tls_err)?
        }
        (SmtpTls::Implicit, None) => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host).map_err(tls_err)?
        }
        // A private CA: the same TLS as above, its roots only that file's.
        (tls @ (SmtpTls::StartTls | SmtpTls::Implicit), Some(ca)) => {
            let params = private_ca(&s.host, ca)?;
            let tls = match tls {
                SmtpTls::StartTls => Tls::Required(params),
                _ => Tls::Wrapper(params),
            };
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host).tls(tls)
        }
        (SmtpTls::None, _) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
    };
    let mut builder = builder.port(s.port).timeout(Some(s.timeout));
    if let (Some(u), Some(p)) = (&s.username_env, &s.password_env) {
        let get = |field, var: &String| {
            env(var).ok_or_else(|| EmailBuildError::MissingEnv {
                field,
                var: var.clone(),
            })
        };
        builder = builder.credentials(Credentials::new(
            get("username_env", u)?,
            get("password_env", p)?,
        ));
    }
    let from = cfg
        .from
        .parse::<Mailbox>()
        .map_err(|e| EmailBuildError::Invalid(format!("from: {e}")))?;
    Ok(Email {
        transport: builder.build(),
        from,
        relay: format!("smtp:{}", s.host),
        templates: EmailTemplates::new(cfg.templates.clone(), cfg.brand_names.clone()),
        same_code: cfg.same_code,
    })
}

/// TLS parameters for `host` trusting only the CA certificates in `ca_file`
/// (PEM): the certificate is still verified, chain and name, against them.
fn private_ca(host: &str, ca_file: &std::path::Path) -> Result<TlsParameters, EmailBuildError> {
    let bad = |why: String| {
        EmailBuildError::Invalid(format!("smtp.ca_file {}: {why}", ca_file.display()))
    };
    let pem = std::fs::read(ca_file).map_err(|e| bad(e.to_string()))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad("no PEM certificate in it".into()));
    }
    let cert = Certificate::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
    TlsParameters::builder(host.to_string())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(cert)
        .build_rustls()
        .map_err(|e| bad(e.to_string()))
}

impl Email {
    /// The relay's name in deliveries and events (`smtp:<host>`).
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// Send `msg` to `to`; `Ok` with the relay's reply code when it took it.
    pub async fn send(&self, to: &str, msg: &Rendered) -> Result<String, EmailError> {
        let to: Mailbox = to.trim().parse().map_err(|_| EmailError::BadAddress)?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(msg.text.to_string())
            .map_err(|e| EmailError::Failed(format!("message not built: {}", kind_of(&e))))?;
        match self.transport.send(message).await {
            Ok(r) => Ok(r.code().to_string()),
            Err(e) => Err(match e.status() {
                Some(code) => EmailError::Refused {
                    code: code.to_string(),
                    kind: if e.is_permanent() {
                        "permanent"
                    } else {
                        "transient"
                    },
                },
                None if e.is_timeout() => EmailError::Failed("timed out".into()),
                None => EmailError::Failed(without_response(&e)),
            }),
        }
    }
}

/// The kind of a message-building error, without its text (which may quote
/// the address).
fn kind_of(e: &lettre::error::Error) -> &'static str {
    match e {
        lettre::error::Error::MissingFrom => "no sender",
        lettre::error::Error::MissingTo => "no recipient",
        _ => "invalid",
    }
}

/// A transport error without any reply text from the relay (which may quote
/// the recipient).
fn without_response(e: &lettre::transport::smtp::Error) -> String {
    // TLS and client errors carry lettre's or rustls' own text (e.g.
    // "invalid peer certificate: UnknownIssuer", "No compatible
    // authentication mechanism was found"), never the relay's.
    let source = || {
        std::error::Error::source(e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default()
    };
    if e.is_tls() {
        format!("TLS failed{}", source())
    } else if e.is_client() {
        format!("client error{}", source())
    } else if e.is_response() {
        "unreadable reply".into()
    } else {
        // Connection errors (refused, reset, a failed TLS handshake such as
        // an untrusted certificate): the innermost error names the cause;
        // lettre wraps it once per layer ("Connection error: Connection
        // error: …"), which says nothing more.
        let mut inner: &dyn std::error::Error = e;
        while let Some(s) = inner.source() {
            inner = s;
        }
        format!("connection failed: {inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(s: &str, t: &str) -> EmailTemplate {
        EmailTemplate {
            subject: s.into(),
            text: t.into(),
        }
    }

    #[test]
    fn templates_fall_back_and_fill_in() {
        let t = EmailTemplates::new(
            BTreeMap::from([
                (
                    (String::new(), "en".into()),
                    tpl("{brand} code", "Code {code}, {minutes} min"),
                ),
                (
                    ("acme".into(), "de".into()),
                    tpl("Ihr {brand}-Code", "Code: {code} ({seconds} s)"),
                ),
            ]),
            BTreeMap::from([("acme".into(), "Acme Bank".into())]),
        );
        let r = t.render("acme", "de", "123456", Duration::from_secs(90));
        assert_eq!(r.subject, "Ihr Acme Bank-Code");
        assert_eq!(&*r.text, "Code: 123456 (90 s)");
        // acme in French → every brand's English, the brand's name in it.
        let r = t.render("acme", "fr", "0042", Duration::from_secs(90));
        assert_eq!(r.subject, "Acme Bank code");
        assert_eq!(&*r.text, "Code 0042, 2 min");
        // Nothing configured: the built-in one, the code in the text only.
        let r = EmailTemplates::default().render("", "en", "987654", Duration::from_secs(60));
        assert_eq!(r.subject, "Your voxgate verification code");
        assert!(r.text.contains("987654") && r.text.contains("1 min"));
        assert!(!r.subject.contains("987654"));
    }

    #[test]
    fn a_bad_address_is_refused_before_any_connection() {
        let cfg = EmailConfig {
            smtp: crate::config::email::SmtpConfig {
                host: "127.0.0.1".into(),
                port: 9,
                tls: SmtpTls::None,
                username_env: Some("U".into()),
                password_env: Some("P".into()),
                timeout: Duration::from_secs(1),
                ca_file: None,
            },
            from: "codes@example.com".into(),
            same_code: true,
            templates: BTreeMap::new(),
            brand_names: BTreeMap::new(),
        };
        let e = build_with_env(&cfg, &|_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "email.smtp.username_env: environment variable U is not set"
        );
        let email = build_with_env(&cfg, &|v| Some(format!("{v}-value"))).unwrap();
        assert_eq!(email.relay(), "smtp:127.0.0.1");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let msg = email
            .templates
            .render("", "en", "123456", Duration::from_secs(60));
        let e = rt.block_on(email.send("not an address", &msg)).unwrap_err();
        assert_eq!(e, EmailError::BadAddress);
        // Nothing listens on port 9: a connection error naming no secret.
        let e = rt.block_on(email.send("a@example.com", &msg)).unwrap_err();
        assert!(matches!(e, EmailError::Failed(_)), "{e:?}");
        assert!(!e.to_string().contains("a@example.com"), "{e}");
    }

    #[test]
    fn a_ca_file_that_is_missing_or_no_pem_stops_the_start() {
        let dir = std::env::temp_dir().join(format!("voxgate-email-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        for (file, want) in [
            (dir.join("missing.pem"), "missing.pem: No such file"),
            (not_pem, "not.pem: no PEM certificate in it"),
        ] {
            let cfg = EmailConfig {
                smtp: crate::config::email::SmtpConfig {
                    host: "relay.example.com".into(),
                    port: 587,
                    tls: SmtpTls::StartTls,
                    username_env: None,
                    password_env: None,
                    timeout: Duration::from_secs(1),
                    ca_file: Some(file),
                },
                from: "codes@example.com".into(),
                same_code: true,
                templates: BTreeMap::new(),
                brand_names: BTreeMap::new(),
            };
            let e = build_with_env(&cfg, &|_| None).unwrap_err().to_string();
            assert!(
                e.starts_with("email: smtp.ca_file ") && e.contains(want),
                "{e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
