//! One-time codes kept in the store ([`StoreCodes`]): drawn from the OS's
//! CSPRNG, stored only as a MAC (`store::codes`), judged against the
//! server's abuse limits and lockout inside the store's transactions, and
//! handed to the brand's SMS gateway with the message template; every
//! message handed over is recorded as a delivery for the receipts to update.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use rand::TryRngCore;
use zeroize::Zeroizing;

use super::sms::{Sms, SmsMessage};
use super::{
    BoxFut, CodeChannel, CodeCheck, CodeEntry, CodeRequest, CodeService, SendLimit, SendResult,
    ServiceError,
};
use crate::config::{CodePolicy, Resend};
use crate::events::mask_number;
use crate::store::codes::{
    code_mac, CheckOutcome, Limit, NewCode, SendDecision, SendRules, Window,
};
use crate::store::deliveries::{DeliveryStatus, NewDelivery};
use crate::store::{SecretKey, Store, StoreError};

/// The code service `serve` uses.
pub struct StoreCodes {
    store: Arc<Store>,
    /// The codes' MAC key, derived from the server key.
    mac_key: Zeroizing<[u8; 32]>,
    policy: CodePolicy,
    sms: Arc<Sms>,
}

impl StoreCodes {
    /// Codes in `store`, their MACs keyed from `key`, sent through `sms`.
    pub fn new(store: Arc<Store>, key: &SecretKey, policy: CodePolicy, sms: Arc<Sms>) -> Self {
        StoreCodes {
            store,
            mac_key: key.subkey(b"one-time codes"),
            policy,
            sms,
        }
    }

    fn rules(&self, cooldown_ms: i64) -> SendRules {
        let p = &self.policy;
        SendRules {
            cooldown_ms,
            cancel_previous: p.resend == Resend::New,
            per_destination: Window {
                hour: p.per_destination.hour,
                day: p.per_destination.day,
            },
            per_caller: Window {
                hour: p.per_caller.hour,
                day: p.per_caller.day,
            },
            max_failures: p.max_failures,
            lockout_ms: millis_of(p.lockout_window),
        }
    }
}

fn millis_of(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, millis_of)
}

fn failed(e: StoreError) -> ServiceError {
    ServiceError::Failed(format!("code store: {e}"))
}

/// Run blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Failed(format!("code store: {e}")))?
        .map_err(failed)
}

/// `len` decimal digits, each uniform, from the OS's CSPRNG.
fn draw_code(len: u32) -> Result<Zeroizing<String>, ServiceError> {
    let mut rng = OsRng;
    let mut s = Zeroizing::new(String::with_capacity(len as usize));
    for _ in 0..len {
        // Rejection sampling: a byte below 250 maps to a digit without bias.
        let d = loop {
            let mut b = [0u8; 1];
            rng.try_fill_bytes(&mut b)
                .map_err(|e| ServiceError::Failed(format!("OS random source: {e}")))?;
            if b[0] < 250 {
                break b[0] % 10;
            }
        };
        s.push(char::from(b'0' + d));
    }
    Ok(s)
}

