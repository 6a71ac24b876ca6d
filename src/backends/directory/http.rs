//! A CRM over HTTP as a caller directory (`type: http` under `directories:`).
//!
//! One lookup is one HTTP exchange, repeated on failure:
//! - the URL is the configured template with `${number}` (the caller's E.164
//!   number) and `${brand}` percent-encoded; `POST` sends the `body` object
//!   as JSON, its string values rendered the same way but not encoded.
//!   Headers are the configured ones (`${env.NAME}` filled in when the
//!   directory is built) plus `Accept: application/json` unless configured.
//! - `404` and a 2xx answer of JSON `null` are *not found*; any other 4xx is
//!   an error, never retried; a 5xx or a connection / I/O error is retried
//!   up to `retries` times, waiting `retry_backoff` and doubling it after
//!   each retry; a 3xx is an error (redirects are not followed).
//! - a 2xx answer must be a JSON object of at most [`MAX_ANSWER_BYTES`]
//!   bytes; `fields` maps account fields to JSON pointers into it. Strings,
//!   numbers and booleans become the field's text; a pointer that finds
//!   nothing (or `null`, an array, an object) leaves the field out. Without
//!   an `id` the answer is an error.
//! - the account also carries `phone` (the CRM's number in E.164 when it
//!   gives a usable one, else the number looked up) and `brand` (the
//!   query's brand unless the CRM gives one).
//! - the whole lookup, retries included, ends within `timeout`; after that
//!   it is [`ServiceError::Timeout`].
//! - with `cache_ttl`, answers (found and not found, never errors) are kept
//!   that long per (brand, number, directory), at most [`MAX_CACHE_ENTRIES`].
//!
//! Header values may be credentials: they appear in no log and no error.
//! Logs name the CRM's host and the HTTP status only — not the URL, which
//! carries the caller's number.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use serde_json::Value;
use tokio::time::Instant;
use tracing::debug;

use crate::backends::webhook_http::{chain, http_client};
use crate::backends::{Account, BoxFut, Directory, LookupQuery, ServiceError};
use crate::config::{HttpDirectoryConfig, HttpMethod};
use crate::phone::{self, Country};

/// Largest 2xx answer body accepted from a CRM.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Most answers one directory's cache holds; when full, expired entries go
/// first, then the ones closest to expiring.
pub const MAX_CACHE_ENTRIES: usize = 10_000;

/// Looks callers up in a CRM over HTTP. Cheap to share: one connection pool.
pub struct HttpDirectory {
    client: reqwest::Client,
    post: bool,
    url: Template,
    body: Option<BodyNode>,
    /// Configured headers, values resolved and marked sensitive.
    headers: HeaderMap,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    fields: BTreeMap<String, String>,
    country: Country,
    cache: Option<Cache>,
}

impl HttpDirectory {
    /// A directory for `cfg`; `country` reads a CRM's phone numbers written
    /// in national format. Fails (naming the header or variable, never a
    /// value) on a missing `${env.NAME}`, an unknown `${…}` in the URL or
    /// body, an invalid header, or a URL that does not parse.
    pub fn new(cfg: &HttpDirectoryConfig, country: Country) -> Result<HttpDirectory, String> {
        Self::build(cfg, country, &|name| std::env::var(name).ok())
    }

