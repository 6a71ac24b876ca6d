//! Text messages: the `sms:` part of the config — the gateways, which brand
//! uses which, and the message templates, checked for length at load time.
//!
//! ```yaml
//! sms:
//!   default: twilio_main          # the gateway of brands `brands:` does not name
//!   brands: { globex: globex_api }
//!   max_segments: 1               # longest message allowed, in SMS segments
//!   brand_names: { acme: "Acme Bank" }
//!   templates:
//!     "*":   { en: "Your {brand} code is {code}. It expires in {minutes} min." }
//!     acme:  { de: "Ihr {brand}-Code: {code} (gültig {minutes} Min.)" }
//!   gateways:
//!     twilio_main:
//!       type: twilio
//!       account_sid: AC0123456789abcdef0123456789abcdef
//!       auth_token_env: TWILIO_AUTH_TOKEN   # the token's environment variable
//!       from: "+15005550006"                # or messaging_service_sid: MG…
//!       # base_url: https://api.twilio.com
//!       timeout: 5s                         # each attempt
//!       retries: 2                          # on 5xx and network errors only
//!       retry_backoff: 500ms                # doubled after each retry
//!     globex_api:
//!       type: webhook
//!       url: https://sms.example/v1/send
//!       headers: { Authorization: "Bearer ${env.SMS_API_KEY}" }
//!       body: '{"to": "{to}", "text": "{body}"}'
//!       message_id: /id                     # JSON pointer into the answer
//! ```
//!
//! Every template is rendered in its worst case (a 10-digit code, a 15-minute
//! lifetime, the longest brand name it can carry) and refused when that
//! takes more than `max_segments` segments (GSM-7: 160 septets alone, 153 per
//! segment; UCS-2: 70 / 67 UTF-16 units). Errors carry `file:line:col`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::segments::{self, SmsLength};
use super::{check_brand, parse_duration, ConfigError};

/// The `templates:` key whose texts serve every brand.
pub const ANY_BRAND: &str = "*";

/// Twilio's API when `base_url` is not set.
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 4] = ["code", "minutes", "seconds", "brand"];

/// The longest code a flow may ask for: templates are measured with it.
pub const WORST_CODE: &str = "0000000000";
/// `{minutes}` and `{seconds}` of the longest lifetime a flow may give (15 min).
const WORST_MINUTES: &str = "15";
const WORST_SECONDS: &str = "900";

/// The `sms:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct SmsConfig {
    /// Gateways by name.
    pub gateways: BTreeMap<String, SmsGatewayConfig>,
    /// The gateway of brands `brands` does not name; when the file names
    /// none and there is exactly one gateway, that one.
    pub default: Option<String>,
    /// Brand → gateway name.
    pub brands: BTreeMap<String, String>,
    /// (brand, language) → text; brand "" is every brand's (`"*"` in the file).
    pub templates: BTreeMap<(String, String), String>,
    /// Brand → the name messages call it by.
    pub brand_names: BTreeMap<String, String>,
    /// Most segments a rendered message may take (default 1).
    pub max_segments: u32,
    /// `http.public_url` when the HTTP endpoint is configured: Twilio
    /// gateways then ask for status callbacks at
    /// `{public_url}/sms/status/{gateway}`.
    pub public_url: Option<String>,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            gateways: BTreeMap::new(),
            default: None,
            brands: BTreeMap::new(),
            templates: BTreeMap::new(),
            brand_names: BTreeMap::new(),
            max_segments: 1,
            public_url: None,
        }
    }
}

/// One gateway.
#[derive(Clone, Debug, PartialEq)]
pub enum SmsGatewayConfig {
    /// Twilio's (or a compatible) Messages API.
    Twilio(TwilioConfig),
    /// A JSON POST to any URL.
    Webhook(WebhookSmsConfig),
}

/// Timeouts and retries of a gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Limit of each attempt, connecting to the last byte (default 5 s).
    pub timeout: Duration,
    /// Extra attempts after a 5xx answer, a network error or an attempt's
    /// timeout (default 2); never after a 4xx.
    pub retries: u32,
    /// Wait before the first retry, doubled for each further one (default 500 ms).
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: Duration::from_secs(5),
            retries: 2,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Who a Twilio message is from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TwilioSender {
    /// `From`: a number (E.164) or alphanumeric sender id.
    From(String),
    /// `MessagingServiceSid` (`MG…`): Twilio picks the sender.
    MessagingService(String),
}

