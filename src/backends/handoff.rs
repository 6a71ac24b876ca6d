//! What a transfer hands the agent: the targets a flow's `target` means
//! (a URI, or a configured agent group in order or round-robin) and the
//! context that travels with the call — headers with configurable names,
//! RFC 7433 `User-to-User`, and a signed short-lived assertion (a JWT,
//! EdDSA or HS256) the agent desktop can check with `voxgate keys public`.
//!
//! Everything here is built from the engine's typed state, never from a
//! flow variable, and carries no code, passphrase or transcript: only
//! outcomes, method names, the account id, the trust level and ids.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use data_encoding::{BASE64URL_NOPAD, HEXUPPER};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::ServiceError;
use crate::config::transfer::{
    check_target, is_group_name, AssertionAlgorithm, AssertionConfig, GroupOrder, TransferConfig,
};
use crate::store::SecretKey;

/// The label the assertion's Ed25519 seed is derived under from the
/// server's secret key (so `keys rotate` rotates it too).
const ASSERTION_LABEL: &[u8] = b"transfer assertion ed25519";

/// The engine's view of the call at transfer time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandoffContext {
    /// voxgate's call id.
    pub call_id: String,
    /// The route's brand ("" for none).
    pub brand: String,
    /// `caller.trust`.
    pub trust: String,
    /// `auth.result`: `passed`, `failed`, `locked`, `none`…
    pub auth_result: String,
    /// `auth.method` of the last verification (`none` before any).
    pub auth_method: String,
    /// Every verification tried: (method, outcome), oldest first.
    pub methods: Vec<(String, String)>,
    /// The account found, if any.
    pub account_id: Option<String>,
}

/// What the call layer needs to carry out a transfer.
#[derive(Clone, Debug, PartialEq)]
pub struct TransferPlan {
    /// URIs in the order to try.
    pub targets: Vec<String>,
    /// Per target.
    pub attempt_timeout: Duration,
    /// The bridge's maximum duration.
    pub max_bridge: Duration,
    /// Context headers for the agent (name, value).
    pub headers: Vec<(String, String)>,
}

/// The assertion's claims (what the agent side reads after verifying).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// `voxgate` unless configured.
    pub iss: String,
    /// The account id, or `none`.
    pub sub: String,
    /// The configured audience, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at: `iat` + at most 60 s.
    pub exp: u64,
    /// Unique per assertion (128 random bits, hex).
    pub jti: String,
    /// voxgate's call id.
    pub call_id: String,
    /// `auth.result`.
    pub auth_result: String,
    /// `auth.method`.
    pub auth_method: String,
    /// `method:outcome`, oldest first.
    pub methods: Vec<String>,
    /// `caller.trust`.
    pub trust: String,
    /// The route's brand, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub brand: String,
}

/// Why the handoff could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// EdDSA assertions need the server's secret key.
    #[error("transfer.assertion (EdDSA) needs the server's secret key")]
    NoKey,
    /// HS256's secret is missing or too short.
    #[error("transfer.assertion: environment variable {0} is unset or shorter than 32 bytes")]
    NoSecret(String),
    /// The key could not be encoded.
    #[error("transfer.assertion: {0}")]
    Key(String),
}

enum Signer {
    EdDsa { key: EncodingKey, kid: String },
    Hs256 { key: EncodingKey },
}

/// Targets and context for `transfer` steps; one per server.
pub struct Handoff {
    cfg: TransferConfig,
    /// No server configuration (`voxgate test`, unit tests): targets are
    /// taken as written and a group name stands for itself.
    offline: bool,
    signer: Option<Signer>,
    /// Next start index per round-robin group.
    turns: Mutex<HashMap<String, usize>>,
}

impl Default for Handoff {
    /// Offline: default headers and UUI, no assertion, targets unchecked
    /// and any group name standing for itself (`voxgate test` has no
    /// server configuration; `serve` uses [`Handoff::new`]).
    fn default() -> Self {
        Handoff {
            cfg: TransferConfig::default(),
            offline: true,
            signer: None,
            turns: Mutex::new(HashMap::new()),
        }
    }
}

