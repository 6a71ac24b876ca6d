use super::*;
use crate::store::records::{CallRecord, MethodRecord};

struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new() -> TempDb {
        let d = std::env::temp_dir().join(format!(
            "vg-report-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDb(d)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `2026-01-31T23:30:00-05:00` → ms UTC.
fn at(rfc3339: &str) -> i64 {
    let (date, rest) = rfc3339.split_once('T').unwrap();
    let (time, offset) = rest.split_at(8);
    let t: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let o: Vec<i64> = offset[1..].split(':').map(|x| x.parse().unwrap()).collect();
    let local = day_start_ms(date).unwrap() + (t[0] * 3600 + t[1] * 60 + t[2]) * 1000;
    local - sign * (o[0] * 3600 + o[1] * 60) * 1000
}

fn rec(
    id: &str,
    started: i64,
    country: &str,
    code: &str,
    brand: &str,
    outcome: CallOutcome,
    method: Option<&str>,
) -> CallRecord {
    CallRecord {
        call_id: id.into(),
        started_at: started,
        answered_at: Some(started + 100),
        ended_at: started + 60_000,
        caller_masked: format!("+{code}•••0001"),
        country: country.into(),
        calling_code: code.into(),
        dialled: "18005550100".into(),
        brand: brand.into(),
        flow: "bank".into(),
        steps: 3,
        path: "a>b>c".into(),
        outcome,
        auth_method: method.map(str::to_string),
        auth_result: method.map(|_| "passed".to_string()),
        methods: method
            .map(|m| {
                vec![MethodRecord {
                    method: m.into(),
                    attempts: 1,
                    result: "passed".into(),
                    reasons: vec![],
                }]
            })
            .unwrap_or_default(),
        lookup: Some("found".into()),
        codes_sent: 0,
        code_send: None,
        transfer_result: None,
        transfer_agent: None,
        hangup_by: Some("engine".into()),
    }
}

fn args(from: Option<&str>, to: Option<&str>) -> ReportArgs {
    ReportArgs {
        from: from.map(str::to_string),
        to: to.map(str::to_string),
        country: None,
        brand: None,
        flow: None,
        channel: None,
        format: ReportFormat::Text,
    }
}

fn store_with_records() -> (TempDb, Store) {
    let d = TempDb::new();
    let s = Store::open(&d.0.join("r.db")).unwrap();
    use CallOutcome::*;
    s.insert_call_records(&[
        // 23:30 in New York on 31 January is 04:30 UTC on 1 February.
        rec(
            "ny",
            at("2026-01-31T23:30:00-05:00"),
            "US",
            "1",
            "acme",
            Passed,
            Some("sms_code"),
        ),
        // 00:30 in Paris on 1 February is 23:30 UTC on 31 January.
        rec(
            "paris",
            at("2026-02-01T00:30:00+01:00"),
            "FR",
            "33",
            "acme",
            Failed,
            Some("totp"),
        ),
        // The last millisecond of January and the first of February, UTC.
        rec(
            "jan-last",
            at("2026-01-31T23:59:59+00:00") + 999,
            "GB",
            "44",
            "globex",
            Abandoned,
            None,
        ),
        rec(
            "feb-first",
            at("2026-02-01T00:00:00+00:00"),
            "GB",
            "44",
            "globex",
            Transferred,
            None,
        ),
        // 01:00 in Tokyo on 1 March is 16:00 UTC on 28 February.
        rec(
            "tokyo",
            at("2026-03-01T01:00:00+09:00"),
            "JP",
            "81",
            "acme",
            Passed,
            Some("passphrase"),
        ),
        rec(
            "old",
            at("2025-12-31T12:00:00+00:00"),
            "US",
            "1",
            "acme",
            NoAuth,
            None,
        ),
    ])
    .unwrap();
    (d, s)
}

#[test]
fn dates_are_utc_days_and_bad_ones_are_clear_errors() {
    assert_eq!(day_start_ms("1970-01-01").unwrap(), 0);
    assert_eq!(day_start_ms("2026-03-01").unwrap(), 1_772_323_200_000);
    assert_eq!(
        day_start_ms("2024-02-29").unwrap() + DAY_MS,
        day_start_ms("2024-03-01").unwrap()
    );
    for (bad, says) in [
        ("2026-02-29", "does not exist"),
        ("2026-13-01", "month 13"),
        ("2026-1-01", "YYYY-MM-DD"),
        ("yesterday", "YYYY-MM-DD"),
        ("2026-01-01T00:00", "YYYY-MM-DD"),
    ] {
        let e = day_start_ms(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    let e = filter_of(&args(Some("2026-02-02"), Some("2026-02-01"))).unwrap_err();
    assert!(e.to_string().contains("--from is after --to"), "{e}");
    let e = filter_of(&args(Some("2026-02-30"), None)).unwrap_err();
    assert!(format!("{e:#}").starts_with("--from 2026-02-30: "), "{e:#}");
    let mut a = args(None, None);
    a.country = Some("United".into());
    assert!(filter_of(&a).unwrap_err().to_string().contains("ISO 3166"));
}

#[test]
fn month_boundaries_and_time_zones_fall_on_their_utc_day() {
    let (_d, s) = store_with_records();
    let all = s.report(&filter_of(&args(None, None)).unwrap()).unwrap();
    assert_eq!(all.total.total(), 6);
    let days: Vec<(&str, u64)> = all
        .by_day
        .iter()
        .map(|(d, f)| (d.as_str(), f.total()))
        .collect();
    assert_eq!(
        days,
        vec![
            ("2025-12-31", 1),
            ("2026-01-31", 2),
            ("2026-02-01", 2),
            ("2026-02-28", 1)
        ]
    );
    // January (UTC): Paris's early-February call and the last millisecond.
    let jan = s
        .report(&filter_of(&args(Some("2026-01-01"), Some("2026-01-31"))).unwrap())
        .unwrap();
    assert_eq!(
        (jan.total.total(), jan.total.failed, jan.total.abandoned),
        (2, 1, 1)
    );
    // February: New York's late-January call, the first millisecond, Tokyo's 1 March.
    let feb = s
        .report(&filter_of(&args(Some("2026-02-01"), Some("2026-02-28"))).unwrap())
        .unwrap();
    assert_eq!(
        (feb.total.total(), feb.total.passed, feb.total.transferred),
        (3, 2, 1)
    );
    // One day, both ends included.
    let one = s
        .report(&filter_of(&args(Some("2026-02-01"), Some("2026-02-01"))).unwrap())
        .unwrap();
    assert_eq!(one.total.total(), 2);
    let methods: Vec<(&str, u64)> = feb
        .by_method
        .iter()
        .map(|(m, f)| (m.as_str(), f.total()))
        .collect();
    assert_eq!(
        methods,
        vec![("none", 1), ("passphrase", 1), ("sms_code", 1)]
    );
}

#[test]
fn filters_by_country_brand_and_flow() {
    let (_d, s) = store_with_records();
    let mut a = args(None, None);
    a.country = Some("gb".into());
    assert_eq!(s.report(&filter_of(&a).unwrap()).unwrap().total.total(), 2);
    a.country = Some("+44".into());
    assert_eq!(s.report(&filter_of(&a).unwrap()).unwrap().total.total(), 2);
    a.country = Some("1".into());
    assert_eq!(s.report(&filter_of(&a).unwrap()).unwrap().total.total(), 2);
    a.country = None;
    a.brand = Some("acme".into());
    let r = s.report(&filter_of(&a).unwrap()).unwrap();
    assert_eq!((r.total.total(), r.total.passed), (4, 2));
    a.flow = Some("clinic".into());
    assert_eq!(s.report(&filter_of(&a).unwrap()).unwrap().total.total(), 0);
}

#[test]
fn renders_text_csv_and_json() {
    let (_d, s) = store_with_records();
    let r = s
        .report(&filter_of(&args(Some("2026-02-01"), Some("2026-02-28"))).unwrap())
        .unwrap();
    let t = render(&r, ReportFormat::Text);
    assert!(
        t.starts_with("calls: 3, passed 2, failed 0, abandoned 0, transferred 1, no_auth 0\n"),
        "{t}"
    );
    assert!(t.contains("by day (UTC)"), "{t}");
    let c = render(&r, ReportFormat::Csv);
    let lines: Vec<&str> = c.lines().collect();
    assert_eq!(
        lines[0],
        "section,key,calls,passed,failed,abandoned,transferred,no_auth"
    );
    assert_eq!(lines[1], "total,,3,2,0,0,1,0");
    assert!(lines.contains(&"day,2026-02-01,2,1,0,0,1,0"), "{c}");
    let j: serde_json::Value = serde_json::from_str(&render(&r, ReportFormat::Json)).unwrap();
    assert_eq!(j["total"]["calls"], 3);
    assert_eq!(j["by_day"][1]["day"], "2026-02-28");
    assert_eq!(j["by_method"][2]["method"], "sms_code");
    let empty = s
        .report(&filter_of(&args(Some("2030-01-01"), None)).unwrap())
        .unwrap();
    assert_eq!(render(&empty, ReportFormat::Text).lines().count(), 1);
}

#[test]
fn retention_purges_old_records_only() {
    let (_d, s) = store_with_records();
    let n = s
        .purge_call_records(day_start_ms("2026-01-01").unwrap())
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(s.call_records().unwrap().len(), 5);
    // The day totals went with them.
    let all = s.report(&filter_of(&args(None, None)).unwrap()).unwrap();
    assert_eq!(all.total.total(), 5);
    assert_eq!(all.by_day[0].0, "2026-01-31");
}

#[test]
fn a_call_recorded_twice_counts_once() {
    let (_d, s) = store_with_records();
    let again = s.call_records().unwrap();
    s.insert_call_records(&again[..2]).unwrap();
    assert_eq!(s.call_records().unwrap().len(), 6);
    let all = s.report(&filter_of(&args(None, None)).unwrap()).unwrap();
    assert_eq!(all.total.total(), 6);
}

#[test]
fn utc_days_round_trip() {
    use crate::store::report::utc_day;
    for d in [
        "1970-01-01",
        "2000-02-29",
        "2024-12-31",
        "2026-03-01",
        "2100-03-01",
    ] {
        assert_eq!(utc_day(day_start_ms(d).unwrap() / DAY_MS), d);
    }
}
