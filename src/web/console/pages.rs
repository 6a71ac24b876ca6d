//! The console's pages, rendered on the blocking pool from the store: the
//! funnel, the call and delivery lists, one call's timeline, the fraud
//! signals, the flows and the calls in progress. The funnel reads exactly
//! what `voxgate report` reads (`Store::report` under a `ReportFilter`).

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::store::browse::DeliveryFilter;
use crate::store::deliveries::DeliveryStatus;
use crate::store::records::{CallOutcome, CallRecord};
use crate::store::report::{civil_day, Period, ReportFilter};
use crate::store::timeline::CallEvent;
use crate::store::{Store, StoreError};
use crate::telemetry::ActiveCall;

use super::graph::{self, FlowGraph};
use super::html::{self, esc, url};

/// Rows per page of the lists.
pub const PAGE_ROWS: u32 = 50;
/// Bars drawn at most in the funnel chart.
const MAX_BARS: usize = 62;
/// The channels a code goes by.
const CHANNELS: [&str; 3] = ["sms", "voice", "email"];

/// A page's query string, decoded (the last value of each name wins).
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Decode `raw` (`a=1&b=x`); empty values count as absent.
    pub fn parse(raw: &str) -> Query {
        Query(
            form_urlencoded::parse(raw.as_bytes())
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k.into_owned(), v.trim().to_string()))
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn owned(&self, k: &str) -> Option<String> {
        self.get(k).map(str::to_string)
    }

    /// The query again, without `page` (for paging links).
    fn without_page(&self) -> String {
        let mut keys: Vec<&String> = self.0.keys().filter(|k| *k != "page").collect();
        keys.sort();
        keys.iter()
            .map(|k| format!("{}={}", url(k), url(&self.0[*k])))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn page(&self) -> u64 {
        self.get("page")
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, 1_000_000)
    }
}

/// Why a page could not be shown: the operator's input (400) or the store.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// A filter value that means nothing; the message says which.
    #[error("{0}")]
    BadInput(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The days `from`/`to` select (`to` included), checked.
fn days(q: &Query) -> Result<(Option<i64>, Option<i64>), PageError> {
    let day = |k: &str| {
        q.get(k)
            .map(|d| {
                civil_day(d).ok_or_else(|| {
                    PageError::BadInput(format!("{k}: `{d}` is not a date (YYYY-MM-DD, UTC)"))
                })
            })
            .transpose()
    };
    Ok((day("from")?, day("to")?.map(|d| d + 1)))
}

/// The funnel filter of a query: the same `ReportFilter` `voxgate report`
/// builds from its options.
pub fn report_filter(q: &Query) -> Result<ReportFilter, PageError> {
    let (from_day, to_day) = days(q)?;
    if let Some(c) = q.get("country") {
        let digits = c.strip_prefix('+').unwrap_or(c);
        let iso = c.len() == 2 && c.chars().all(|x| x.is_ascii_alphabetic());
        let code = (1..=3).contains(&digits.len()) && digits.chars().all(|x| x.is_ascii_digit());
        if !iso && !code {
            return Err(PageError::BadInput(format!(
                "country: `{c}` is neither an ISO code (US) nor a calling code (+44)"
            )));
        }
    }
    if let Some(ch) = q.get("channel") {
        if !CHANNELS.contains(&ch) {
            return Err(PageError::BadInput(format!(
                "channel: `{ch}` is not sms, voice or email"
            )));
        }
    }
    let outcome = q
        .get("outcome")
        .map(|o| {
            CallOutcome::parse(o)
                .ok_or_else(|| PageError::BadInput(format!("outcome: `{o}` is not an outcome")))
        })
        .transpose()?;
    Ok(ReportFilter {
        from_day,
        to_day,
        country: q.owned("country"),
        brand: q.owned("brand"),
        flow: q.owned("flow"),
        channel: q.owned("channel"),
        outcome,
    })
}

fn field(q: &Query, name: &str, label: &str, kind: &str, hint: &str) -> String {
    format!(
        "<label>{label}<input type=\"{kind}\" name=\"{name}\" id=\"f-{name}\" value=\"{v}\" placeholder=\"{hint}\"></label>",
        v = esc(q.get(name).unwrap_or(""))
    )
}

fn select(q: &Query, name: &str, label: &str, options: &[&str]) -> String {
    let cur = q.get(name).unwrap_or("");
    let mut s = format!(
        "<label>{label}<select name=\"{name}\" id=\"f-{name}\"><option value=\"\">any</option>"
    );
    for o in options {
        let sel = if *o == cur { " selected" } else { "" };
        let _ = write!(s, "<option{sel}>{}</option>", esc(o));
    }
    s.push_str("</select></label>");
    s
}

fn outcome_names() -> Vec<&'static str> {
    CallOutcome::ALL.iter().map(|o| o.as_str()).collect()
}