    fn build(
        cfg: &HttpDirectoryConfig,
        country: Country,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<HttpDirectory, String> {
        let url = Template::parse(&cfg.url).map_err(|e| format!("url: {e}"))?;
        // The URL must parse once filled in (the error does not echo it).
        let sample = url.render("+15550000000", "brand", true);
        match reqwest::Url::parse(&sample) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(_) => return Err("url: must be an http:// or https:// URL with a host".into()),
            Err(e) => return Err(format!("url: not a valid URL ({e})")),
        }
        let body = match (&cfg.body, cfg.method) {
            (Some(b), HttpMethod::Post) => Some(
                BodyNode::parse(&Value::Object(b.clone()), "body")
                    .map_err(|(at, e)| format!("{at}: {e}"))?,
            ),
            (Some(_), HttpMethod::Get) => return Err("body: only with method: POST".into()),
            (None, _) => None,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let n = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("headers: `{name}` is not a valid HTTP header name"))?;
            let resolved = resolve_env(value, env).map_err(|e| format!("headers.{name}: {e}"))?;
            // The value may be a credential: never echo it.
            let mut v = HeaderValue::from_str(&resolved).map_err(|_| {
                format!(
                    "headers.{name}: the value is not a valid HTTP header value (control characters?)"
                )
            })?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        }
        let client = http_client()?;
        Ok(HttpDirectory {
            client,
            post: cfg.method == HttpMethod::Post,
            url,
            body,
            headers,
            timeout: cfg.timeout,
            retries: cfg.retries,
            retry_backoff: cfg.retry_backoff,
            fields: cfg.fields.clone(),
            country,
            cache: cfg.cache_ttl.map(Cache::new),
        })
    }

    /// Every attempt, within the deadline the caller's timeout set.
    async fn lookup_uncached(
        &self,
        query: &LookupQuery,
        url: &reqwest::Url,
        host: &str,
        deadline: Instant,
    ) -> Result<Option<Account>, ServiceError> {
        let number = query.number.as_str();
        let body = self.body.as_ref().map(|b| b.render(number, &query.brand));
        let mut backoff = self.retry_backoff;
        let mut attempt: u32 = 0;
        loop {
            match self.attempt(url, body.as_ref(), host).await {
                Attempt::Done(r) => {
                    return r.map(|found| found.map(|a| self.complete(a, query)));
                }
                Attempt::Retry(e) => {
                    if attempt >= self.retries {
                        return Err(e);
                    }
                    if Instant::now() + backoff >= deadline {
                        // Waiting would only end in a timeout; report the cause.
                        return Err(e);
                    }
                    attempt += 1;
                    debug!(host, attempt, error = %e, "CRM lookup failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
            }
        }
    }

    /// One HTTP exchange.
    async fn attempt(&self, url: &reqwest::Url, body: Option<&Value>, host: &str) -> Attempt {
        let builder = match (self.post, body) {
            (true, Some(b)) => self.client.post(url.clone()).json(b),
            (true, None) => self.client.post(url.clone()),
            (false, _) => self.client.get(url.clone()),
        };
        let started = std::time::Instant::now();
        let mut resp = match builder.headers(self.headers.clone()).send().await {
            Ok(r) => r,
            Err(e) => return transport_error(&e, host),
        };
        let status = resp.status().as_u16();
        debug!(
            host,
            status,
            ms = started.elapsed().as_millis() as u64,
            "CRM answered"
        );
        if status == 404 {
            return Attempt::Done(Ok(None));
        }
        if resp.status().is_server_error() {
            return Attempt::Retry(ServiceError::Failed(format!("HTTP {status} from {host}")));
        }
        if !resp.status().is_success() {
            let what = if resp.status().is_redirection() {
                " (redirects are not followed)"
            } else {
                ""
            };
            return Attempt::Done(Err(ServiceError::Failed(format!(
                "HTTP {status} from {host}{what}"
            ))));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Attempt::Done(Err(too_big(status, host)));
        }
        let mut buf: Vec<u8> = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Attempt::Done(Err(too_big(status, host)));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return transport_error(&e, host),
            }
        }
        let answer: Value = match serde_json::from_slice(&buf) {
            Ok(v) => v,
            Err(e) => {
                return Attempt::Done(Err(ServiceError::Failed(format!(
                    "HTTP {status} answer from {host} is garbage: not JSON ({e})"
                ))))
            }
        };
        Attempt::Done(
            map_fields(&self.fields, &answer)
                .map_err(|e| ServiceError::Failed(format!("HTTP {status} answer from {host} {e}"))),
        )
    }

    /// Add `phone` and `brand` to what the CRM gave.
    fn complete(&self, mut account: Account, query: &LookupQuery) -> Account {
        let phone = account
            .get("phone")
            .and_then(|p| phone::for_lookup(p, self.country))
            .unwrap_or_else(|| query.number.clone());
        account.insert("phone".into(), phone.to_string());
        account
            .entry("brand".into())
            .or_insert_with(|| query.brand.clone());
        account
    }
}

impl Directory for HttpDirectory {
    fn lookup<'a>(
        &'a self,
        query: &'a LookupQuery,
    ) -> BoxFut<'a, Result<Option<Account>, ServiceError>> {
        Box::pin(async move {
            let key = CacheKey {
                brand: query.brand.clone(),
                number: query.number.as_str().to_string(),
                directory: query.directory.clone(),
            };
            if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(&key)) {
                return Ok(hit);
            }
            let rendered = self.url.render(query.number.as_str(), &query.brand, true);
            // Checked at build time with a sample; a brand cannot break it
            // (it is percent-encoded), so this is a safety net.
            let url = reqwest::Url::parse(&rendered).map_err(|e| {
                ServiceError::Failed(format!("the lookup URL is not a valid URL ({e})"))
            })?;
            let host = url.host_str().unwrap_or("?").to_string();
            let deadline = Instant::now() + self.timeout;
            let r = match tokio::time::timeout_at(
                deadline,
                self.lookup_uncached(query, &url, &host, deadline),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(ServiceError::Timeout(format!(
                    "no answer from {host} within {}ms",
                    self.timeout.as_millis()
                ))),
            };
            if let (Ok(found), Some(cache)) = (&r, &self.cache) {
                cache.put(key, found.clone());
            }
            r
        })
    }
}