impl Handoff {
    /// The server's handoff; `key` signs EdDSA assertions.
    pub fn new(cfg: TransferConfig, key: Option<&SecretKey>) -> Result<Self, HandoffError> {
        let signer = match &cfg.assertion {
            None => None,
            Some(a) => Some(match a.algorithm {
                AssertionAlgorithm::EdDsa => {
                    let key = key.ok_or(HandoffError::NoKey)?;
                    let sk = signing_key(key);
                    let der = sk
                        .to_pkcs8_der()
                        .map_err(|e| HandoffError::Key(e.to_string()))?;
                    Signer::EdDsa {
                        key: EncodingKey::from_ed_der(der.as_bytes()),
                        kid: thumbprint(&sk),
                    }
                }
                AssertionAlgorithm::Hs256 => {
                    let var = a.secret_env.clone().unwrap_or_default();
                    let secret = Zeroizing::new(std::env::var(&var).unwrap_or_default());
                    if secret.len() < 32 {
                        return Err(HandoffError::NoSecret(var));
                    }
                    Signer::Hs256 {
                        key: EncodingKey::from_secret(secret.as_bytes()),
                    }
                }
            }),
        };
        Ok(Handoff {
            cfg,
            offline: false,
            signer,
            turns: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &TransferConfig {
        &self.cfg
    }

    /// Whether `name` is a configured agent group.
    pub fn has_group(&self, name: &str) -> bool {
        self.cfg.groups.contains_key(name)
    }

    /// Resolve `target` (a rendered URI or a group name) and build the
    /// context headers. `step_timeout` is the attempt timeout unless the
    /// group sets its own; `now` is the call's clock.
    pub fn plan(
        &self,
        target: &str,
        step_timeout: Duration,
        ctx: &HandoffContext,
        now: SystemTime,
    ) -> Result<TransferPlan, ServiceError> {
        let proxied = self.cfg.outbound_proxy.is_some();
        let (targets, attempt_timeout) = if self.offline {
            (vec![target.to_string()], step_timeout)
        } else if is_group_name(target) {
            let g = self.cfg.groups.get(target).ok_or_else(|| {
                ServiceError::Unavailable(format!(
                    "no agent group `{target}` is configured (transfer.groups)"
                ))
            })?;
            let mut t = g.targets.clone();
            if g.order == GroupOrder::RoundRobin && !t.is_empty() {
                let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
                let turn = turns.entry(target.to_string()).or_insert(0);
                let start = *turn % t.len();
                *turn = turn.wrapping_add(1);
                t.rotate_left(start);
            }
            (t, g.attempt_timeout.unwrap_or(step_timeout))
        } else {
            check_target(target, proxied)
                .map_err(|e| ServiceError::Failed(format!("transfer target: {e}")))?;
            (vec![target.to_string()], step_timeout)
        };
        Ok(TransferPlan {
            targets,
            attempt_timeout,
            max_bridge: self.cfg.max_bridge,
            headers: self.headers(ctx, now)?,
        })
    }

    fn headers(
        &self,
        ctx: &HandoffContext,
        now: SystemTime,
    ) -> Result<Vec<(String, String)>, ServiceError> {
        let c = &self.cfg.context;
        let methods = ctx
            .methods
            .iter()
            .map(|(m, o)| format!("{m}:{o}"))
            .collect::<Vec<_>>();
        let account = ctx.account_id.clone().unwrap_or_else(|| "none".into());
        let mut out = Vec::new();
        let mut put = |name: &Option<String>, value: &str| {
            if let Some(n) = name {
                if !value.is_empty() {
                    out.push((n.clone(), header_safe(value)));
                }
            }
        };
        put(&c.auth_result, &ctx.auth_result);
        put(&c.auth_method, &ctx.auth_method);
        put(&c.methods, &methods.join(","));
        put(&c.account, &account);
        put(&c.trust, &ctx.trust);
        put(&c.brand, &ctx.brand);
        put(&c.call_id, &ctx.call_id);
        if let Some(u) = &self.cfg.uui {
            // RFC 7433: the data hex-encoded, with its encoding and purpose;
            // ISDN UUI carries at most 128 octets.
            let mut data = format!(
                "result={};method={};account={}",
                ctx.auth_result, ctx.auth_method, account
            );
            data.truncate(128);
            out.push((
                "User-to-User".into(),
                format!(
                    "{};encoding=hex;purpose={}",
                    HEXUPPER.encode(data.as_bytes()),
                    u.purpose
                ),
            ));
        }
        if let (Some(a), Some(s)) = (&self.cfg.assertion, &self.signer) {
            out.push((
                a.header.clone(),
                self.sign(a, s, ctx, methods, account, now)?,
            ));
        }
        Ok(out)
    }

    fn sign(
        &self,
        a: &AssertionConfig,
        s: &Signer,
        ctx: &HandoffContext,
        methods: Vec<String>,
        account: String,
        now: SystemTime,
    ) -> Result<String, ServiceError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut jti = [0u8; 16];
        rand::rngs::OsRng
            .try_fill_bytes(&mut jti)
            .map_err(|e| ServiceError::Failed(format!("OS random source: {e}")))?;
        let claims = Claims {
            iss: a.issuer.clone(),
            sub: account,
            aud: a.audience.clone(),
            iat,
            exp: iat + a.ttl.as_secs(),
            jti: HEXUPPER.encode(&jti).to_ascii_lowercase(),
            call_id: ctx.call_id.clone(),
            auth_result: ctx.auth_result.clone(),
            auth_method: ctx.auth_method.clone(),
            methods,
            trust: ctx.trust.clone(),
            brand: ctx.brand.clone(),
        };
        let (header, key) = match s {
            Signer::EdDsa { key, kid } => {
                let mut h = Header::new(Algorithm::EdDSA);
                h.kid = Some(kid.clone());
                (h, key)
            }
            Signer::Hs256 { key } => (Header::new(Algorithm::HS256), key),
        };
        jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| ServiceError::Failed(format!("signing the assertion: {e}")))
    }
}

/// A header value as it may go on the wire: no CR, LF or other controls.
fn header_safe(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn signing_key(key: &SecretKey) -> SigningKey {
    let seed = key.subkey(ASSERTION_LABEL);
    SigningKey::from_bytes(&seed)
}

/// RFC 7638 JWK thumbprint of the public key: the `kid`.
fn thumbprint(sk: &SigningKey) -> String {
    let x = BASE64URL_NOPAD.encode(sk.verifying_key().as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    BASE64URL_NOPAD.encode(&Sha256::digest(canonical.as_bytes()))
}

/// The public JWK (RFC 8037) agents verify EdDSA assertions with.
pub fn public_jwk(key: &SecretKey) -> serde_json::Value {
    let sk = signing_key(key);
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": BASE64URL_NOPAD.encode(sk.verifying_key().as_bytes()),
        "kid": thumbprint(&sk),
        "alg": "EdDSA",
        "use": "sig",
    })
}

/// Why an assertion was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Expired, badly signed, malformed, wrong issuer or audience.
    #[error("assertion refused: {0}")]
    Refused(String),
}

