//! One-time codes through the store, without calls (see bench/README.md,
//! "Codes bench"): `cargo bench --bench codes_store`.
//!
//! N codes (env `CODES`, default 1,000,000) are sent (`begin_send`: lockout,
//! cooldown and four limit counts, insert, send count — one write
//! transaction each) from THREADS threads (default 4, as calls on the
//! blocking pool would), then each is verified once (one right entry in
//! two, one wrong). Prints sends/s, verifications/s, the latency of both
//! (p50/p99/max), the file's size per million codes, and how long the purge
//! of them all takes and what it gives back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use voxgate::store::codes::{code_mac, NewCode, SendRules, Window};
use voxgate::store::Store;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn show(what: &str, n: usize, wall: Duration, mut lat: Vec<Duration>) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{what}: {n} in {:.1} s = {:.0}/s; latency p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        us(pct(&mut lat, 0.5)),
        us(pct(&mut lat, 0.99)),
        us(pct(&mut lat, 1.0)),
    );
}

fn size(path: &std::path::Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let n = env("CODES", 1_000_000);
    let threads = env("THREADS", 4).max(1);
    let dir = std::env::temp_dir().join(format!("vg-bench-codes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("codes.db");
    let store = Arc::new(Store::open(&path).expect("open store"));
    let key = [9u8; 32];
    let rules = SendRules {
        cooldown_ms: 30_000,
        cancel_previous: true,
        per_destination: Window { hour: 5, day: 10 },
        per_caller: Window { hour: 5, day: 20 },
        max_failures: 10,
        lockout_ms: 86_400_000,
    };
    let t0: i64 = 1_800_000_000_000;
    let code_of = |i: usize| format!("{:06}", (i * 7919) % 1_000_000);
    println!("codes {n}, threads {threads}, database {}", path.display());

    let run = |verify: bool| -> (Duration, Vec<Duration>) {
        let start = Instant::now();
        let lat = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let store = store.clone();
                    sc.spawn(move || {
                        let mut lat = Vec::with_capacity(n / threads + 1);
                        for i in (t..n).step_by(threads) {
                            let (id, subject) = (format!("c{i:016x}"), format!("acct:A{i}"));
                            let dest = format!("+1650{:07}", i % 10_000_000);
                            let now = t0 + i as i64;
                            let began = Instant::now();
                            if verify {
                                let entered = if i % 2 == 0 { code_of(i) } else { "x".into() };
                                store
                                    .check_code(
                                        &key,
                                        &subject,
                                        Some(&subject[5..]),
                                        &entered,
                                        now + 1000,
                                        &rules,
                                    )
                                    .expect("check");
                            } else {
                                let mac = code_mac(&key, &id, &code_of(i));
                                store
                                    .begin_send(
                                        &NewCode {
                                            id: &id,
                                            subject: &subject,
                                            account_id: Some(&subject[5..]),
                                            call_id: "bench",
                                            channel: "sms",
                                            destination: &dest,
                                            caller: Some(&dest),
                                            mac: &mac,
                                            now_ms: now,
                                            expires_at_ms: now + 60_000,
                                            max_attempts: 3,
                                        },
                                        &rules,
                                    )
                                    .expect("send");
                            }
                            lat.push(began.elapsed());
                        }
                        lat
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().expect("bench thread"))
                .collect::<Vec<_>>()
        });
        (start.elapsed(), lat)
    };

    let (wall, lat) = run(false);
    show("send (begin_send)", n, wall, lat);
    let bytes = size(&path);
    println!(
        "store after {n} codes: {:.1} MiB ({:.0} MiB per million codes, {:.0} bytes per code)",
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 * 1e6 / n as f64,
        bytes as f64 / n as f64
    );
    let (wall, lat) = run(true);
    show("verify (check_code)", n, wall, lat);
    println!("states: {:?}", store.code_states().expect("states"));
    let began = Instant::now();
    let later = t0 + n as i64 + 2 * 86_400_000;
    let (codes, sends) = store.purge_codes(later, later).expect("purge");
    println!(
        "purge: {codes} codes and {sends} send counts in {:.2} s; store {:.1} MiB after (SQLite reuses the freed pages)",
        began.elapsed().as_secs_f64(),
        size(&path) as f64 / 1048576.0
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
