//! The console's pages over many call records (bench/README.md, "Console
//! bench"): `cargo bench --bench console_funnel`.
//!
//! N records (env `RECORDS`, default 10,000,000) over 365 days, four
//! countries, two brands, three methods, written in batches of 10,000;
//! `DB=path` keeps the database there and reuses it when it already holds
//! N records (generating ten million takes minutes). Then each page is
//! rendered as the console renders it (the same function the HTTP handler
//! runs on the blocking pool, store queries included) and timed, best of 5:
//! the funnel by day, month and year over everything, one month, one
//! country and channel; the first page of the call list (count and rows)
//! unfiltered and filtered; the fraud signals over a week.

use std::path::PathBuf;
use std::time::Instant;

use voxgate::store::records::{CallOutcome, CallRecord, MethodRecord};
use voxgate::store::report::ReportFilter;
use voxgate::store::Store;
use voxgate::web::console::pages::{self, Query};

const DAY_MS: i64 = 86_400_000;
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600_000;

fn record(i: usize) -> CallRecord {
    let started = START + (i as i64 * 7_919_311) % (365 * DAY_MS);
    let (country, code) = [("US", "1"), ("GB", "44"), ("FR", "33"), ("IN", "91")][i % 4];
    let outcome = CallOutcome::ALL[i % 7 % 5];
    let method = ["sms_code", "passphrase", "voice_code"][i % 3];
    CallRecord {
        call_id: format!("call-{i:09}"),
        started_at: started,
        answered_at: Some(started + 150),
        ended_at: started + 45_000,
        caller_masked: format!("+{code}•••{:04}", i % 10_000),
        country: country.into(),
        calling_code: code.into(),
        dialled: "18005550100".into(),
        brand: ["acme", "globex"][i % 2].into(),
        flow: ["bank", "clinic"][i % 5 / 4].into(),
        steps: 6,
        path: "welcome>lookup>send>code>ok>bye".into(),
        outcome,
        auth_method: Some(method.into()),
        auth_result: Some(
            if outcome == CallOutcome::Passed {
                "passed"
            } else {
                "failed"
            }
            .into(),
        ),
        methods: vec![MethodRecord {
            method: method.into(),
            attempts: 1,
            result: "passed".into(),
            reasons: vec![],
        }],
        lookup: Some("found".into()),
        codes_sent: 1,
        code_send: Some("sent".into()),
        transfer_result: None,
        transfer_agent: None,
        hangup_by: Some("engine".into()),
    }
}