/// The call filter form (`extra`: more fields before the button).
fn call_filters(q: &Query, action: &str, extra: &str) -> String {
    format!(
        "<form class=\"f\" method=\"get\" action=\"{action}\">{}{}{}{}{}{}{extra}<button id=\"apply\">Filter</button></form>",
        field(q, "from", "From (UTC)", "date", "YYYY-MM-DD"),
        field(q, "to", "To (UTC)", "date", "YYYY-MM-DD"),
        field(q, "country", "Country", "text", "US or +44"),
        field(q, "brand", "Brand", "text", ""),
        select(q, "channel", "Code channel", &CHANNELS),
        field(q, "flow", "Flow", "text", ""),
    )
}

/// The funnel page: totals, a chart and a table by day, month or year,
/// and the methods.
pub fn dashboard(store: &Store, q: &Query) -> Result<String, PageError> {
    let filter = report_filter(q)?;
    let period = q
        .get("period")
        .and_then(Period::parse)
        .unwrap_or(Period::Day);
    let rep = store.report(&filter)?;
    let rows = rep.by_period(period);
    let periods: Vec<&str> = Period::ALL.iter().map(|p| p.as_str()).collect();
    let mut s = call_filters(q, "/", &select(q, "period", "By", &periods));
    s.push_str(&html::totals(&rep.total));
    let _ = write!(s, "<h2>By {}</h2>", period.as_str());
    s.push_str(&html::funnel_chart(&rows, MAX_BARS));
    s.push_str(&html::funnel_table("by-period", period.as_str(), &rows));
    s.push_str("<h2>By method</h2>");
    s.push_str(&html::funnel_table("by-method", "method", &rep.by_method));
    Ok(s)
}

fn pager(q: &Query, path: &str, total: u64) -> String {
    let page = q.page();
    let pages = total.div_ceil(u64::from(PAGE_ROWS)).max(1);
    let base = q.without_page();
    let link = |p: u64, text: &str| {
        let sep = if base.is_empty() { "" } else { "&" };
        format!("<a href=\"{path}?{}{sep}page={p}\">{text}</a>", esc(&base))
    };
    let mut s = format!("<p>page {page} of {pages} ");
    if page > 1 {
        s.push_str(&link(page - 1, "« newer"));
        s.push(' ');
    }
    if page < pages {
        s.push_str(&link(page + 1, "older »"));
    }
    s.push_str("</p>");
    s
}

