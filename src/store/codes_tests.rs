//! The code store's rules, on real SQLite files.

use super::codes::*;
use super::tests::TempDir;
use super::Store;

const KEY: [u8; 32] = [7u8; 32];

fn rules() -> SendRules {
    SendRules {
        cooldown_ms: 30_000,
        cancel_previous: true,
        per_destination: Window { hour: 5, day: 10 },
        per_caller: Window { hour: 5, day: 20 },
        max_failures: 10,
        lockout_ms: 24 * 3_600_000,
    }
}

const T0: i64 = 1_800_000_000_000;

/// Store code `code` under id `id` for `subject` at `now`.
fn send(s: &Store, id: &str, subject: &str, code: &str, now: i64, r: &SendRules) -> SendDecision {
    let mac = code_mac(&KEY, id, code);
    s.begin_send(
        &NewCode {
            id,
            subject,
            account_id: subject.strip_prefix("acct:"),
            call_id: "call-1",
            channel: "sms",
            destination: "+16502530001",
            caller: Some("+16502530009"),
            mac: &mac,
            now_ms: now,
            expires_at_ms: now + 60_000,
            max_attempts: 3,
        },
        r,
    )
    .unwrap()
}

fn check(s: &Store, subject: &str, code: &str, now: i64, r: &SendRules) -> CheckOutcome {
    s.check_code(&KEY, subject, subject.strip_prefix("acct:"), code, now, r)
        .unwrap()
}

#[test]
fn a_right_code_is_accepted_once() {
    let d = TempDir::new("codes-once");
    let s = Store::open(&d.file("v.db")).unwrap();
    let r = rules();
    assert_eq!(
        send(&s, "c1", "acct:A", "123456", T0, &r),
        SendDecision::Send
    );
    assert_eq!(
        check(&s, "acct:A", "123456", T0 + 1000, &r),
        CheckOutcome::Accepted
    );
    assert_eq!(
        check(&s, "acct:A", "123456", T0 + 2000, &r),
        CheckOutcome::NoCode
    );
    // Another subject never sees it.
    assert_eq!(check(&s, "acct:B", "123456", T0, &r), CheckOutcome::NoCode);
}

#[test]
fn wrong_entries_burn_the_code_and_survive_a_reopen() {
    let d = TempDir::new("codes-burn");
    let r = rules();
    {
        let s = Store::open(&d.file("v.db")).unwrap();
        send(&s, "c1", "acct:A", "123456", T0, &r);
        assert_eq!(
            check(&s, "acct:A", "000000", T0 + 1, &r),
            CheckOutcome::Wrong
        );
        assert_eq!(
            check(&s, "acct:A", "111111", T0 + 2, &r),
            CheckOutcome::Wrong
        );
    }
    // As after a crash: a new process opens the file; the count holds.
    let s = Store::open(&d.file("v.db")).unwrap();
    assert_eq!(
        check(&s, "acct:A", "222222", T0 + 3, &r),
        CheckOutcome::Burnt
    );
    // Burnt: even the right code is refused now.
    assert_eq!(
        check(&s, "acct:A", "123456", T0 + 4, &r),
        CheckOutcome::NoCode
    );
}

#[test]
fn an_expired_code_is_expired_even_when_right() {
    let d = TempDir::new("codes-expiry");
    let s = Store::open(&d.file("v.db")).unwrap();
    let r = rules();
    send(&s, "c1", "num:+16502530001", "123456", T0, &r);
    assert_eq!(
        check(&s, "num:+16502530001", "123456", T0 + 60_000, &r),
        CheckOutcome::Expired
    );
    assert_eq!(
        check(&s, "num:+16502530001", "123456", T0 + 60_001, &r),
        CheckOutcome::NoCode
    );
}

#[test]
fn within_the_cooldown_the_live_code_stands_then_a_resend_replaces_or_keeps_it() {
    let d = TempDir::new("codes-resend");
    let s = Store::open(&d.file("v.db")).unwrap();
    let mut r = rules();
    send(&s, "c1", "acct:A", "111111", T0, &r);
    assert_eq!(
        send(&s, "c2", "acct:A", "222222", T0 + 29_000, &r),
        SendDecision::StillValid
    );
    // After the cooldown a resend cancels the first (resend: new).
    assert_eq!(
        send(&s, "c3", "acct:A", "333333", T0 + 31_000, &r),
        SendDecision::Send
    );
    assert_eq!(
        check(&s, "acct:A", "111111", T0 + 32_000, &r),
        CheckOutcome::Wrong
    );
    assert_eq!(
        check(&s, "acct:A", "333333", T0 + 33_000, &r),
        CheckOutcome::Accepted
    );
    // resend: keep — both stay valid.
    r.cancel_previous = false;
    send(&s, "c4", "acct:B", "444444", T0, &r);
    send(&s, "c5", "acct:B", "555555", T0 + 31_000, &r);
    assert_eq!(
        check(&s, "acct:B", "444444", T0 + 40_000, &r),
        CheckOutcome::Accepted
    );
    assert_eq!(
        check(&s, "acct:B", "555555", T0 + 41_000, &r),
        CheckOutcome::Accepted
    );
}