/// Check an EdDSA assertion against the public key of `key` as an agent
/// desktop would with the JWK (signature, `exp` with no leeway, `iss`,
/// and `aud` when given).
pub fn verify_assertion(
    token: &str,
    key: &SecretKey,
    issuer: &str,
    audience: Option<&str>,
) -> Result<Claims, VerifyError> {
    let sk = signing_key(key);
    let x = BASE64URL_NOPAD.encode(sk.verifying_key().as_bytes());
    let dk =
        DecodingKey::from_ed_components(&x).map_err(|e| VerifyError::Refused(e.to_string()))?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.leeway = 0;
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "sub"]);
    match audience {
        Some(a) => v.set_audience(&[a]),
        None => v.validate_aud = false,
    }
    jsonwebtoken::decode::<Claims>(token, &dk, &v)
        .map(|d| d.claims)
        .map_err(|e| VerifyError::Refused(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::transfer::{AgentGroup, UuiConfig};

    fn ctx() -> HandoffContext {
        HandoffContext {
            call_id: "c-1".into(),
            brand: "acme".into(),
            trust: "pai_trusted".into(),
            auth_result: "passed".into(),
            auth_method: "sms_code".into(),
            methods: vec![
                ("passphrase".into(), "failed".into()),
                ("sms_code".into(), "passed".into()),
            ],
            account_id: Some("A-17".into()),
        }
    }

    fn key_of(b: u8) -> SecretKey {
        SecretKey::from_base64(&data_encoding::BASE64.encode(&[b; 32]), "test").unwrap()
    }

    fn key() -> SecretKey {
        key_of(7)
    }

    fn signed_cfg() -> TransferConfig {
        TransferConfig {
            assertion: Some(AssertionConfig {
                algorithm: AssertionAlgorithm::EdDsa,
                header: "X-Voxgate-Assertion".into(),
                ttl: Duration::from_secs(30),
                issuer: "voxgate".into(),
                audience: None,
                secret_env: None,
            }),
            ..TransferConfig::default()
        }
    }

    #[test]
    fn context_headers_uui_and_a_verifiable_assertion() {
        let h = Handoff::new(signed_cfg(), Some(&key())).unwrap();
        let plan = h
            .plan(
                "sip:agent@127.0.0.1:5080",
                Duration::from_secs(20),
                &ctx(),
                SystemTime::now(),
            )
            .unwrap();
        let get = |n: &str| {
            plan.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {n} in {:?}", plan.headers))
        };
        assert_eq!(get("X-Auth-Result"), "passed");
        assert_eq!(get("X-Auth-Methods"), "passphrase:failed,sms_code:passed");
        assert_eq!(get("X-Account-Id"), "A-17");
        let uui = get("User-to-User");
        let (hex, params) = uui.split_once(';').unwrap();
        assert_eq!(params, "encoding=hex;purpose=isdn-uui");
        let data = HEXUPPER.decode(hex.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(data).unwrap(),
            "result=passed;method=sms_code;account=A-17"
        );
        let token = get("X-Voxgate-Assertion");
        let claims = verify_assertion(&token, &key(), "voxgate", None).unwrap();
        assert_eq!(claims.sub, "A-17");
        assert_eq!(claims.auth_result, "passed");
        assert!(claims.exp - claims.iat <= 60);
        // Another key, a tampered payload and an expired token are refused.
        assert!(verify_assertion(&token, &key_of(8), "voxgate", None).is_err());
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut payload = BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap();
        let text = String::from_utf8(payload.clone())
            .unwrap()
            .replace("A-17", "A-18");
        payload = text.into_bytes();
        parts[1] = BASE64URL_NOPAD.encode(&payload);
        assert!(verify_assertion(&parts.join("."), &key(), "voxgate", None).is_err());
        let old = h
            .plan(
                "sip:agent@127.0.0.1:5080",
                Duration::from_secs(20),
                &ctx(),
                SystemTime::now() - Duration::from_secs(120),
            )
            .unwrap();
        let old_token = &old
            .headers
            .iter()
            .find(|(k, _)| k == "X-Voxgate-Assertion")
            .unwrap()
            .1;
        let e = verify_assertion(old_token, &key(), "voxgate", None).unwrap_err();
        assert!(e.to_string().contains("xpired"), "{e}");
        // Each assertion is unique.
        assert_ne!(token, *old_token);
    }

    #[test]
    fn groups_in_order_and_round_robin() {
        let mut cfg = TransferConfig::default();
        let targets: Vec<String> = (1..=3)
            .map(|i| format!("sip:a{i}@127.0.0.1:50{i}0"))
            .collect();
        cfg.groups.insert(
            "seq".into(),
            AgentGroup {
                targets: targets.clone(),
                order: GroupOrder::Sequential,
                attempt_timeout: Some(Duration::from_secs(5)),
            },
        );
        cfg.groups.insert(
            "rr".into(),
            AgentGroup {
                targets: targets.clone(),
                order: GroupOrder::RoundRobin,
                attempt_timeout: None,
            },
        );
        cfg.uui = Some(UuiConfig {
            purpose: "isdn-uui".into(),
        });
        let h = Handoff::new(cfg, None).unwrap();
        let now = SystemTime::now();
        let t = Duration::from_secs(20);
        let p = h.plan("seq", t, &ctx(), now).unwrap();
        assert_eq!(
            (p.targets.clone(), p.attempt_timeout),
            (targets.clone(), Duration::from_secs(5))
        );
        let firsts: Vec<String> = (0..4)
            .map(|_| h.plan("rr", t, &ctx(), now).unwrap().targets[0].clone())
            .collect();
        assert_eq!(
            firsts,
            [&targets[0], &targets[1], &targets[2], &targets[0]].map(String::clone)
        );
        assert!(matches!(
            h.plan("nope", t, &ctx(), now),
            Err(ServiceError::Unavailable(_))
        ));
        assert!(h.plan("sip:x@pbx.example.com", t, &ctx(), now).is_err());
    }

    #[test]
    fn public_jwk_matches_the_signing_key() {
        let jwk = public_jwk(&key());
        assert_eq!(jwk["kty"], "OKP");
        let x = jwk["x"].as_str().unwrap();
        assert_eq!(BASE64URL_NOPAD.decode(x.as_bytes()).unwrap().len(), 32);
    }
}
