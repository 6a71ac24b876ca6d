//! A fake Twilio for tests: a real HTTP server on 127.0.0.1 speaking the
//! Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`, basic auth
//! `sid:token`, 201 JSON with a fresh `SM…` sid and `status: queued`),
//! recording every accepted message, with switchable behaviours (answer
//! slowly, 5xx for the next N requests, 4xx with a Twilio error JSON); and a
//! client that sends status callbacks signed right, wrong or not at all.
//!
//! Use from a test file with `mod twilio;`.
#![allow(dead_code)]

#[path = "../http_server/mod.rs"]
pub mod http_server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub use http_server::Request;
use http_server::{Response, Server};

/// The account every fake uses unless told otherwise.
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";

/// One message the fake accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub sid: String,
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: String,
    pub status_callback: Option<String>,
}

/// What the next requests get.
#[derive(Clone, Debug, Default)]
struct Behaviour {
    /// Wait this long before answering every request.
    delay: Duration,
    /// Answer the next N requests with this 5xx.
    fail_next: usize,
    fail_status: u16,
    /// Answer the next N requests with this 4xx and Twilio error.
    reject_next: usize,
    reject: (u16, i64, String),
}

pub struct FakeTwilio {
    server: Server,
    pub account_sid: String,
    pub token: String,
    behaviour: Arc<Mutex<Behaviour>>,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl FakeTwilio {
    /// Start one with `token` as the account's auth token.
    pub fn start(token: &str) -> FakeTwilio {
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::new()));
        let (b, s) = (behaviour.clone(), sent.clone());
        let auth = format!(
            "Basic {}",
            data_encoding::BASE64.encode(format!("{ACCOUNT_SID}:{token}").as_bytes())
        );
        let path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let server = Server::start(move |req: &Request| {
            let mut resp = answer(req, &auth, &path, &b, &s, &NEXT);
            resp.delay = b.lock().unwrap().delay;
            resp
        });
        FakeTwilio {
            server,
            account_sid: ACCOUNT_SID.to_string(),
            token: token.to_string(),
            behaviour,
            sent,
        }
    }

    /// `http://127.0.0.1:PORT` (the gateway's `base_url`).
    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    /// Every message accepted so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Every request received (accepted or not).
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Answer every request after `d`.
    pub fn answer_slowly(&self, d: Duration) {
        self.behaviour.lock().unwrap().delay = d;
    }

    /// Answer the next `n` requests with `status` (a 5xx).
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut b = self.behaviour.lock().unwrap();
        b.fail_next = n;
        b.fail_status = status;
    }

    /// Answer the next `n` requests with `status` (a 4xx) and Twilio's error JSON.
    pub fn reject_next(&self, n: usize, status: u16, code: i64, message: &str) {
        let mut b = self.behaviour.lock().unwrap();
        b.reject_next = n;
        b.reject = (status, code, message.to_string());
    }

    /// A gateway config for `sms.gateways.<name>` pointing at this fake,
    /// its token read from `token_env`.
    pub fn gateway_yaml(&self, token_env: &str, extra: &str) -> String {
        format!(
            "{{ type: twilio, base_url: '{}', account_sid: {}, auth_token_env: {token_env}, from: '+15005550006'{extra} }}",
            self.base_url(),
            self.account_sid
        )
    }
}

fn twilio_error(status: u16, code: i64, message: &str) -> Response {
    Response::json(
        status,
        serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }),
    )
}

fn answer(
    req: &Request,
    auth: &str,
    path: &str,
    b: &Mutex<Behaviour>,
    sent: &Mutex<Vec<Sent>>,
    next: &AtomicUsize,
) -> Response {
    if req.method != "POST" || req.path != path {
        return twilio_error(404, 20404, "The requested resource was not found");
    }
    if req.header("authorization") != Some(auth) {
        return twilio_error(401, 20003, "Authenticate");
    }
    {
        let mut b = b.lock().unwrap();
        if b.fail_next > 0 {
            b.fail_next -= 1;
            return Response::text(b.fail_status, "upstream trouble");
        }
        if b.reject_next > 0 {
            b.reject_next -= 1;
            let (status, code, message) = b.reject.clone();
            return twilio_error(status, code, &message);
        }
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(to), Some(body)) = (get("To"), get("Body")) else {
        return twilio_error(400, 21604, "A 'To' phone number and a 'Body' are required.");
    };
    if get("From").is_none() && get("MessagingServiceSid").is_none() {
        return twilio_error(
            400,
            21603,
            "A 'From' or 'MessagingServiceSid' parameter is required",
        );
    }
    let sid = format!("SM{:032x}", next.fetch_add(1, Ordering::Relaxed));
    sent.lock().unwrap().push(Sent {
        sid: sid.clone(),
        to: to.clone(),
        from: get("From"),
        messaging_service_sid: get("MessagingServiceSid"),
        body,
        status_callback: get("StatusCallback"),
    });
    Response::json(
        201,
        serde_json::json!({
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "to": to,
            "status": "queued",
            "num_segments": "1",
            "api_version": "2010-04-01",
        }),
    )
}

/// How a status callback is signed.
#[derive(Clone, Copy, Debug)]
pub enum Signing<'a> {
    /// Right: with this auth token.
    With(&'a str),
    /// No `X-Twilio-Signature` header.
    Unsigned,
    /// A signature made with another token.
    Wrong,
}

/// Twilio's signature: base64(HMAC-SHA1(token, url + sorted name/value pairs)).
pub fn sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut text = url.to_string();
    for (k, v) in sorted {
        text.push_str(k);
        text.push_str(v);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    data_encoding::BASE64.encode(&mac.finalize().into_bytes())
}

/// POST Twilio's form-encoded status callback `params` to `url`
/// (`http://127.0.0.1:PORT/path`), signed as `signing` says; the HTTP
/// status of the answer.
pub fn send_status_callback(url: &str, signing: Signing<'_>, params: &[(&str, &str)]) -> u16 {
    let body = {
        let mut f = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            f.append_pair(k, v);
        }
        f.finish()
    };
    let sig = match signing {
        Signing::With(token) => Some(sign(token, url, params)),
        Signing::Unsigned => None,
        Signing::Wrong => Some(sign("not-the-token", url, params)),
    };
    post_raw(url, sig.as_deref(), body.as_bytes())
}

/// POST `body` as a form to `url`, with `X-Twilio-Signature: sig` if given.
pub fn post_raw(url: &str, sig: Option<&str>, body: &[u8]) -> u16 {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(host).expect("connect to voxgate's HTTP endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: TwilioProxy/1.1\r\n",
        body.len()
    );
    if let Some(sig) = sig {
        head.push_str(&format!("X-Twilio-Signature: {sig}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading a large body.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}