/// The call list: the funnel's filter plus an outcome, newest first.
pub fn calls(store: &Store, q: &Query) -> Result<String, PageError> {
    let filter = report_filter(q)?;
    let total = store.count_calls(&filter)?;
    let offset = (q.page() - 1) * u64::from(PAGE_ROWS);
    let rows = store.list_calls(&filter, offset, PAGE_ROWS)?;
    let mut s = call_filters(
        q,
        "/calls",
        &select(q, "outcome", "Outcome", &outcome_names()),
    );
    let _ = write!(s, "<p><b id=\"calls-total\">{total}</b> calls</p>");
    s.push_str(
        "<table id=\"calls\"><tr><th>started (UTC)</th><th>caller</th><th>country</th><th>brand</th>\
         <th>flow</th><th>outcome</th><th>method</th><th>steps</th><th>codes</th><th>transfer</th><th>hung up by</th><th>length</th></tr>",
    );
    for r in &rows {
        let _ = write!(
            s,
            "<tr><td><a href=\"/calls/{id}\">{t}</a></td><td>{c}</td><td>{cc}</td><td>{b}</td><td>{f}</td>\
             <td class=\"outcome\">{o}</td><td>{m}</td><td class=\"n\">{st}</td><td class=\"n\">{codes}</td><td>{tr}</td><td>{h}</td><td>{len}</td></tr>",
            id = url(&r.call_id),
            t = html::utc_time(r.started_at),
            c = esc(&r.caller_masked),
            cc = esc(&country_label(r)),
            b = esc(&r.brand),
            f = esc(&r.flow),
            o = r.outcome.as_str(),
            m = esc(r.auth_method.as_deref().unwrap_or("")),
            st = r.steps,
            codes = r.codes_sent,
            tr = esc(r.transfer_result.as_deref().unwrap_or("")),
            h = esc(r.hangup_by.as_deref().unwrap_or("")),
            len = html::span(r.ended_at - r.started_at),
        );
    }
    s.push_str("</table>");
    s.push_str(&pager(q, "/calls", total));
    Ok(s)
}

fn country_label(r: &CallRecord) -> String {
    match (r.country.as_str(), r.calling_code.as_str()) {
        ("", "") => String::new(),
        (c, "") => c.to_string(),
        (c, code) => format!("{c} +{code}"),
    }
}

/// One call: what its record holds, its event timeline, and a summary of
/// the record in the order it happened.
pub fn call(store: &Store, call_id: &str) -> Result<Option<String>, PageError> {
    let Some(r) = store.call_record(call_id)? else {
        return Ok(None);
    };
    let mut s = format!(
        "<table id=\"call\"><tr><th>call</th><td>{}</td></tr><tr><th>caller</th><td>{}</td></tr>\
         <tr><th>country</th><td>{}</td></tr><tr><th>dialled</th><td>{}</td></tr><tr><th>brand</th><td>{}</td></tr>\
         <tr><th>flow</th><td>{}</td></tr><tr><th>outcome</th><td>{}</td></tr><tr><th>lookup</th><td>{}</td></tr></table>",
        esc(&r.call_id),
        esc(&r.caller_masked),
        esc(&country_label(&r)),
        esc(&r.dialled),
        esc(&r.brand),
        esc(&r.flow),
        r.outcome.as_str(),
        esc(r.lookup.as_deref().unwrap_or("")),
    );
    timeline(&mut s, &store.call_events(call_id)?, r.started_at);
    s.push_str("<h2>Summary</h2><ol id=\"summary\">");
    let at = |ms: i64| format!("+{}", html::span(ms - r.started_at));
    let _ = write!(
        s,
        "<li>{} UTC: flow <b>{}</b> started</li>",
        html::utc_time(r.started_at),
        esc(&r.flow)
    );
    if let Some(a) = r.answered_at {
        let _ = write!(s, "<li>{}: answered</li>", at(a));
    }
    for (i, step) in r.path.split('>').filter(|p| !p.is_empty()).enumerate() {
        let _ = write!(s, "<li>step {}: {}</li>", i + 1, esc(step));
    }
    if r.codes_sent > 0 || r.code_send.is_some() {
        let _ = write!(
            s,
            "<li>codes sent: {} (last send: {})</li>",
            r.codes_sent,
            esc(r.code_send.as_deref().unwrap_or("-"))
        );
    }
    for m in &r.methods {
        let reasons = if m.reasons.is_empty() {
            String::new()
        } else {
            format!(" — {}", esc(&m.reasons.join("; ")))
        };
        let _ = write!(
            s,
            "<li>{}: {} attempt(s), {}{reasons}</li>",
            esc(&m.method),
            m.attempts,
            esc(&m.result)
        );
    }
    if let Some(t) = &r.transfer_result {
        let _ = write!(
            s,
            "<li>transfer: {}{}</li>",
            esc(t),
            r.transfer_agent
                .as_deref()
                .map(|a| format!(" to {}", esc(a)))
                .unwrap_or_default()
        );
    }
    let _ = write!(
        s,
        "<li>{}: ended{} after {} step(s)</li></ol>",
        at(r.ended_at),
        r.hangup_by
            .as_deref()
            .map(|h| format!(", hung up by {}", esc(h)))
            .unwrap_or_default(),
        r.steps
    );
    Ok(Some(s))
}