/// `type: twilio`.
#[derive(Clone, Debug, PartialEq)]
pub struct TwilioConfig {
    /// API root (default [`TWILIO_BASE_URL`]; tests point it at a local server).
    pub base_url: String,
    /// `AC…`: the account, and the basic-auth user.
    pub account_sid: String,
    /// The environment variable holding the auth token (never the token itself).
    pub auth_token_env: String,
    /// The sender.
    pub sender: TwilioSender,
    /// Timeouts and retries.
    pub retry: RetryPolicy,
}

/// `type: webhook`.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookSmsConfig {
    /// Where to POST.
    pub url: String,
    /// Request headers; values may hold `${env.NAME}`, filled from the
    /// environment when `serve` starts. Never logged.
    pub headers: BTreeMap<String, String>,
    /// The JSON body with `{to}` and `{body}` placeholders (filled in
    /// JSON-escaped, so they belong inside string quotes).
    pub body: String,
    /// JSON pointer to the message id in the answer (`/id`); `None`: none recorded.
    pub message_id: Option<String>,
    /// Timeouts and retries.
    pub retry: RetryPolicy,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSms {
    default: Option<Spanned<String>>,
    brands: Option<BTreeMap<String, Spanned<String>>>,
    max_segments: Option<Spanned<u32>>,
    brand_names: Option<BTreeMap<String, Spanned<String>>>,
    templates: Option<BTreeMap<String, BTreeMap<String, Spanned<String>>>>,
    gateways: Option<BTreeMap<String, RawGateway>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    base_url: Option<Spanned<String>>,
    account_sid: Option<Spanned<String>>,
    auth_token_env: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    messaging_service_sid: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
    body: Option<Spanned<String>>,
    message_id: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    retries: Option<Spanned<u32>>,
    retry_backoff: Option<Spanned<String>>,
}

/// Builds `file:line:col` errors.
struct At<'a>(&'a str);

impl At<'_> {
    fn err(&self, loc: &Location, message: String) -> ConfigError {
        if loc.line() == 0 {
            return ConfigError::Semantic {
                path: self.0.to_string(),
                message,
            };
        }
        ConfigError::Invalid {
            path: self.0.to_string(),
            line: loc.line() as usize,
            col: loc.column() as usize,
            message,
        }
    }
}

fn http_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