/// What one exchange led to.
enum Attempt {
    /// A result (found, not found, or an error not worth retrying).
    Done(Result<Option<Account>, ServiceError>),
    /// A 5xx answer or a connection / I/O error: try again if allowed.
    Retry(ServiceError),
}

fn transport_error(e: &reqwest::Error, host: &str) -> Attempt {
    if e.is_builder() {
        return Attempt::Done(Err(ServiceError::Failed(format!(
            "invalid request to {host}: {}",
            chain(e)
        ))));
    }
    let what = if e.is_connect() {
        "cannot connect to"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed from"
    } else {
        "request failed to"
    };
    Attempt::Retry(ServiceError::Failed(format!("{what} {host}: {}", chain(e))))
}

fn too_big(status: u16, host: &str) -> ServiceError {
    ServiceError::Failed(format!(
        "HTTP {status} answer from {host} is larger than {} KiB",
        MAX_ANSWER_BYTES / 1024
    ))
}

// --- templates -------------------------------------------------------------

/// A piece of a URL or body template.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Number,
    Brand,
}

/// A template with `${number}` and `${brand}`; anything else in `${…}` is
/// refused when parsing. A `$` not followed by `{` is literal.
#[derive(Clone, Debug, PartialEq)]
struct Template(Vec<Piece>);

impl Template {
    fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            text.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                return Err("`${` without a closing `}`".into());
            };
            let piece = match after[..end].trim() {
                "number" => Piece::Number,
                "brand" => Piece::Brand,
                other => {
                    return Err(format!(
                        "unknown placeholder `${{{other}}}` (known: ${{number}}, ${{brand}})"
                    ))
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = &after[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template(pieces))
    }

    /// Fill in; `encode`: percent-encode the values (for URLs).
    fn render(&self, number: &str, brand: &str, encode: bool) -> String {
        let value = |v: &str| {
            if encode {
                percent_encode(v)
            } else {
                v.to_string()
            }
        };
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Number => out.push_str(&value(number)),
                Piece::Brand => out.push_str(&value(brand)),
            }
        }
        out
    }
}

/// Every byte but RFC 3986's unreserved characters as `%XX` (so `+` in a
/// number is `%2B`, never a space in a query).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `value` with every `${env.NAME}` replaced from `env`. Errors name the
/// variable, never a value.
pub(crate) fn resolve_env(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err("`${` without a closing `}`".into());
        };
        let inner = after[..end].trim();
        let Some(name) = inner.strip_prefix("env.").filter(|n| !n.is_empty()) else {
            return Err(format!(
                "`${{{inner}}}`: header values may only use ${{env.NAME}}"
            ));
        };
        match env(name) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "environment variable `{name}` is not set (or not valid UTF-8)"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The POST body: a JSON value whose strings are templates.
#[derive(Clone, Debug, PartialEq)]
enum BodyNode {
    Str(Template),
    Array(Vec<BodyNode>),
    Object(Vec<(String, BodyNode)>),
    Other(Value),
}

impl BodyNode {
    /// Errors carry where (`body.customer.phone`) and what.
    fn parse(v: &Value, at: &str) -> Result<BodyNode, (String, String)> {
        Ok(match v {
            Value::String(s) => BodyNode::Str(Template::parse(s).map_err(|e| (at.into(), e))?),
            Value::Array(items) => BodyNode::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| BodyNode::parse(x, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(m) => BodyNode::Object(
                m.iter()
                    .map(|(k, x)| {
                        Ok::<_, (String, String)>((
                            k.clone(),
                            BodyNode::parse(x, &format!("{at}.{k}"))?,
                        ))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => BodyNode::Other(other.clone()),
        })
    }

    fn render(&self, number: &str, brand: &str) -> Value {
        match self {
            BodyNode::Str(t) => Value::String(t.render(number, brand, false)),
            BodyNode::Array(items) => {
                Value::Array(items.iter().map(|x| x.render(number, brand)).collect())
            }
            BodyNode::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), x.render(number, brand)))
                    .collect(),
            ),
            BodyNode::Other(v) => v.clone(),
        }
    }
}

