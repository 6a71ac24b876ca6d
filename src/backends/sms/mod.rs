//! Text messages: the gateways that send them (picked per brand) and the
//! message templates (per brand and language) a code is written into.
//!
//! The message body carries the code, so it is a secret: gateways must not
//! log it and errors must not quote it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{BoxFut, ServiceError};
use crate::config::sms::{SmsConfig, SmsGatewayConfig};
use crate::phone::E164;
use crate::store::deliveries::DeliveryStatus;

mod retry;
pub mod twilio;
pub mod webhook;

/// One message to send.
#[derive(Debug)]
pub struct SmsMessage {
    /// Destination.
    pub to: E164,
    /// The text, with the code in it (a secret).
    pub body: Zeroizing<String>,
}

/// What a gateway answered a send with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsAccepted {
    /// The gateway's id for the message (delivery receipts name it).
    pub message_id: Option<String>,
    /// The status it reported (usually queued).
    pub status: DeliveryStatus,
}

/// A way to send text messages (Twilio's Messages API, a JSON webhook, …).
pub trait SmsGateway: Send + Sync {
    /// Send `msg`, retrying as the gateway's config says; `Err` when it
    /// could not be handed over (the reason names no secret).
    fn send<'a>(&'a self, msg: &'a SmsMessage) -> BoxFut<'a, Result<SmsAccepted, ServiceError>>;

    /// Whether a delivery receipt POSTed to `url` (the public URL it was
    /// sent to) with the form `params` carries the right `signature`;
    /// `None` (the default): this gateway sends no receipts.
    fn verify_receipt(
        &self,
        _url: &str,
        _params: &[(String, String)],
        _signature: &str,
    ) -> Option<bool> {
        None
    }
}

/// What the message says: `{code}`, `{minutes}`, `{seconds}` and `{brand}`
/// filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Templates {
    /// (brand, language) → text; brand "" is every brand's default.
    by_key: BTreeMap<(String, String), String>,
    /// Brand → the name a message calls it by.
    names: BTreeMap<String, String>,
}

/// The text used when the config gives none.
pub const DEFAULT_TEMPLATE: &str =
    "Your {brand} verification code is {code}. It expires in {minutes} min. Never share it.";

impl Default for Templates {
    fn default() -> Self {
        let mut by_key = BTreeMap::new();
        by_key.insert((String::new(), "en".into()), DEFAULT_TEMPLATE.into());
        Templates {
            by_key,
            names: BTreeMap::new(),
        }
    }
}

impl Templates {
    /// Templates from (brand, language, text) and brand display names.
    pub fn new(
        texts: impl IntoIterator<Item = (String, String, String)>,
        names: BTreeMap<String, String>,
    ) -> Self {
        let mut t = Templates::default();
        for (brand, lang, text) in texts {
            t.by_key.insert((brand, lang), text);
        }
        t.names = names;
        t
    }

    /// The text for `brand` in `language`, falling back to the brand's
    /// English, then the default brand's language, then its English.
    pub fn text(&self, brand: &str, language: &str) -> &str {
        let keys = [(brand, language), (brand, "en"), ("", language), ("", "en")];
        keys.iter()
            .find_map(|(b, l)| self.by_key.get(&(b.to_string(), l.to_string())))
            .map_or(DEFAULT_TEMPLATE, String::as_str)
    }

    /// The message for `code`, valid for `ttl`.
    pub fn render(
        &self,
        brand: &str,
        language: &str,
        code: &str,
        ttl: Duration,
    ) -> Zeroizing<String> {
        let name = self
            .names
            .get(brand)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(if brand.is_empty() { "voxgate" } else { brand });
        let minutes = ttl.as_secs().div_ceil(60).max(1).to_string();
        let seconds = ttl.as_secs().to_string();
        Zeroizing::new(
            self.text(brand, language)
                .replace("{brand}", name)
                .replace("{minutes}", &minutes)
                .replace("{seconds}", &seconds)
                .replace("{code}", code),
        )
    }
}

/// The configured gateways, which brand uses which, and the templates.
#[derive(Clone, Default)]
pub struct Sms {
    gateways: BTreeMap<String, Arc<dyn SmsGateway>>,
    default: Option<String>,
    by_brand: BTreeMap<String, String>,
    /// Message texts.
    pub templates: Templates,
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sms")
            .field("gateways", &self.gateways.keys().collect::<Vec<_>>())
            .field("default", &self.default)
            .field("by_brand", &self.by_brand)
            .finish()
    }
}

impl Sms {
    /// Gateways by name; `default` for brands `by_brand` does not name.
    pub fn new(
        gateways: BTreeMap<String, Arc<dyn SmsGateway>>,
        default: Option<String>,
        by_brand: BTreeMap<String, String>,
        templates: Templates,
    ) -> Self {
        Sms {
            gateways,
            default,
            by_brand,
            templates,
        }
    }

    /// The gateway named `name` in the config.
    pub fn gateway(&self, name: &str) -> Option<&dyn SmsGateway> {
        self.gateways.get(name).map(|g| g.as_ref())
    }

    /// No gateway is configured (every SMS send takes `error`).
    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// The gateway (name and sender) for `brand`; `None` when none is configured.
    pub fn gateway_for(&self, brand: &str) -> Option<(&str, &dyn SmsGateway)> {
        let name = self.by_brand.get(brand).or(self.default.as_ref())?;
        self.gateways
            .get_key_value(name)
            .map(|(n, g)| (n.as_str(), g.as_ref()))
    }
}

/// Why the `sms:` config could not be turned into gateways (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum SmsBuildError {
    /// A gateway could not be set up (a missing environment variable, a bad
    /// header); names the variable or header, never a secret.
    #[error("sms.gateways.{gateway}: {reason}")]
    Gateway {
        /// The gateway's name.
        gateway: String,
        /// What is wrong.
        reason: String,
    },
}

/// The gateways, routing and templates of `cfg`; secrets from the process
/// environment.
pub fn build(cfg: &SmsConfig) -> Result<Sms, SmsBuildError> {
    build_with_env(cfg, &|name| std::env::var(name).ok())
}

/// [`build`] with the environment given as `env`.
pub fn build_with_env(
    cfg: &SmsConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Sms, SmsBuildError> {
    let mut gateways: BTreeMap<String, Arc<dyn SmsGateway>> = BTreeMap::new();
    for (name, g) in &cfg.gateways {
        let gw: Arc<dyn SmsGateway> = match g {
            SmsGatewayConfig::Twilio(t) => Arc::new(twilio::TwilioGateway::new(
                name,
                t,
                cfg.public_url.as_deref(),
                env,
            )?),
            SmsGatewayConfig::Webhook(w) => Arc::new(webhook::WebhookGateway::new(name, w, env)?),
        };
        gateways.insert(name.clone(), gw);
    }
    let texts = cfg
        .templates
        .iter()
        .map(|((b, l), t)| (b.clone(), l.clone(), t.clone()));
    Ok(Sms::new(
        gateways,
        cfg.default.clone(),
        cfg.brands.clone(),
        Templates::new(texts, cfg.brand_names.clone()),
    ))
}
