//! Where `lookup_caller` finds accounts: the `lookup:` and `directories:`
//! parts of the config.
//!
//! ```yaml
//! lookup: crm_then_local        # the directory every route uses unless it names one
//! directories:
//!   crm:
//!     type: http
//!     url: "https://crm.example/api/customers?phone=${number}&brand=${brand}"
//!     method: GET               # or POST, with `body:`
//!     headers: { Authorization: "Bearer ${env.CRM_TOKEN}" }
//!     timeout: 3s               # the whole lookup, retries included
//!     retries: 2                # on 5xx and connection errors only
//!     retry_backoff: 200ms      # doubled after each retry
//!     fields: { id: /id, name: /name, phone: /phone, line_type: /line_type }
//!     cache_ttl: 60s            # answers (found and not found) kept this long
//!   crm_then_local: { type: chain, directories: [crm, sqlite] }
//! ```
//! `sqlite` (the embedded account store) is always there under that name.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// The name of the embedded store as a directory.
pub const SQLITE: &str = "sqlite";

/// One configured directory.
#[derive(Clone, Debug, PartialEq)]
pub enum DirectoryConfig {
    /// The embedded account store.
    Sqlite,
    /// A CRM over HTTP.
    Http(HttpDirectoryConfig),
    /// These directories in order; the first that finds the number wins. A
    /// failing member is logged and the next one asked; `error` only when
    /// none found it and one failed.
    Chain(Vec<String>),
}

/// HTTP method of a CRM lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// Query in the URL.
    Get,
    /// `body` as JSON.
    Post,
}

/// A CRM lookup over HTTP.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpDirectoryConfig {
    /// URL template: `${number}` (E.164, percent-encoded) and `${brand}`.
    pub url: String,
    /// GET or POST.
    pub method: HttpMethod,
    /// For POST: a JSON object whose string values are templates as in `url`
    /// (not percent-encoded).
    pub body: Option<serde_json::Map<String, serde_json::Value>>,
    /// Request headers; values may hold `${env.NAME}`, filled from the
    /// environment when `serve` starts (a missing variable is a start-up error).
    /// Header values are never logged.
    pub headers: BTreeMap<String, String>,
    /// Limit for the whole lookup, retries included (default 3 s).
    pub timeout: Duration,
    /// Extra attempts after a 5xx answer or a connection error (default 2);
    /// never after a 4xx.
    pub retries: u32,
    /// Wait before the first retry, doubled for each further one (default 200 ms).
    pub retry_backoff: Duration,
    /// Account field → JSON pointer into the answer (`/customer/id`). `id` is
    /// required; a field whose pointer finds nothing is left out.
    pub fields: BTreeMap<String, String>,
    /// Keep answers (found and not found) this long; `None`: no cache.
    pub cache_ttl: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawDirectory {
    Sqlite {},
    Http {
        url: String,
        method: Option<HttpMethod>,
        body: Option<serde_json::Map<String, serde_json::Value>>,
        headers: Option<BTreeMap<String, String>>,
        timeout: Option<String>,
        retries: Option<u32>,
        retry_backoff: Option<String>,
        fields: BTreeMap<String, String>,
        cache_ttl: Option<String>,
    },
    Chain {
        directories: Vec<String>,
    },
}

impl RawDirectory {
    /// Check and convert; errors start with `directories.<name>`.
    pub(super) fn into_config(self, name: &str) -> Result<DirectoryConfig, String> {
        let at = |m: String| format!("directories.{name}: {m}");
        let dur = |field: &str, v: Option<String>, d: Duration| -> Result<Duration, String> {
            match v {
                None => Ok(d),
                Some(s) => super::parse_duration(&s).map_err(|e| at(format!("{field}: {e}"))),
            }
        };
        match self {
            RawDirectory::Sqlite {} => Ok(DirectoryConfig::Sqlite),
            RawDirectory::Chain { directories } => {
                if directories.is_empty() {
                    return Err(at("a chain needs at least one directory".into()));
                }
                Ok(DirectoryConfig::Chain(directories))
            }
            RawDirectory::Http {
                url,
                method,
                body,
                headers,
                timeout,
                retries,
                retry_backoff,
                fields,
                cache_ttl,
            } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(at(format!(
                        "url: `{url}` must start with http:// or https://"
                    )));
                }
                if !fields.contains_key("id") {
                    return Err(at(
                        "fields: `id` is required (the account's id in the answer)".into(),
                    ));
                }
                for (f, p) in &fields {
                    if !(p.is_empty() || p.starts_with('/')) {
                        return Err(at(format!(
                            "fields.{f}: `{p}` is not a JSON pointer (write e.g. /customer/{f})"
                        )));
                    }
                }
                let method = method.unwrap_or(HttpMethod::Get);
                if body.is_some() && method == HttpMethod::Get {
                    return Err(at("body: only with method: POST".into()));
                }
                let timeout = dur("timeout", timeout, Duration::from_secs(3))?;
                if timeout.is_zero() || timeout > Duration::from_secs(30) {
                    return Err(at(
                        "timeout: between 1ms and 30s (a caller is waiting)".into()
                    ));
                }
                let retries = retries.unwrap_or(2);
                if retries > 5 {
                    return Err(at(format!("retries: {retries} is more than 5")));
                }
                Ok(DirectoryConfig::Http(HttpDirectoryConfig {
                    url,
                    method,
                    body,
                    headers: headers.unwrap_or_default(),
                    timeout,
                    retries,
                    retry_backoff: dur("retry_backoff", retry_backoff, Duration::from_millis(200))?,
                    fields,
                    cache_ttl: match cache_ttl {
                        None => None,
                        Some(s) => Some(dur("cache_ttl", Some(s), Duration::ZERO)?)
                            .filter(|d| !d.is_zero()),
                    },
                }))
            }
        }
    }
}

/// Check that every name a chain or route uses exists and no chain loops.
pub(super) fn check_names(
    dirs: &BTreeMap<String, DirectoryConfig>,
    used: impl IntoIterator<Item = (String, String)>,
) -> Result<(), String> {
    for (who, name) in used {
        if !dirs.contains_key(&name) {
            return Err(format!(
                "{who}: no directory `{name}` (known: {})",
                dirs.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for (name, d) in dirs {
        if let DirectoryConfig::Chain(members) = d {
            for m in members {
                if !dirs.contains_key(m) {
                    return Err(format!("directories.{name}: no directory `{m}`"));
                }
            }
            let mut path = vec![name.clone()];
            if loops(dirs, name, &mut path) {
                return Err(format!(
                    "directories.{name}: the chain loops ({})",
                    path.join(" → ")
                ));
            }
        }
    }
    Ok(())
}

fn loops(dirs: &BTreeMap<String, DirectoryConfig>, at: &str, path: &mut Vec<String>) -> bool {
    let Some(DirectoryConfig::Chain(members)) = dirs.get(at) else {
        return false;
    };
    for m in members {
        if path.contains(m) {
            path.push(m.clone());
            return true;
        }
        path.push(m.clone());
        if loops(dirs, m, path) {
            return true;
        }
        path.pop();
    }
    false
}