/// A random code id (128 bits, hex).
fn draw_id() -> Result<String, ServiceError> {
    let mut b = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut b)
        .map_err(|e| ServiceError::Failed(format!("OS random source: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn limit_of(l: Limit) -> SendLimit {
    match l {
        Limit::DestinationHour => SendLimit::DestinationHourly,
        Limit::DestinationDay => SendLimit::DestinationDaily,
        Limit::CallerHour => SendLimit::CallerHourly,
        Limit::CallerDay => SendLimit::CallerDaily,
    }
}

fn channel_name(c: CodeChannel) -> &'static str {
    match c {
        CodeChannel::Sms => "sms",
        CodeChannel::Voice => "voice",
    }
}

impl CodeService for StoreCodes {
    fn send<'a>(&'a self, req: &'a CodeRequest) -> BoxFut<'a, Result<SendResult, ServiceError>> {
        Box::pin(async move {
            if req.channel != CodeChannel::Sms {
                return Err(ServiceError::Unavailable(format!(
                    "no {} channel for codes is configured",
                    channel_name(req.channel)
                )));
            }
            let Some((gateway_name, _)) = self.sms.gateway_for(&req.brand) else {
                return Err(ServiceError::Unavailable(
                    "no SMS gateway is configured for this brand".into(),
                ));
            };
            let gateway_name = gateway_name.to_string();
            let code = draw_code(req.length.clamp(4, 10))?;
            let id = draw_id()?;
            let mac = code_mac(&self.mac_key, &id, &code);
            let now = millis(req.now);
            let rules = self.rules(millis_of(req.resend_cooldown));
            let decision = {
                let store = self.store.clone();
                let (id, subject) = (id.clone(), req.subject.key());
                let account = req.subject.account_id().map(str::to_string);
                let (call_id, destination) = (req.call_id.clone(), req.to.as_str().to_string());
                let caller = req.caller.as_ref().map(|c| c.as_str().to_string());
                let (expires, max_attempts) = (
                    now.saturating_add(millis_of(req.ttl)),
                    req.max_attempts.max(1),
                );
                let channel = channel_name(req.channel);
                blocking(move || {
                    store.begin_send(
                        &NewCode {
                            id: &id,
                            subject: &subject,
                            account_id: account.as_deref(),
                            call_id: &call_id,
                            channel,
                            destination: &destination,
                            caller: caller.as_deref(),
                            mac: &mac,
                            now_ms: now,
                            expires_at_ms: expires,
                            max_attempts,
                        },
                        &rules,
                    )
                })
                .await?
            };
            match decision {
                SendDecision::Send => {}
                SendDecision::StillValid => return Ok(SendResult::StillValid),
                SendDecision::Limited(l) => return Ok(SendResult::RateLimited(limit_of(l))),
                SendDecision::Locked => return Ok(SendResult::Locked),
            }
            let body = self
                .sms
                .templates
                .render(&req.brand, &req.language, &code, req.ttl);
            drop(code);
            let msg = SmsMessage {
                to: req.to.clone(),
                body,
            };
            let Some((_, gateway)) = self.sms.gateway_for(&req.brand) else {
                return Err(ServiceError::Unavailable(
                    "the SMS gateway went away".into(),
                ));
            };
            let sent = gateway.send(&msg).await;
            drop(msg);
            let to_masked = mask_number(req.to.as_str());
            let at_ms = millis(SystemTime::now());
            let (status, message_id, error) = match &sent {
                Ok(a) => (a.status, a.message_id.clone(), None),
                Err(e) => (DeliveryStatus::Failed, None, Some(e.to_string())),
            };
            let store = self.store.clone();
            let (gw, code_id) = (gateway_name.clone(), id.clone());
            let mid = message_id.clone();
            let recorded = blocking(move || {
                if status == DeliveryStatus::Failed {
                    store.code_undeliverable(&code_id)?;
                }
                store.add_delivery(&NewDelivery {
                    code_id: Some(&code_id),
                    channel: "sms",
                    gateway: &gw,
                    message_id: mid.as_deref(),
                    to_masked: &to_masked,
                    status,
                    error: error.as_deref(),
                    at_ms,
                })
            })
            .await;
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "code delivery not recorded");
            }
            sent.map(|_| SendResult::Sent {
                gateway: gateway_name,
                message_id,
            })
        })
    }

    fn verify<'a>(&'a self, entry: CodeEntry<'a>) -> BoxFut<'a, Result<CodeCheck, ServiceError>> {
        Box::pin(async move {
            let store = self.store.clone();
            let key = self.mac_key.clone();
            let subject = entry.subject.key();
            let account = entry.subject.account_id().map(str::to_string);
            let entered = Zeroizing::new(entry.entered.to_string());
            let now = millis(entry.now);
            let rules = self.rules(0);
            let out = blocking(move || {
                store.check_code(&key, &subject, account.as_deref(), &entered, now, &rules)
            })
            .await?;
            Ok(match out {
                CheckOutcome::Accepted => CodeCheck::Ok,
                CheckOutcome::Wrong => CodeCheck::Wrong,
                CheckOutcome::Burnt => CodeCheck::Exhausted,
                CheckOutcome::Expired => CodeCheck::Expired,
                CheckOutcome::NoCode => CodeCheck::NotSent,
                CheckOutcome::Locked => CodeCheck::Locked,
            })
        })
    }
}