/// Write `n` records in bulk inside SQLite (ten million through the record
/// writer's path take most of an hour on the shared 2-core machine): the
/// same rows [`record`] makes, then the day totals counted from them as
/// the writer counts them, one group per (day, brand, flow, country,
/// calling code, method, outcome).
fn bulk_fill(db: &std::path::Path, n: usize) {
    let c = rusqlite::Connection::open(db).expect("open");
    c.execute_batch("PRAGMA cache_size = -1000000; PRAGMA synchronous = OFF;")
        .expect("pragmas");
    let t = Instant::now();
    let chunk = 1_000_000usize;
    let mut from = 0usize;
    while from < n {
        let to = (from + chunk).min(n);
        c.execute_batch(&format!(
            "BEGIN;
             WITH RECURSIVE s(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM s WHERE i < {last})
             INSERT INTO call_records (call_id, started_at, answered_at, ended_at, caller_masked,
                country, calling_code, dialled, brand, flow, steps, path, outcome, auth_method,
                auth_result, methods, lookup, codes_sent, code_send, hangup_by)
             SELECT printf('call-%09d', i), st, st + 150, st + 45000,
                printf('+%s•••%04d', cc, i % 10000), co, cc, '18005550100',
                CASE i % 2 WHEN 0 THEN 'acme' ELSE 'globex' END,
                CASE i % 5 WHEN 4 THEN 'clinic' ELSE 'bank' END,
                6, 'welcome>lookup>send>code>ok>bye', oc, me,
                CASE oc WHEN 'passed' THEN 'passed' ELSE 'failed' END,
                '[{{\"method\":\"' || me || '\",\"attempts\":1,\"result\":\"passed\",\"reasons\":[]}}]',
                'found', 1, 'sent', 'engine'
             FROM (SELECT i, {START} + (i * 7919311) % (365 * {DAY_MS}) AS st,
                CASE i % 4 WHEN 0 THEN 'US' WHEN 1 THEN 'GB' WHEN 2 THEN 'FR' ELSE 'IN' END AS co,
                CASE i % 4 WHEN 0 THEN '1' WHEN 1 THEN '44' WHEN 2 THEN '33' ELSE '91' END AS cc,
                CASE i % 7 % 5 WHEN 0 THEN 'passed' WHEN 1 THEN 'failed' WHEN 2 THEN 'abandoned'
                    WHEN 3 THEN 'transferred' ELSE 'no_auth' END AS oc,
                CASE i % 3 WHEN 0 THEN 'sms_code' WHEN 1 THEN 'passphrase' ELSE 'voice_code' END AS me
                FROM s);
             COMMIT;",
            last = to - 1
        ))
        .expect("bulk insert");
        from = to;
        eprintln!("{from} records in {:.0} s", t.elapsed().as_secs_f64());
    }
    c.execute_batch(&format!(
        "INSERT INTO call_days (day, brand, flow, country, calling_code, method, outcome, calls)
         SELECT started_at / {DAY_MS}, brand, flow, country, calling_code,
            coalesce(auth_method, 'none'), outcome, count(*)
         FROM call_records GROUP BY 1, 2, 3, 4, 5, 6, 7;"
    ))
    .expect("day totals");
    println!(
        "write (bulk, in SQLite): {n} records in {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

fn time(what: &str, f: impl Fn() -> String) {
    let mut best = f64::MAX;
    let mut len = 0;
    for _ in 0..5 {
        let t = Instant::now();
        len = f().len();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("{what}: {best:.1} ms ({len} bytes of HTML)");
}

fn main() {
    let n: usize = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let db = std::env::var("DB").map(PathBuf::from).unwrap_or_else(|_| {
        let dir = std::env::temp_dir().join(format!("vg-console-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("records.db")
    });
    let store = Store::open(&db).expect("open");
    let have = store.count_calls(&ReportFilter::default()).expect("count") as usize;
    if have != n {
        assert_eq!(
            have,
            0,
            "{} holds {have} records, not {n}: remove it",
            db.display()
        );
        bulk_fill(&db, n);
    } else {
        println!("reusing {} ({n} records)", db.display());
    }
    // The generator matches the records' shape the writer stores.
    assert_eq!(
        store
            .call_record("call-000000007")
            .expect("read")
            .map(|r| r.started_at),
        Some(record(7).started_at)
    );
    println!("records: {n}");
    for (what, q) in [
        ("funnel page, all, by day", ""),
        ("funnel page, all, by month", "period=month"),
        ("funnel page, all, by year", "period=year"),
        ("funnel page, one month", "from=2026-02-01&to=2026-02-28"),
        (
            "funnel page, country GB + channel sms",
            "country=GB&channel=sms",
        ),
        (
            "funnel page, +44, sms, one brand and flow, by month",
            "country=%2B44&channel=sms&brand=acme&flow=bank&period=month",
        ),
    ] {
        let q = Query::parse(q);
        time(what, || pages::dashboard(&store, &q).expect("page"));
    }
    for (what, q) in [
        ("calls page 1, all", ""),
        (
            "calls page 1, country GB + channel sms",
            "country=GB&channel=sms",
        ),
        (
            "calls page 1, outcome abandoned, one month",
            "outcome=abandoned&from=2026-03-01&to=2026-03-31",
        ),
        ("calls page 100, all", "page=100"),
    ] {
        let q = Query::parse(q);
        time(what, || pages::calls(&store, &q).expect("page"));
    }
    let q = Query::parse("days=7");
    let end_of_data = START + 365 * DAY_MS;
    time("fraud page, last 7 days", || {
        pages::fraud(&store, &q, end_of_data).expect("page")
    });
}
