//! HTML for the console: escaping, the page frame, and charts drawn on the
//! server as SVG. Every value that reaches a page goes through [`esc`]
//! (text and attributes alike), so a caller id or a brand holding markup
//! shows as text.

use std::fmt::Write as _;

use crate::store::records::CallOutcome;
use crate::store::report::Funnel;

/// `s` with `& < > " '` escaped: safe in text and in quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for a query value.
pub(crate) fn url(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The outcomes the funnel shows, with their chart colours.
pub(crate) const OUTCOMES: [(CallOutcome, &str); 5] = [
    (CallOutcome::Passed, "#2e7d32"),
    (CallOutcome::Failed, "#c62828"),
    (CallOutcome::Abandoned, "#9e9e9e"),
    (CallOutcome::Transferred, "#1565c0"),
    (CallOutcome::NoAuth, "#cfb53b"),
];

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;color:#222}
header{background:#263238;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#cfd8dc;text-decoration:none}header a.on{color:#fff;font-weight:bold}
header form{margin-left:auto}main{padding:16px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#eceff1}td.n{text-align:right}form.f{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin-bottom:8px}
form.f label{display:flex;flex-direction:column;font-size:12px}.tot{display:flex;gap:12px;margin:8px 0}
.tot div{border:1px solid #ccc;padding:6px 12px;border-radius:4px}.tot b{display:block;font-size:20px}
.err{color:#c62828}.muted{color:#777}svg text{font:11px system-ui,sans-serif}";

/// The navigation: (path, title).
const NAV: [(&str, &str); 6] = [
    ("/", "Funnel"),
    ("/calls", "Calls"),
    ("/deliveries", "Deliveries"),
    ("/fraud", "Fraud"),
    ("/flows", "Flows"),
    ("/active", "In progress"),
];

/// A whole page for a logged-in `operator`: the navigation (`current`
/// highlighted), the logout form with the session's CSRF token, `body`.
pub(crate) fn page(title: &str, current: &str, operator: &str, csrf: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, name) in NAV {
        let on = if href == current { " class=\"on\"" } else { "" };
        let _ = write!(nav, "<a href=\"{href}\"{on}>{name}</a>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · voxgate</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head><body>\
         <header><strong>voxgate</strong>{nav}<form method=\"post\" action=\"/logout\">\
         <span>{op}</span> <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <button id=\"logout\">Log out</button></form></header><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title),
        op = esc(operator),
        c = esc(csrf),
    )
}

/// The login page (no session): `csrf` is the pre-session token the form
/// echoes, `error` a fixed message.
pub(crate) fn login_page(csrf: &str, error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"err\" id=\"login-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · voxgate</title>\
         <style>{STYLE}</style></head><body><main><h1>voxgate console</h1>{err}\
         <form method=\"post\" action=\"/login\" class=\"f\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <label>Operator<input name=\"name\" id=\"name\" autocomplete=\"username\" required></label>\
         <label>Password<input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button id=\"login\">Log in</button></form></main></body></html>",
        c = esc(csrf),
    )
}

/// The totals of a funnel, each count in an element with a stable id
/// (`n-calls`, `n-passed`, …).
pub(crate) fn totals(f: &Funnel) -> String {
    let mut s = format!(
        "<div class=\"tot\"><div>calls<b id=\"n-calls\">{}</b></div>",
        f.total()
    );
    for (o, colour) in OUTCOMES {
        let _ = write!(
            s,
            "<div style=\"border-color:{colour}\">{name}<b id=\"n-{name}\">{n}</b></div>",
            name = o.as_str(),
            n = f.get(o)
        );
    }
    s.push_str("</div>");
    s
}

/// A stacked bar chart of `rows` (label, funnel), oldest left; at most
/// the last `max_bars` are drawn.
pub(crate) fn funnel_chart(rows: &[(String, Funnel)], max_bars: usize) -> String {
    let rows = &rows[rows.len().saturating_sub(max_bars)..];
    if rows.is_empty() {
        return "<p class=\"muted\">No calls in this selection.</p>".into();
    }
    let (w, h, left, bottom) = (900.0_f64, 240.0_f64, 48.0_f64, 40.0_f64);
    let top = rows
        .iter()
        .map(|(_, f)| f.total())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let slot = (w - left) / rows.len() as f64;
    let bar = (slot * 0.8).max(1.0);
    let plot = h - bottom - 10.0;
    let mut s = format!(
        "<svg id=\"funnel-chart\" role=\"img\" aria-label=\"calls by outcome\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#999\"/>\
         <line x1=\"{left}\" y1=\"{y0}\" x2=\"{w}\" y2=\"{y0}\" stroke=\"#999\"/>\
         <text x=\"{lx}\" y=\"16\" text-anchor=\"end\">{top}</text><text x=\"{lx}\" y=\"{y0}\" text-anchor=\"end\">0</text>",
        y0 = h - bottom,
        lx = left - 4.0,
    );
    let label_every = (rows.len() / 12).max(1);
    for (i, (label, f)) in rows.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar) / 2.0;
        let mut y = h - bottom;
        for (o, colour) in OUTCOMES {
            let n = f.get(o);
            if n == 0 {
                continue;
            }
            let bh = n as f64 / top * plot;
            y -= bh;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{l} {o}: {n}</title></rect>",
                l = esc(label),
                o = o.as_str()
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                s,
                "<text x=\"{cx:.1}\" y=\"{ty}\" text-anchor=\"middle\">{l}</text>",
                cx = x + bar / 2.0,
                ty = h - bottom + 14.0,
                l = esc(label)
            );
        }
    }
    let mut lx = left;
    for (o, colour) in OUTCOMES {
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"{ly}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{tx}\" y=\"{ty}\">{o}</text>",
            ly = h - 14.0,
            tx = lx + 14.0,
            ty = h - 5.0,
            o = o.as_str()
        );
        lx += 110.0;
    }
    s.push_str("</svg>");
    s
}