// --- answers ---------------------------------------------------------------

/// The account `fields` (field → JSON pointer) find in a 2xx answer:
/// `Ok(None)` for JSON `null`; `Err` (completing "answer from host …") when
/// it is not an object or has no usable `id`.
fn map_fields(
    fields: &BTreeMap<String, String>,
    answer: &Value,
) -> Result<Option<Account>, String> {
    match answer {
        Value::Null => return Ok(None),
        Value::Object(_) => {}
        other => {
            return Err(format!(
                "is garbage: JSON {} but a JSON object is expected",
                kind(other)
            ))
        }
    }
    let mut account = Account::new();
    for (field, pointer) in fields {
        let text = match answer.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(other) => {
                debug!(field, pointer, "CRM answer: {} left out", kind(other));
                continue;
            }
            None => continue,
        };
        account.insert(field.clone(), text);
    }
    match account.get("id") {
        Some(id) if !id.trim().is_empty() => Ok(Some(account)),
        Some(_) => Err("is garbage: the account id is empty".into()),
        None => Err(format!(
            "is garbage: no account id at `{}`",
            fields.get("id").map_or("", String::as_str)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// --- cache -----------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    brand: String,
    number: String,
    directory: Option<String>,
}

/// Answers (found and not found) kept for `ttl`.
struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, (Instant, Option<Account>)>>,
}

impl Cache {
    fn new(ttl: Duration) -> Cache {
        Cache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, (Instant, Option<Account>)>> {
        // A panic while holding the lock leaves a consistent map.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &CacheKey) -> Option<Option<Account>> {
        let mut m = self.lock();
        match m.get(key) {
            Some((expires, found)) if *expires > Instant::now() => Some(found.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: CacheKey, found: Option<Account>) {
        let now = Instant::now();
        let mut m = self.lock();
        if m.len() >= MAX_CACHE_ENTRIES && !m.contains_key(&key) {
            m.retain(|_, (expires, _)| *expires > now);
            while m.len() >= MAX_CACHE_ENTRIES {
                let oldest = m
                    .iter()
                    .min_by_key(|(_, (expires, _))| *expires)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => m.remove(&k),
                    None => break,
                };
            }
        }
        m.insert(key, (now + self.ttl, found));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(url: &str) -> HttpDirectoryConfig {
        HttpDirectoryConfig {
            url: url.into(),
            method: HttpMethod::Get,
            body: None,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(3),
            retries: 2,
            retry_backoff: Duration::from_millis(200),
            fields: BTreeMap::from([("id".to_string(), "/id".to_string())]),
            cache_ttl: None,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn url_template_encodes_number_and_brand() {
        let t = Template::parse("https://crm.example/c?phone=${number}&b=${ brand }&x=$1").unwrap();
        assert_eq!(
            t.render("+15551230001", "acme & co/ü", true),
            "https://crm.example/c?phone=%2B15551230001&b=acme%20%26%20co%2F%C3%BC&x=$1"
        );
        assert_eq!(
            t.render("+15551230001", "acme", false),
            "https://crm.example/c?phone=+15551230001&b=acme&x=$1"
        );
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_refused() {
        let e = Template::parse("http://x/${caller}").unwrap_err();
        assert!(e.contains("`${caller}`"), "{e}");
        let e = Template::parse("http://x/${env.TOKEN}").unwrap_err();
        assert!(e.contains("unknown placeholder"), "{e}");
        let e = Template::parse("http://x/${number").unwrap_err();
        assert!(e.contains("closing"), "{e}");

        let e = HttpDirectory::build(&cfg("http://x/${nope}"), Country::default(), &no_env)
            .err()
            .unwrap();
        assert!(e.starts_with("url: unknown placeholder"), "{e}");
    }

    #[test]
    fn body_strings_are_templates_without_encoding() {
        let raw = json!({
            "phone": "${number}",
            "query": { "brand": "${brand}", "tags": ["ivr", "${brand}-x"] },
            "limit": 1,
            "active": true
        });
        let b = BodyNode::parse(&raw, "body").unwrap();
        assert_eq!(
            b.render("+15551230001", "a b"),
            json!({
                "phone": "+15551230001",
                "query": { "brand": "a b", "tags": ["ivr", "a b-x"] },
                "limit": 1,
                "active": true
            })
        );
        let (at, e) = BodyNode::parse(&json!({ "q": { "x": "${who}" } }), "body").unwrap_err();
        assert_eq!(at, "body.q.x");
        assert!(e.contains("`${who}`"), "{e}");
    }

    #[test]
    fn header_env_values_resolve_and_missing_ones_name_the_variable() {
        let env = |n: &str| (n == "CRM_TOKEN").then(|| "s3cret".to_string());
        assert_eq!(
            resolve_env("Bearer ${env.CRM_TOKEN}", &env).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(resolve_env("plain $x", &env).unwrap(), "plain $x");
        let e = resolve_env("Bearer ${env.OTHER}", &env).unwrap_err();
        assert!(e.contains("`OTHER`"), "{e}");
        let e = resolve_env("${number}", &env).unwrap_err();
        assert!(e.contains("only use ${env.NAME}"), "{e}");

        let mut c = cfg("http://crm.example/${number}");
        c.headers
            .insert("Authorization".into(), "Bearer ${env.OTHER}".into());
        let e = HttpDirectory::build(&c, Country::default(), &env)
            .err()
            .unwrap();
        assert!(e.contains("headers.Authorization"), "{e}");
        assert!(e.contains("`OTHER`"), "{e}");

        c.headers
            .insert("Authorization".into(), "Bearer ${env.CRM_TOKEN}\n".into());
        let e = HttpDirectory::build(&c, Country::default(), &env)
            .err()
            .unwrap();
        assert!(e.contains("not a valid HTTP header value"), "{e}");
        assert!(!e.contains("s3cret"), "values never appear: {e}");
    }

    #[test]
    fn bad_urls_and_get_bodies_are_refused() {
        let e = HttpDirectory::build(&cfg("http://"), Country::default(), &no_env)
            .err()
            .unwrap();
        assert!(e.starts_with("url:"), "{e}");
        let mut c = cfg("http://crm.example/");
        c.body = Some(serde_json::Map::new());
        let e = HttpDirectory::build(&c, Country::default(), &no_env)
            .err()
            .unwrap();
        assert!(e.contains("only with method: POST"), "{e}");
    }

    #[test]
    fn fields_map_scalars_and_leave_out_the_rest() {
        let fields: BTreeMap<String, String> = [
            ("id", "/customer/id"),
            ("name", "/customer/name"),
            ("vip", "/customer/vip"),
            ("missing", "/customer/nope"),
            ("tags", "/customer/tags"),
            ("nothing", "/customer/null"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let answer = json!({ "customer": {
            "id": 42, "name": "Ann", "vip": true, "tags": ["a"], "null": null
        }});
        let a = map_fields(&fields, &answer).unwrap().unwrap();
        assert_eq!(
            a,
            Account::from([
                ("id".to_string(), "42".to_string()),
                ("name".to_string(), "Ann".to_string()),
                ("vip".to_string(), "true".to_string()),
            ])
        );
    }

    #[test]
    fn null_is_not_found_and_garbage_is_an_error() {
        let fields = BTreeMap::from([("id".to_string(), "/id".to_string())]);
        assert_eq!(map_fields(&fields, &Value::Null).unwrap(), None);
        for bad in [
            json!([1]),
            json!("x"),
            json!({}),
            json!({ "id": "" }),
            json!({ "id": [] }),
        ] {
            let e = map_fields(&fields, &bad).unwrap_err();
            assert!(e.contains("garbage"), "{bad}: {e}");
        }
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("+1 /?&="), "%2B1%20%2F%3F%26%3D");
    }

    #[tokio::test]
    async fn cache_expires_and_stays_bounded() {
        let c = Cache::new(Duration::from_secs(60));
        let key = |i: usize| CacheKey {
            brand: "b".into(),
            number: format!("+1{i}"),
            directory: None,
        };
        c.put(key(0), None);
        assert_eq!(c.get(&key(0)), Some(None));
        assert_eq!(c.get(&key(1)), None);
        for i in 0..MAX_CACHE_ENTRIES + 5 {
            c.put(key(i), None);
        }
        assert_eq!(c.lock().len(), MAX_CACHE_ENTRIES);
        assert_eq!(c.get(&key(MAX_CACHE_ENTRIES + 4)), Some(None));

        let short = Cache::new(Duration::from_millis(1));
        short.put(key(0), Some(Account::new()));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(short.get(&key(0)), None);
    }
}
