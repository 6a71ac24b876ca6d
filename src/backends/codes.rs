//! One-time codes kept in the store ([`StoreCodes`]): drawn from the OS's
//! CSPRNG, stored only as a MAC (`store::codes`), judged against the
//! server's abuse limits and lockout inside the store's transactions, and
//! handed to the first channel of the request that takes it (the brand's SMS
//! gateway, the e-mail relay), with the same code or a new one on fallback;
//! every try is recorded as a delivery (receipts update the SMS ones).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use rand::TryRngCore;
use zeroize::Zeroizing;

use super::email::Email;
use super::sms::{Sms, SmsMessage};
use super::voice::{CallResult, Voice};
use super::{
    BoxFut, CodeChannel, CodeCheck, CodeEntry, CodeRequest, CodeService, CodeTarget, SendAttempt,
    SendLimit, SendResult, ServiceError,
};
use crate::config::{CodePolicy, Resend};
use crate::phone;
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
    email: Option<Arc<Email>>,
    voice: Option<Arc<Voice>>,
}

impl StoreCodes {
    /// Codes in `store`, their MACs keyed from `key`, sent through `sms`.
    pub fn new(store: Arc<Store>, key: &SecretKey, policy: CodePolicy, sms: Arc<Sms>) -> Self {
        StoreCodes {
            store,
            mac_key: key.subkey(b"one-time codes"),
            policy,
            sms,
            email: None,
            voice: None,
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

/// One decision of the store about a code about to go to `target`.
struct Begin<'r> {
    req: &'r CodeRequest,
    target: &'r CodeTarget,
    id: String,
    mac: Vec<u8>,
    rules: SendRules,
}

impl StoreCodes {
    /// Also send codes by e-mail through `email` (`None`: no e-mail channel).
    pub fn with_email(mut self, email: Option<Arc<Email>>) -> Self {
        self.email = email;
        self
    }

    /// Also read codes out on outbound calls through `voice` (`None`: no
    /// voice channel).
    pub fn with_voice(mut self, voice: Option<Arc<Voice>>) -> Self {
        self.voice = voice;
        self
    }

    /// A fallback to `channel` sends the code that failed to go (else a
    /// new one), as that channel's config says.
    fn same_code(&self, channel: CodeChannel) -> bool {
        match channel {
            CodeChannel::Email => self.email.as_ref().is_none_or(|e| e.same_code),
            CodeChannel::Voice => self.voice.as_ref().is_none_or(|v| v.cfg.same_code),
            CodeChannel::Sms => true,
        }
    }

    /// Why `target` cannot be tried on this server (no gateway for it).
    fn unusable(&self, target: &CodeTarget, brand: &str) -> Option<&'static str> {
        match target.channel {
            CodeChannel::Sms if self.sms.gateway_for(brand).is_none() => {
                Some("no SMS gateway is configured for this brand")
            }
            CodeChannel::Sms => None,
            CodeChannel::Email if self.email.is_none() => Some("no e-mail channel is configured"),
            CodeChannel::Email => None,
            CodeChannel::Voice if self.voice.is_none() => {
                Some("no voice channel for codes is configured (codes_voice)")
            }
            CodeChannel::Voice => None,
        }
    }

    /// Store the code (judged by the limits) before it goes anywhere.
    async fn begin(&self, b: Begin<'_>) -> Result<SendDecision, ServiceError> {
        let req = b.req;
        let store = self.store.clone();
        let subject = req.subject.key();
        let account = req.subject.account_id().map(str::to_string);
        let (call_id, destination) = (req.call_id.clone(), b.target.to.clone());
        let caller = req.caller.as_ref().map(|c| c.as_str().to_string());
        let now = millis(req.now);
        let (expires, max_attempts) = (
            now.saturating_add(millis_of(req.ttl)),
            req.max_attempts.max(1),
        );
        let channel = b.target.channel.as_str();
        let (id, mac, rules) = (b.id, b.mac, b.rules);
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
        .await
    }

    /// Hand `code` to `target`'s gateway and record the delivery.
    async fn deliver(
        &self,
        req: &CodeRequest,
        target: &CodeTarget,
        code_id: &str,
        code: &str,
    ) -> SendAttempt {
        let to_masked = target.masked();
        let mut talk = None;
        let (gateway, status, message_id, error) = match target.channel {
            CodeChannel::Sms => self.deliver_sms(req, target, code).await,
            CodeChannel::Email => self.deliver_email(req, target, code).await,
            CodeChannel::Voice => {
                let (d, length) = self.deliver_voice(req, target, code).await;
                talk = length;
                d
            }
        };
        let attempt = SendAttempt {
            channel: target.channel,
            to_masked,
            gateway,
            message_id,
            error,
        };
        let row = self.record(code_id, &attempt, status).await;
        if let (Some(row), Some(t)) = (row, talk) {
            let store = self.store.clone();
            let ms = millis_of(t);
            if let Err(e) = blocking(move || store.set_delivery_duration(row, ms)).await {
                tracing::warn!(error = %e, "code call length not recorded");
            }
        }
        attempt
    }

    /// Record a try as a delivery of code `code_id` (its row id).
    async fn record(&self, code_id: &str, a: &SendAttempt, status: DeliveryStatus) -> Option<i64> {
        let store = self.store.clone();
        let (gw, id, mid, err, masked) = (
            a.gateway.clone(),
            code_id.to_string(),
            a.message_id.clone(),
            a.error.clone(),
            a.to_masked.clone(),
        );
        let channel = a.channel.as_str();
        let at_ms = millis(SystemTime::now());
        let recorded = blocking(move || {
            store.add_delivery(&NewDelivery {
                code_id: Some(&id),
                channel,
                gateway: &gw,
                message_id: mid.as_deref(),
                to_masked: &masked,
                status,
                error: err.as_deref(),
                at_ms,
            })
        })
        .await;
        match recorded {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "code delivery not recorded");
                None
            }
        }
    }

    /// Read `code` out on a call to `target` (judged by the call limits
    /// first); the delivery and, when answered, the call's length.
    async fn deliver_voice(
        &self,
        req: &CodeRequest,
        target: &CodeTarget,
        code: &str,
    ) -> (
        (String, DeliveryStatus, Option<String>, Option<String>),
        Option<std::time::Duration>,
    ) {
        let failed = |gw: String, e: &str| {
            (
                (gw, DeliveryStatus::Failed, None, Some(e.to_string())),
                None,
            )
        };
        let Some(voice) = &self.voice else {
            return failed(String::new(), "no voice channel for codes is configured");
        };
        let gateway = voice.gateway();
        let Some(caller) = voice.caller.get() else {
            return failed(
                gateway,
                "the voice channel is not ready (SIP has not started)",
            );
        };
        let store = self.store.clone();
        let (to, now) = (target.to.clone(), millis(req.now));
        let limits = voice.cfg.per_destination;
        let judged =
            blocking(move || store.begin_voice_call(&to, now, limits.hour, limits.day)).await;
        match judged {
            Ok(None) => {}
            Ok(Some(crate::store::voice_calls::CallLimit::Hour)) => {
                return failed(
                    gateway,
                    "rate limited: code calls to this number in the last hour",
                );
            }
            Ok(Some(crate::store::voice_calls::CallLimit::Day)) => {
                return failed(
                    gateway,
                    "rate limited: code calls to this number in the last day",
                );
            }
            Err(e) => return failed(gateway, &e.to_string()),
        }
        let mut call = voice.call_for(&target.to, &req.brand, &req.language, code);
        call.caller_left = req.caller_left.clone();
        let report = caller.call(&call).await;
        drop(call);
        let status_text = report.status.map(|s| format!(" ({s})")).unwrap_or_default();
        // A call cancelled after the answer still had a length.
        let talked = matches!(report.result, CallResult::Cancelled { answered: true });
        let (status, error) = match report.result {
            CallResult::Answered { heard_all: true } => (DeliveryStatus::Answered, None),
            CallResult::Answered { heard_all: false } => (
                DeliveryStatus::Answered,
                Some("answered, but hung up before the code was read".to_string()),
            ),
            CallResult::Busy => (DeliveryStatus::Busy, Some(format!("busy{status_text}"))),
            CallResult::NoAnswer => (
                DeliveryStatus::NoAnswer,
                Some(format!("no answer{status_text}")),
            ),
            CallResult::Failed(why) => (DeliveryStatus::Failed, Some(why)),
            CallResult::Cancelled { answered } => (
                DeliveryStatus::Cancelled,
                Some(
                    if answered {
                        "cancelled: the caller hung up while the code was read"
                    } else {
                        "cancelled: the caller hung up while it rang"
                    }
                    .to_string(),
                ),
            ),
        };
        let talk = (matches!(status, DeliveryStatus::Answered) || talked).then_some(report.talk);
        ((gateway, status, report.call_id, error), talk)
    }

    /// Wait for the SMS gateway's delivery receipt of `message_id` (at most
    /// `wait`): `None` when it says delivered, else why the code did not
    /// arrive (undelivered, failed, or no receipt in time).
    async fn await_receipt(
        &self,
        gateway: &str,
        message_id: &str,
        wait: std::time::Duration,
    ) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let store = self.store.clone();
            let (gw, mid) = (gateway.to_string(), message_id.to_string());
            match blocking(move || store.delivery_status(&gw, &mid)).await {
                Ok(Some((s, err))) => match DeliveryStatus::parse(&s) {
                    Some(DeliveryStatus::Delivered) => return None,
                    Some(st @ (DeliveryStatus::Undelivered | DeliveryStatus::Failed)) => {
                        let detail = err.map(|e| format!(" ({e})")).unwrap_or_default();
                        return Some(format!("delivery receipt: {}{detail}", st.as_str()));
                    }
                    _ => {}
                },
                Ok(None) => {}
                Err(e) => return Some(format!("delivery receipt not readable: {e}")),
            }
            if tokio::time::Instant::now() >= deadline {
                return Some(format!(
                    "no delivery receipt within {} s",
                    wait.as_secs_f32()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn deliver_sms(
        &self,
        req: &CodeRequest,
        target: &CodeTarget,
        code: &str,
    ) -> (String, DeliveryStatus, Option<String>, Option<String>) {
        let Some((name, gateway)) = self.sms.gateway_for(&req.brand) else {
            let e = "no SMS gateway is configured for this brand".to_string();
            return (String::new(), DeliveryStatus::Failed, None, Some(e));
        };
        let Some(to) = phone::for_lookup(&target.to, phone::Country::default()) else {
            let e = "not a phone number".to_string();
            return (name.to_string(), DeliveryStatus::Failed, None, Some(e));
        };
        let body = self
            .sms
            .templates
            .render(&req.brand, &req.language, code, req.ttl);
        let msg = SmsMessage { to, body };
        let sent = gateway.send(&msg).await;
        drop(msg);
        match sent {
            Ok(a) => (name.to_string(), a.status, a.message_id, None),
            Err(e) => (
                name.to_string(),
                DeliveryStatus::Failed,
                None,
                Some(e.to_string()),
            ),
        }
    }

    async fn deliver_email(
        &self,
        req: &CodeRequest,
        target: &CodeTarget,
        code: &str,
    ) -> (String, DeliveryStatus, Option<String>, Option<String>) {
        let Some(email) = &self.email else {
            let e = "no e-mail channel is configured".to_string();
            return (String::new(), DeliveryStatus::Failed, None, Some(e));
        };
        let msg = email
            .templates
            .render(&req.brand, &req.language, code, req.ttl);
        let sent = email.send(&target.to, &msg).await;
        drop(msg);
        let relay = email.relay().to_string();
        match sent {
            Ok(_) => (relay, DeliveryStatus::Sent, None, None),
            Err(e) => (relay, DeliveryStatus::Failed, None, Some(e.to_string())),
        }
    }

    async fn undeliverable(&self, code_id: &str) {
        let store = self.store.clone();
        let id = code_id.to_string();
        if let Err(e) = blocking(move || store.code_undeliverable(&id)).await {
            tracing::warn!(error = %e, "undelivered code not marked");
        }
    }
}

/// A fresh code and its id and MAC.
fn fresh(key: &[u8; 32], len: u32) -> Result<(Zeroizing<String>, String, Vec<u8>), ServiceError> {
    let code = draw_code(len.clamp(4, 10))?;
    let id = draw_id()?;
    let mac = code_mac(key, &id, &code);
    Ok((code, id, mac))
}

fn refused(d: SendDecision) -> Option<SendResult> {
    match d {
        SendDecision::Send => None,
        SendDecision::StillValid => Some(SendResult::StillValid),
        SendDecision::Limited(l) => Some(SendResult::RateLimited(limit_of(l))),
        SendDecision::Locked => Some(SendResult::Locked),
    }
}

impl CodeService for StoreCodes {
    fn send<'a>(&'a self, req: &'a CodeRequest) -> BoxFut<'a, Result<SendResult, ServiceError>> {
        Box::pin(async move {
            // Channels this server cannot serve are failed tries before any
            // code is drawn or counted.
            let mut attempts = Vec::new();
            let mut usable = Vec::new();
            for t in &req.targets {
                match self.unusable(t, &req.brand) {
                    Some(why) => attempts.push(SendAttempt {
                        channel: t.channel,
                        to_masked: t.masked(),
                        gateway: String::new(),
                        message_id: None,
                        error: Some(why.to_string()),
                    }),
                    None => usable.push(t),
                }
            }
            let Some(first) = usable.first() else {
                let why = attempts
                    .iter()
                    .map(|a| {
                        format!(
                            "{}: {}",
                            a.channel.as_str(),
                            a.error.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>();
                return Err(ServiceError::Unavailable(if why.is_empty() {
                    "no channel to send the code by".into()
                } else {
                    why.join("; ")
                }));
            };
            let (mut code, mut id, mac) = fresh(&self.mac_key, req.length)?;
            let rules = self.rules(millis_of(req.resend_cooldown));
            let decision = self
                .begin(Begin {
                    req,
                    target: first,
                    id: id.clone(),
                    mac,
                    rules,
                })
                .await?;
            if let Some(r) = refused(decision) {
                return Ok(r);
            }
            // The channels tried in vain before any code existed are records too.
            for a in &attempts {
                self.record(&id, a, DeliveryStatus::Failed).await;
            }
            for (i, target) in usable.iter().enumerate() {
                if req.caller_left.is_set() {
                    // Nobody to key a code in any more: no further channel.
                    break;
                }
                if i > 0 && !self.same_code(target.channel) {
                    // A new code for the next channel: the one that did not go
                    // is not live, and the new one is counted like any send.
                    self.undeliverable(&id).await;
                    let (c, new_id, mac) = fresh(&self.mac_key, req.length)?;
                    (code, id) = (c, new_id);
                    let mut rules = self.rules(0);
                    rules.cancel_previous = true;
                    let d = self
                        .begin(Begin {
                            req,
                            target,
                            id: id.clone(),
                            mac,
                            rules,
                        })
                        .await?;
                    if let Some(r) = refused(d) {
                        let failed = SendAttempt {
                            channel: target.channel,
                            to_masked: target.masked(),
                            gateway: String::new(),
                            message_id: None,
                            error: Some(match r {
                                SendResult::RateLimited(l) => {
                                    format!("rate limited: {}", l.as_str())
                                }
                                SendResult::Locked => "locked".into(),
                                _ => "not sent".into(),
                            }),
                        };
                        self.record(&id, &failed, DeliveryStatus::Failed).await;
                        attempts.push(failed);
                        continue;
                    }
                }
                let mut attempt = self.deliver(req, target, &id, &code).await;
                // An SMS with a channel after it is taken only once its
                // receipt says delivered (when the server waits for one).
                if let (CodeChannel::Sms, true, None, Some(wait), Some(mid)) = (
                    target.channel,
                    i + 1 < usable.len(),
                    &attempt.error,
                    self.policy
                        .receipt_timeout
                        .filter(|_| !req.caller_left.is_set()),
                    attempt.message_id.clone(),
                ) {
                    attempt.error = self.await_receipt(&attempt.gateway, &mid, wait).await;
                }
                let taken = attempt.error.is_none();
                attempts.push(attempt);
                if taken {
                    drop(code);
                    let last = attempts.last().cloned();
                    return Ok(match last {
                        Some(a) => SendResult::Sent {
                            channel: a.channel,
                            to_masked: a.to_masked,
                            gateway: a.gateway,
                            message_id: a.message_id,
                            attempts,
                        },
                        None => SendResult::Undeliverable { attempts },
                    });
                }
            }
            drop(code);
            self.undeliverable(&id).await;
            Ok(SendResult::Undeliverable { attempts })
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