impl RawSms {
    /// Check and convert; `path` labels errors.
    pub(super) fn into_config(self, path: &str) -> Result<SmsConfig, ConfigError> {
        let at = At(path);
        let mut c = SmsConfig::default();
        for (name, g) in self.gateways.unwrap_or_default() {
            let gw = g.into_config(&name, &at)?;
            c.gateways.insert(name, gw);
        }
        let known = || c.gateways.keys().cloned().collect::<Vec<_>>().join(", ");
        let check_gateway = |who: String, g: &Spanned<String>| -> Result<String, ConfigError> {
            if c.gateways.contains_key(&g.value) {
                Ok(g.value.clone())
            } else {
                Err(at.err(
                    &g.referenced,
                    format!(
                        "{who}: no gateway `{}` in sms.gateways (known: {})",
                        g.value,
                        known()
                    ),
                ))
            }
        };
        c.default = match &self.default {
            Some(d) => Some(check_gateway("sms.default".into(), d)?),
            None if c.gateways.len() == 1 => c.gateways.keys().next().cloned(),
            None => None,
        };
        for (brand, g) in self.brands.unwrap_or_default() {
            check_brand(&brand).map_err(|e| at.err(&g.referenced, format!("sms.brands: {e}")))?;
            let gw = check_gateway(format!("sms.brands.{brand}"), &g)?;
            c.brands.insert(brand, gw);
        }
        if let Some(m) = self.max_segments {
            if !(1..=10).contains(&m.value) {
                return Err(at.err(
                    &m.referenced,
                    format!("sms.max_segments: {} is outside 1..10", m.value),
                ));
            }
            c.max_segments = m.value;
        }
        for (brand, n) in self.brand_names.unwrap_or_default() {
            check_brand(&brand)
                .map_err(|e| at.err(&n.referenced, format!("sms.brand_names: {e}")))?;
            if n.value.trim().is_empty() || n.value.chars().count() > 40 {
                return Err(at.err(
                    &n.referenced,
                    format!("sms.brand_names.{brand}: 1 to 40 characters"),
                ));
            }
            c.brand_names.insert(brand, n.value);
        }
        let mut spans = Vec::new();
        for (brand, by_lang) in self.templates.unwrap_or_default() {
            for (lang, text) in by_lang {
                let key = format!("sms.templates.{brand}.{lang}");
                if brand != ANY_BRAND {
                    check_brand(&brand)
                        .map_err(|e| at.err(&text.referenced, format!("{key}: {e}")))?;
                }
                check_language(&lang)
                    .map_err(|e| at.err(&text.referenced, format!("{key}: {e}")))?;
                check_placeholders(&text.value)
                    .map_err(|e| at.err(&text.referenced, format!("{key}: {e}")))?;
                let b = if brand == ANY_BRAND {
                    String::new()
                } else {
                    brand.clone()
                };
                spans.push((key, b.clone(), text.referenced));
                c.templates.insert((b, lang), text.value);
            }
        }
        for (key, brand, loc) in spans {
            let text = lang_text(&c, &brand, &key);
            let (len, name) = c.worst_case(&brand, text);
            if len.segments > c.max_segments as usize {
                return Err(at.err(
                    &loc,
                    format!(
                        "{key}: {} segments in {} ({} {}) at worst (a 10-digit code, brand name \"{name}\"); at most {} allowed (sms.max_segments); shorten it{}",
                        len.segments,
                        len.encoding.as_str(),
                        len.units,
                        match len.encoding {
                            segments::SmsEncoding::Gsm7 => "septets",
                            segments::SmsEncoding::Ucs2 => "UTF-16 units",
                        },
                        c.max_segments,
                        match len.encoding {
                            segments::SmsEncoding::Gsm7 => "",
                            segments::SmsEncoding::Ucs2 => " or keep to the GSM-7 alphabet",
                        }
                    ),
                ));
            }
        }
        Ok(c)
    }
}

/// The text stored under `key` (`sms.templates.<brand>.<lang>`).
fn lang_text<'a>(c: &'a SmsConfig, brand: &str, key: &str) -> &'a str {
    let lang = key.rsplit('.').next().unwrap_or("");
    c.templates
        .get(&(brand.to_string(), lang.to_string()))
        .map_or("", String::as_str)
}

impl SmsConfig {
    /// The names a message of `brand`'s template can carry ("" = the
    /// every-brand template: any brand's, and `voxgate` for calls without one).
    fn names_for(&self, brand: &str) -> Vec<String> {
        let name_of = |b: &str| {
            self.brand_names
                .get(b)
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| b.to_string())
        };
        if !brand.is_empty() {
            return vec![name_of(brand)];
        }
        let mut names = vec!["voxgate".to_string()];
        let brands = self
            .brand_names
            .keys()
            .chain(self.brands.keys())
            .chain(self.templates.keys().map(|(b, _)| b))
            .filter(|b| !b.is_empty());
        names.extend(brands.map(|b| name_of(b)));
        names
    }

    /// `text` rendered at its longest for `brand`: its length and the
    /// brand name that makes it so.
    pub fn worst_case(&self, brand: &str, text: &str) -> (SmsLength, String) {
        let mut worst: Option<(SmsLength, String)> = None;
        for name in self.names_for(brand) {
            let rendered = text
                .replace("{brand}", &name)
                .replace("{minutes}", WORST_MINUTES)
                .replace("{seconds}", WORST_SECONDS)
                .replace("{code}", WORST_CODE);
            let len = segments::measure(&rendered);
            let worse = worst
                .as_ref()
                .is_none_or(|(w, _)| (len.segments, len.units) > (w.segments, w.units));
            if worse {
                worst = Some((len, name));
            }
        }
        worst.unwrap_or((segments::measure(text), String::new()))
    }
}