/// A table of funnels keyed by `key_name`.
pub(crate) fn funnel_table(id: &str, key_name: &str, rows: &[(String, Funnel)]) -> String {
    let mut s = format!(
        "<table id=\"{id}\"><tr><th>{}</th><th>calls</th>",
        esc(key_name)
    );
    for (o, _) in OUTCOMES {
        let _ = write!(s, "<th>{}</th>", o.as_str());
    }
    s.push_str("</tr>");
    for (k, f) in rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"n\">{}</td>",
            esc(k),
            f.total()
        );
        for (o, _) in OUTCOMES {
            let _ = write!(s, "<td class=\"n\">{}</td>", f.get(o));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of `ms` since the epoch.
pub(crate) fn utc_time(ms: i64) -> String {
    let day = ms.div_euclid(86_400_000);
    let secs = ms.rem_euclid(86_400_000) / 1000;
    format!(
        "{} {:02}:{:02}:{:02}",
        crate::store::report::utc_day(day),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A duration in ms as `1m 05s` / `4.2 s`.
pub(crate) fn span(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_in_text_and_attributes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        let p = page("t", "/", "<b>op</b>", "\"><x", "");
        assert!(!p.contains("<b>op</b>") && !p.contains("\"><x"));
    }

    #[test]
    fn chart_draws_one_bar_segment_per_nonzero_outcome() {
        let mut f = Funnel::default();
        f.add(CallOutcome::Passed, 3);
        f.add(CallOutcome::Failed, 1);
        let svg = funnel_chart(&[("2026-01-01".into(), f)], 60);
        assert_eq!(svg.matches("<rect x=").count(), 2 + OUTCOMES.len());
        assert!(utc_time(86_400_000 + 3_723_000).ends_with("01-02 01:02:03"));
    }
}
