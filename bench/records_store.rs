//! Call records through the store, without calls (bench/README.md,
//! "Records bench"): `cargo bench --bench records_store`.
//!
//! N records (env `RECORDS`, default 1,000,000) spread over 365 days and
//! four countries are written as the record writer writes them (batches of
//! 256 in one transaction); then the funnel (`Store::report`, what
//! `voxgate report` and the console run) is timed over everything, over one
//! month, and over one month of one country. Prints records/s, the file's
//! size per million records, and each report's time (best of 3).

use std::time::Instant;

use voxgate::store::records::{CallOutcome, CallRecord, MethodRecord};
use voxgate::store::report::ReportFilter;
use voxgate::store::Store;

const DAY_MS: i64 = 86_400_000;
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600_000;

fn record(i: usize) -> CallRecord {
    let started = START + (i as i64 * 7_919_311) % (365 * DAY_MS);
    let (country, code) = [("US", "1"), ("GB", "44"), ("FR", "33"), ("IN", "91")][i % 4];
    let outcome = CallOutcome::ALL[i % 7 % 5];
    let method = ["sms_code", "passphrase", "totp"][i % 3];
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
        flow: "bank".into(),
        steps: 6,
        path: "welcome>lookup>send>code>ok>bye".into(),
        outcome,
        auth_method: Some(method.into()),
        auth_result: Some("passed".into()),
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

fn main() {
    let n: usize = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("vg-records-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("records.db");
    let store = Store::open(&db).expect("open");

    let t = Instant::now();
    let mut batch = Vec::with_capacity(256);
    for i in 0..n {
        batch.push(record(i));
        if batch.len() == 256 {
            store.insert_call_records(&batch).expect("insert");
            batch.clear();
        }
    }
    store.insert_call_records(&batch).expect("insert");
    let wall = t.elapsed();
    println!(
        "write: {n} records in batches of 256 in {:.1} s = {:.0}/s",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    let size: u64 = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "size: {:.0} MB per million records (with WAL)",
        size as f64 / 1e6 / (n as f64 / 1e6)
    );

    let feb = (
        (START + 31 * DAY_MS) / DAY_MS,
        (START + 59 * DAY_MS) / DAY_MS,
    );
    for (what, f) in [
        ("all", ReportFilter::default()),
        (
            "one month",
            ReportFilter {
                from_day: Some(feb.0),
                to_day: Some(feb.1),
                ..ReportFilter::default()
            },
        ),
        (
            "one month, one country",
            ReportFilter {
                from_day: Some(feb.0),
                to_day: Some(feb.1),
                country: Some("GB".into()),
                ..ReportFilter::default()
            },
        ),
    ] {
        let mut best = f64::MAX;
        let mut calls = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let r = store.report(&f).expect("report");
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            calls = r.total.total();
        }
        println!("report ({what}): {calls} calls in {best:.0} ms");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