/// `en`, `de`, `pt-BR`, `es-419`.
fn check_language(l: &str) -> Result<(), String> {
    let mut parts = l.split('-');
    let main = parts.next().unwrap_or("");
    let ok = (2..=3).contains(&main.len())
        && main.chars().all(|c| c.is_ascii_lowercase())
        && parts
            .all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{l}` is not a language tag (write e.g. en, de, pt-BR)"
        ))
    }
}

/// `{code}` present; no unknown `{name}`.
fn check_placeholders(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        if let Some(end) = after.find('}') {
            let name = &after[..end];
            let word =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if word && !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder `{{{name}}}` (use {{code}}, {{minutes}}, {{seconds}}, {{brand}})"
                ));
            }
        }
        rest = after;
    }
    if !text.contains("{code}") {
        return Err("the text has no `{code}`: the message would not carry the code".into());
    }
    Ok(())
}

impl RawGateway {
    fn into_config(self, name: &str, at: &At<'_>) -> Result<SmsGatewayConfig, ConfigError> {
        let key = |f: &str| format!("sms.gateways.{name}.{f}");
        check_brand(name).map_err(|_| {
            at.err(
                &self.kind.referenced,
                format!("sms.gateways.{name}: a gateway name is letters, digits, `_` and `-`, at most 64 (it is part of the status callback URL)"),
            )
        })?;
        let dur =
            |f: &str, v: &Option<Spanned<String>>, d: Duration| -> Result<Duration, ConfigError> {
                match v {
                    None => Ok(d),
                    Some(s) => parse_duration(&s.value)
                        .map_err(|e| at.err(&s.referenced, format!("{}: {e}", key(f)))),
                }
            };
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            timeout: dur("timeout", &self.timeout, defaults.timeout)?,
            retries: self.retries.as_ref().map_or(defaults.retries, |r| r.value),
            backoff: dur("retry_backoff", &self.retry_backoff, defaults.backoff)?,
        };
        if retry.timeout.is_zero() || retry.timeout > Duration::from_secs(30) {
            let loc = self
                .timeout
                .as_ref()
                .map_or(self.kind.referenced, |t| t.referenced);
            return Err(at.err(
                &loc,
                format!(
                    "{}: between 1ms and 30s (a caller is waiting)",
                    key("timeout")
                ),
            ));
        }
        if let Some(r) = &self.retries {
            if r.value > 5 {
                return Err(at.err(
                    &r.referenced,
                    format!("{}: {} is more than 5", key("retries"), r.value),
                ));
            }
        }
        let missing = |f: &str| {
            at.err(
                &self.kind.referenced,
                format!(
                    "sms.gateways.{name}: `{f}` is required for type {}",
                    self.kind.value
                ),
            )
        };
        let not_for = |f: &str, v: &Option<Spanned<String>>| -> Result<(), ConfigError> {
            match v {
                Some(s) => Err(at.err(
                    &s.referenced,
                    format!("{}: not a field of type {}", key(f), self.kind.value),
                )),
                None => Ok(()),
            }
        };
        match self.kind.value.as_str() {
            "twilio" => {
                not_for("url", &self.url)?;
                not_for("body", &self.body)?;
                not_for("message_id", &self.message_id)?;
                if self.headers.is_some() {
                    return Err(at.err(
                        &self.kind.referenced,
                        format!("{}: not a field of type twilio", key("headers")),
                    ));
                }
                let base_url = match &self.base_url {
                    Some(u) if !http_url(&u.value) => {
                        return Err(at.err(
                            &u.referenced,
                            format!(
                                "{}: `{}` must start with http:// or https://",
                                key("base_url"),
                                u.value
                            ),
                        ))
                    }
                    Some(u) => u.value.trim_end_matches('/').to_string(),
                    None => TWILIO_BASE_URL.to_string(),
                };
                let sid = self
                    .account_sid
                    .as_ref()
                    .ok_or_else(|| missing("account_sid"))?;
                if !(sid.value.starts_with("AC")
                    && sid.value.len() == 34
                    && sid.value.chars().all(|c| c.is_ascii_alphanumeric()))
                {
                    return Err(at.err(
                        &sid.referenced,
                        format!(
                            "{}: `{}` is not an account SID (AC followed by 32 hex digits)",
                            key("account_sid"),
                            sid.value
                        ),
                    ));
                }
                let env = self
                    .auth_token_env
                    .as_ref()
                    .ok_or_else(|| missing("auth_token_env"))?;
                if env.value.is_empty()
                    || !env
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(at.err(
                        &env.referenced,
                        format!("{}: the NAME of the environment variable holding the token (never the token itself)", key("auth_token_env")),
                    ));
                }
                let sender = match (&self.from, &self.messaging_service_sid) {
                    (Some(f), None) => TwilioSender::From(f.value.clone()),
                    (None, Some(m)) => TwilioSender::MessagingService(m.value.clone()),
                    (Some(_), Some(m)) => {
                        return Err(at.err(
                            &m.referenced,
                            format!(
                                "sms.gateways.{name}: `from` or `messaging_service_sid`, not both"
                            ),
                        ))
                    }
                    (None, None) => return Err(missing("from` or `messaging_service_sid")),
                };
                Ok(SmsGatewayConfig::Twilio(TwilioConfig {
                    base_url,
                    account_sid: sid.value.clone(),
                    auth_token_env: env.value.clone(),
                    sender,
                    retry,
                }))
            }
            "webhook" => {
                for (f, v) in [
                    ("base_url", &self.base_url),
                    ("account_sid", &self.account_sid),
                    ("auth_token_env", &self.auth_token_env),
                    ("from", &self.from),
                    ("messaging_service_sid", &self.messaging_service_sid),
                ] {
                    not_for(f, v)?;
                }
                let url = self.url.as_ref().ok_or_else(|| missing("url"))?;
                if !http_url(&url.value) {
                    return Err(at.err(
                        &url.referenced,
                        format!(
                            "{}: `{}` must start with http:// or https://",
                            key("url"),
                            url.value
                        ),
                    ));
                }
                let body = self.body.as_ref().ok_or_else(|| missing("body"))?;
                check_body_template(&body.value)
                    .map_err(|e| at.err(&body.referenced, format!("{}: {e}", key("body"))))?;
                if let Some(p) = &self.message_id {
                    if !(p.value.is_empty() || p.value.starts_with('/')) {
                        return Err(at.err(
                            &p.referenced,
                            format!(
                                "{}: `{}` is not a JSON pointer (write e.g. /id)",
                                key("message_id"),
                                p.value
                            ),
                        ));
                    }
                }
                Ok(SmsGatewayConfig::Webhook(WebhookSmsConfig {
                    url: url.value.clone(),
                    headers: self
                        .headers
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.value))
                        .collect(),
                    body: body.value.clone(),
                    message_id: self.message_id.map(|m| m.value),
                    retry,
                }))
            }
            other => Err(at.err(
                &self.kind.referenced,
                format!("sms.gateways.{name}.type: `{other}`; expected twilio or webhook"),
            )),
        }
    }
}

/// `{to}` and `{body}` each used, inside JSON strings, and the result a
/// JSON object.
fn check_body_template(t: &str) -> Result<(), String> {
    for p in ["{to}", "{body}"] {
        if !t.contains(p) {
            return Err(format!("`{p}` is missing"));
        }
    }
    let sample = render_body(t, "+15005550006", "Your code is \"0000\"\n");
    match serde_json::from_str::<serde_json::Value>(&sample) {
        Ok(v) if v.is_object() => Ok(()),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!(
            "not JSON once filled in ({e}); placeholders go inside quotes: \"{{body}}\""
        )),
    }
}

/// The webhook body `t` with `{to}` and `{body}` filled in, JSON-escaped.
pub fn render_body(t: &str, to: &str, body: &str) -> String {
    t.replace("{to}", &json_escape(to))
        .replace("{body}", &json_escape(body))
}

/// `s` escaped for the inside of a JSON string (no quotes around it).
fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn parse(yaml: &str) -> Result<SmsConfig, String> {
        Config::parse("c.yaml", yaml)
            .map(|c| c.sms)
            .map_err(|e| e.to_string())
    }

    const GW: &str = "  gateways:\n    tw: { type: twilio, account_sid: AC0123456789abcdef0123456789abcdef, auth_token_env: TW_TOKEN, from: '+15005550006' }\n";

    #[test]
    fn full_config() {
        let c = parse(&format!(
            "sms:\n  brands: {{ acme: hook }}\n  brand_names: {{ acme: Acme Bank }}\n  templates:\n    '*': {{ en: 'Code {{code}} for {{brand}}' }}\n    acme: {{ de: 'Code {{code}}, {{minutes}} Min.' }}\n{GW}    hook: {{ type: webhook, url: 'https://x/send', body: '{{\"to\":\"{{to}}\",\"text\":\"{{body}}\"}}', message_id: /id, headers: {{ X-Key: '${{env.K}}' }}, retries: 0, timeout: 2s }}\n  default: tw\nhttp: {{ listen: 127.0.0.1:8089, public_url: 'https://ivr.example.com/' }}\n"
        ))
        .unwrap();
        assert_eq!(c.default.as_deref(), Some("tw"));
        assert_eq!(c.brands["acme"], "hook");
        assert_eq!(
            c.templates[&(String::new(), "en".into())],
            "Code {code} for {brand}"
        );
        assert_eq!(c.public_url.as_deref(), Some("https://ivr.example.com"));
        let SmsGatewayConfig::Twilio(t) = &c.gateways["tw"] else {
            panic!()
        };
        assert_eq!(t.base_url, TWILIO_BASE_URL);
        assert_eq!(t.sender, TwilioSender::From("+15005550006".into()));
        assert_eq!(t.retry, RetryPolicy::default());
        let SmsGatewayConfig::Webhook(w) = &c.gateways["hook"] else {
            panic!()
        };
        assert_eq!(w.retry.retries, 0);
        assert_eq!(w.retry.timeout, Duration::from_secs(2));
        assert_eq!(w.message_id.as_deref(), Some("/id"));
        assert_eq!(w.headers["X-Key"], "${env.K}");
    }

    /// The example in voxgate.yaml's comments, uncommented.
    #[test]
    fn the_shipped_example_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("voxgate.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("\nsms:\n").unwrap();
        let yaml: String = text[start..]
            .lines()
            .map(|l| {
                // `  #   key: …` → `    key: …` (the `# ` taken out, so the
                // indentation stays); prose and aligned comments stay.
                let t = l.trim_start();
                let indent = l.len() - t.len();
                let rest = t.strip_prefix("# ").unwrap_or("");
                let key = rest.trim_start().split(':').next().unwrap_or("");
                let is_key = rest.contains(':')
                    && !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_alphanumeric() || "_\"*".contains(c));
                if indent <= 2 && is_key {
                    format!("{}{rest}", &l[..indent])
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse("voxgate.yaml", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(c.sms.default.as_deref(), Some("twilio_main"));
        assert_eq!(c.sms.brands["globex"], "globex_api");
        assert_eq!(c.sms.gateways.len(), 2);
        assert!(c.sms.templates.contains_key(&("acme".into(), "de".into())));
        assert_eq!(c.http.unwrap().public_url, "https://ivr.example.com");
        // The e-mail example after it.
        let email = c.email.expect("the email: example");
        assert_eq!(email.smtp.username_env.as_deref(), Some("SMTP_USER"));
        assert_eq!(email.templates.len(), 1);
    }

    #[test]
    fn one_gateway_is_the_default() {
        let c = parse(&format!("sms:\n{GW}")).unwrap();
        assert_eq!(c.default.as_deref(), Some("tw"));
        assert_eq!(parse("").unwrap(), SmsConfig::default());
    }

    #[test]
    fn errors_point_at_the_value() {
        for (yaml, want) in [
            (format!("sms:\n  default: nope\n{GW}"), "c.yaml:2:12: sms.default: no gateway `nope` in sms.gateways (known: tw)"),
            (format!("sms:\n{GW}  brands:\n    acme: tw2\n"), "c.yaml:5:11: sms.brands.acme: no gateway `tw2`"),
            ("sms:\n  templates:\n    acme:\n      en: 'Hello {brand}'\n".into(), "c.yaml:4:11: sms.templates.acme.en: the text has no `{code}`"),
            ("sms:\n  templates:\n    acme:\n      en: 'Code {code} {cdoe}'\n".into(), "unknown placeholder `{cdoe}`"),
            ("sms:\n  gateways:\n    g: { type: carrier-pigeon }\n".into(), "c.yaml:3:16: sms.gateways.g.type: `carrier-pigeon`; expected twilio or webhook"),
            ("sms:\n  gateways:\n    g: { type: twilio, account_sid: AC0123456789abcdef0123456789abcdef, from: x }\n".into(), "`auth_token_env` is required"),
            ("sms:\n  gateways:\n    g: { type: twilio, account_sid: nope, auth_token_env: T, from: x }\n".into(), "not an account SID"),
            ("sms:\n  gateways:\n    g: { type: webhook, url: 'https://x', body: '{\"t\": {body}, \"to\": \"{to}\"}' }\n".into(), "sms.gateways.g.body: not JSON once filled in"),
            ("sms:\n  gateways:\n    g: { type: webhook, url: 'https://x', body: '{\"t\": \"{body}\"}' }\n".into(), "`{to}` is missing"),
            ("sms:\n  gateways:\n    g: { type: webhook, url: 'https://x', from: y, body: '{}' }\n".into(), "sms.gateways.g.from: not a field of type webhook"),
            ("sms:\n  max_segments: 0\n".into(), "c.yaml:2:17: sms.max_segments: 0 is outside 1..10"),
        ] {
            let e = parse(&yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}\n→ {e}");
        }
    }

    #[test]
    fn gsm7_template_over_one_segment_is_refused() {
        // 151 GSM-7 characters + a 10-digit code = 161 septets.
        let long = "a".repeat(151);
        let yaml = format!("sms:\n  templates:\n    '*':\n      en: '{long}{{code}}'\n");
        let e = parse(&yaml).unwrap_err();
        assert!(
            e.starts_with("c.yaml:4:11: sms.templates.*.en: 2 segments in GSM-7 (161 septets)"),
            "{e}"
        );
        assert!(e.contains("at most 1 allowed (sms.max_segments)"), "{e}");
        // 140 + 10 = 150 fits; extension characters count twice: 5 × € = 10 more.
        let ok = format!(
            "sms:\n  templates:\n    '*':\n      en: '{}{{code}}'\n",
            "a".repeat(140)
        );
        parse(&ok).unwrap();
        let euros = format!(
            "sms:\n  templates:\n    '*':\n      en: '{}€€€€€€{{code}}'\n",
            "a".repeat(140)
        );
        assert!(parse(&euros).unwrap_err().contains("162 septets"));
        // Two segments allowed: fine.
        parse(&format!("{yaml}  max_segments: 2\n")).unwrap();
    }

    #[test]
    fn ucs2_template_and_the_longest_brand_name() {
        // 60 Cyrillic letters + 10 digits = 70 UCS-2 units: one segment…
        let t = format!("{}{{code}}", "ж".repeat(60));
        parse(&format!("sms:\n  templates:\n    acme: {{ ru: '{t}' }}\n")).unwrap();
        // …and with the brand's name (2 more) in it, too long.
        let t = format!("{}{{code}}{{brand}}", "ж".repeat(60));
        let e = parse(&format!(
            "sms:\n  brand_names: {{ acme: 'Ac' }}\n  templates:\n    acme: {{ ru: '{t}' }}\n"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("c.yaml:4:17: sms.templates.acme.ru: 2 segments in UCS-2 (72 UTF-16 units) at worst (a 10-digit code, brand name \"Ac\")"),
            "{e}"
        );
        assert!(e.contains("GSM-7 alphabet"), "{e}");
        // The every-brand template is measured with the longest name of all.
        let t = format!("{}{{code}} {{brand}}", "a".repeat(130));
        let e = parse(&format!(
            "sms:\n  brand_names: {{ a: 'Short', b: 'A rather long brand name here' }}\n  templates:\n    '*': {{ en: '{t}' }}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("brand name \"A rather long brand name here\""),
            "{e}"
        );
        // A non-GSM brand name turns a GSM template into UCS-2.
        let t = format!("{}{{code}} {{brand}}", "a".repeat(60));
        let e = parse(&format!(
            "sms:\n  brand_names: {{ a: 'Bankç' }}\n  templates:\n    '*': {{ en: '{t}' }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("in UCS-2"), "{e}");
    }
}