/// The call's events as a table: time from the call's start, the event,
/// its fields (what the event carries, escaped; empty ones left out).
fn timeline(s: &mut String, events: &[CallEvent], started_at: i64) {
    s.push_str("<h2>Timeline</h2>");
    if events.is_empty() {
        s.push_str("<p>No events stored for this call.</p>");
        return;
    }
    s.push_str("<table id=\"timeline\"><tr><th>time</th><th>event</th><th>details</th></tr>");
    for e in events {
        let fields = match serde_json::from_str::<serde_json::Value>(&e.details) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let details: Vec<String> = fields
            .iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(t) if t.is_empty() => return None,
                    serde_json::Value::Null => return None,
                    serde_json::Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                Some(format!("{}={}", esc(k), esc(&v)))
            })
            .collect();
        let _ = write!(
            s,
            "<tr><td>+{:.3} s</td><td>{}</td><td>{}</td></tr>",
            (e.at - started_at) as f64 / 1000.0,
            esc(&e.kind),
            details.join(" ")
        );
    }
    s.push_str("</table>");
}

/// The code deliveries, newest first.
pub fn deliveries(store: &Store, q: &Query) -> Result<String, PageError> {
    let (from_day, to_day) = days(q)?;
    let calling_code = match q.get("country") {
        None => None,
        Some(c) => {
            let digits = c.strip_prefix('+').unwrap_or(c);
            if (1..=3).contains(&digits.len()) && digits.chars().all(|x| x.is_ascii_digit()) {
                Some(digits.to_string())
            } else {
                let id = c
                    .to_ascii_uppercase()
                    .parse::<phonenumber::country::Id>()
                    .ok();
                let code = id
                    .and_then(|id| phonenumber::metadata::DATABASE.by_id(id.as_ref()))
                    .map(|m| m.country_code().to_string());
                Some(code.ok_or_else(|| {
                    PageError::BadInput(format!(
                        "country: `{c}` is neither an ISO code (US) nor a calling code (+44)"
                    ))
                })?)
            }
        }
    };
    let filter = DeliveryFilter {
        from_day,
        to_day,
        channel: q.owned("channel"),
        status: q.owned("status"),
        calling_code,
    };
    let offset = (q.page() - 1) * u64::from(PAGE_ROWS);
    let (rows, total) = store.list_deliveries(&filter, offset, PAGE_ROWS)?;
    let statuses: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
    let mut s = format!(
        "<form class=\"f\" method=\"get\" action=\"/deliveries\">{}{}{}{}{}<button id=\"apply\">Filter</button></form>",
        field(q, "from", "From (UTC)", "date", ""),
        field(q, "to", "To (UTC)", "date", ""),
        field(q, "country", "Country", "text", "US or +44"),
        select(q, "channel", "Channel", &CHANNELS),
        select(q, "status", "Status", &statuses),
    );
    let _ = write!(
        s,
        "<p><b id=\"deliveries-total\">{total}</b> deliveries</p>"
    );
    s.push_str("<table id=\"deliveries\"><tr><th>sent (UTC)</th><th>channel</th><th>gateway</th><th>to</th><th>status</th><th>error</th><th>to last status</th></tr>");
    for d in &rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"status\">{}</td><td>{}</td><td>{}</td></tr>",
            html::utc_time(d.created_at),
            esc(&d.channel),
            esc(&d.gateway),
            esc(&d.to_masked),
            esc(&d.status),
            esc(d.error.as_deref().unwrap_or("")),
            html::span(d.took_ms),
        );
    }
    s.push_str("</table>");
    s.push_str(&pager(q, "/deliveries", total));
    Ok(s)
}