#[test]
fn send_limits_hold_per_destination_and_per_caller() {
    let d = TempDir::new("codes-limits");
    let s = Store::open(&d.file("v.db")).unwrap();
    let mut r = rules();
    r.cooldown_ms = 0;
    for i in 0..5 {
        assert_eq!(
            send(
                &s,
                &format!("c{i}"),
                &format!("acct:A{i}"),
                "123456",
                T0 + i,
                &r
            ),
            SendDecision::Send
        );
    }
    assert_eq!(
        send(&s, "c6", "acct:A6", "123456", T0 + 10, &r),
        SendDecision::Limited(Limit::DestinationHour)
    );
    // An hour later the hourly limit has room; the daily one counts on.
    let h = 3_600_001;
    for i in 0..5 {
        assert_eq!(
            send(
                &s,
                &format!("d{i}"),
                &format!("acct:B{i}"),
                "1",
                T0 + h + i,
                &r
            ),
            SendDecision::Send
        );
    }
    assert_eq!(
        send(&s, "d6", "acct:B6", "1", T0 + 2 * h, &r),
        SendDecision::Limited(Limit::DestinationDay)
    );
    // The caller limit, with a looser destination limit.
    r.per_destination = Window {
        hour: 100,
        day: 100,
    };
    r.per_caller = Window { hour: 100, day: 10 };
    assert_eq!(
        send(&s, "e1", "acct:C", "1", T0 + 2 * h + 1, &r),
        SendDecision::Limited(Limit::CallerDay)
    );
}

#[test]
fn wrong_codes_across_calls_lock_the_account() {
    let d = TempDir::new("codes-lock");
    let s = Store::open(&d.file("v.db")).unwrap();
    let mut r = rules();
    r.max_failures = 4;
    r.cooldown_ms = 0;
    send(&s, "c1", "acct:A", "123456", T0, &r);
    for i in 0..3 {
        check(&s, "acct:A", "000000", T0 + i, &r);
    }
    send(&s, "c2", "acct:A", "654321", T0 + 10, &r);
    assert_eq!(
        check(&s, "acct:A", "000000", T0 + 11, &r),
        CheckOutcome::Wrong
    );
    // Four failures: locked, for checks and for sends.
    assert_eq!(
        check(&s, "acct:A", "654321", T0 + 12, &r),
        CheckOutcome::Locked
    );
    assert_eq!(
        send(&s, "c3", "acct:A", "1", T0 + 13, &r),
        SendDecision::Locked
    );
    // The window passes: unlocked.
    let later = T0 + r.lockout_ms + 1000;
    assert_eq!(
        send(&s, "c4", "acct:A", "777777", later, &r),
        SendDecision::Send
    );
    assert_eq!(
        check(&s, "acct:A", "777777", later + 1, &r),
        CheckOutcome::Accepted
    );
}

#[test]
fn parallel_wrong_entries_get_no_more_attempts_than_allowed() {
    let d = TempDir::new("codes-race");
    let s = std::sync::Arc::new(Store::open(&d.file("v.db")).unwrap());
    let r = rules();
    send(&s, "c1", "acct:A", "123456", T0, &r);
    let outcomes: Vec<CheckOutcome> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..10)
            .map(|i| {
                let s = s.clone();
                sc.spawn(move || check(&s, "acct:A", &format!("00000{i}"), T0 + 1, &r))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let n = |o| outcomes.iter().filter(|x| **x == o).count();
    assert_eq!(
        (
            n(CheckOutcome::Wrong),
            n(CheckOutcome::Burnt),
            n(CheckOutcome::NoCode)
        ),
        (2, 1, 7),
        "{outcomes:?}"
    );
}

#[test]
fn no_code_is_stored_in_clear_and_ended_codes_are_purged() {
    let d = TempDir::new("codes-clear");
    let path = d.file("v.db");
    let s = Store::open(&path).unwrap();
    let r = rules();
    let code = "48213957";
    send(&s, "c1", "acct:A", code, T0, &r);
    check(&s, "acct:A", "11112222", T0 + 1, &r);
    for f in [path.clone(), d.file("v.db-wal")] {
        if let Ok(bytes) = std::fs::read(&f) {
            let hay = String::from_utf8_lossy(&bytes);
            assert!(!hay.contains(code), "{} holds the code", f.display());
            assert!(!hay.contains("11112222"), "{} holds the entry", f.display());
        }
    }
    assert_eq!(s.purge_codes(T0, T0).unwrap(), (0, 0));
    let day = 86_400_000;
    assert_eq!(
        s.purge_codes(T0 + day + 61_000, T0 + 61_000).unwrap(),
        (1, 1)
    );
    assert!(s.code_states().unwrap().is_empty());
}

#[test]
fn the_records_purge_takes_old_deliveries_with_their_history() {
    use super::deliveries::{DeliveryStatus, NewDelivery};
    let d = TempDir::new("deliveries-purge");
    let s = Store::open(&d.file("v.db")).unwrap();
    for (sid, at) in [("SM-old", T0), ("SM-new", T0 + 10_000)] {
        s.add_delivery(&NewDelivery {
            code_id: None,
            channel: "sms",
            gateway: "tw",
            message_id: Some(sid),
            to_masked: "+1650•••0001",
            status: DeliveryStatus::Queued,
            error: None,
            at_ms: at,
        })
        .unwrap();
        s.record_delivery_status("tw", sid, DeliveryStatus::Delivered, None, at + 1)
            .unwrap();
    }
    s.purge_call_records(T0 + 5_000).unwrap();
    assert!(s.delivery_by_message("tw", "SM-old").unwrap().is_none());
    let kept = s.delivery_by_message("tw", "SM-new").unwrap().unwrap();
    assert_eq!(kept.history.len(), 2);
    let orphans: i64 = s
        .with(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM delivery_statuses WHERE delivery_id NOT IN (SELECT id FROM deliveries)",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(orphans, 0);
}