/// The fraud signals over the last `days` days (default 7).
pub fn fraud(store: &Store, q: &Query, now_ms: i64) -> Result<String, PageError> {
    let days: i64 = q
        .get("days")
        .and_then(|d| d.parse().ok())
        .unwrap_or(7)
        .clamp(1, 3650);
    let threshold: u32 = q
        .get("min")
        .and_then(|d| d.parse().ok())
        .unwrap_or(3)
        .clamp(2, 1000);
    let f = store.fraud_signals(now_ms - days * 86_400_000, threshold, 100)?;
    let mut s = format!(
        "<form class=\"f\" method=\"get\" action=\"/fraud\">{}{}<button id=\"apply\">Show</button></form>",
        field(q, "days", "Last days", "number", "7"),
        field(q, "min", "At least", "number", "3"),
    );
    let table = |id: &str, head: &str, rows: Vec<(String, String)>| {
        let mut t = format!("<table id=\"{id}\"><tr>{head}</tr>");
        for (a, b) in rows {
            let _ = write!(
                t,
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&a),
                esc(&b)
            );
        }
        if t.ends_with(&format!("{head}</tr>")) {
            t.push_str("<tr><td colspan=\"2\" class=\"muted\">none</td></tr>");
        }
        t.push_str("</table>");
        t
    };
    s.push_str("<h2>Numbers with repeated failed calls</h2>");
    s.push_str(&table(
        "repeated-failures",
        "<th>caller (masked)</th><th>failed calls</th>",
        f.repeated_failures
            .into_iter()
            .map(|(a, n)| (a, n.to_string()))
            .collect(),
    ));
    s.push_str("<h2>Callers who had codes sent to many numbers (last day)</h2>");
    s.push_str(&table(
        "many-destinations",
        "<th>caller (masked)</th><th>distinct numbers</th>",
        f.many_destinations
            .into_iter()
            .map(|(a, n)| (crate::events::mask_number(&a), n.to_string()))
            .collect(),
    ));
    s.push_str("<h2>Lockouts</h2>");
    let _ = write!(
        s,
        "<p><b id=\"locked-calls\">{}</b> calls met a lockout</p>",
        f.locked_calls
    );
    s.push_str(&table(
        "lockouts",
        "<th>account · factor</th><th>failed checks</th>",
        f.lockouts
            .into_iter()
            .map(|(a, fac, n)| (format!("{a} · {fac}"), n.to_string()))
            .collect(),
    ));
    Ok(s)
}

/// Every loaded flow as a graph.
pub fn flows(graphs: &[FlowGraph]) -> String {
    if graphs.is_empty() {
        return "<p class=\"muted\">No flows loaded in this process.</p>".into();
    }
    let mut s = String::new();
    for g in graphs {
        let _ = write!(s, "<h2>{}</h2>", esc(&g.name));
        if let Some(d) = &g.description {
            let _ = write!(s, "<p>{}</p>", esc(d));
        }
        s.push_str(&graph::svg(g));
    }
    s
}

/// The calls in progress (`None`: this process runs no calls).
pub fn active(calls: Option<&[ActiveCall]>, now_ms: i64) -> String {
    let Some(calls) = calls else {
        return "<p class=\"muted\">This console runs apart from the engine: calls in progress show only when serve runs the console.</p>".into();
    };
    let mut s = format!(
        "<p><b id=\"active-total\">{}</b> calls in progress (refreshes every 5 s)</p>\
         <table id=\"active\"><tr><th>caller</th><th>brand</th><th>flow</th><th>step</th><th>for</th></tr>",
        calls.len()
    );
    for c in calls {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.caller_masked),
            esc(&c.brand),
            esc(&c.flow),
            esc(&c.step),
            html::span(now_ms - c.started_at)
        );
    }
    s.push_str("</table>");
    s
}
