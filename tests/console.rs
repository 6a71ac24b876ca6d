//! The operator console over real HTTP (`voxgate console serve` on a
//! loopback port, a plain HTTP/1.1 client): logins with CSRF and a rate
//! limit, sessions that expire, counts against generated records equal to
//! `voxgate report`'s, markup from a record escaped, no full number or
//! code on any page; and the same in a real headless Chromium driven over
//! WebDriver (chromedriver), which also saves docs/console.png.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voxgate::events::{AuthMethod, AuthOutcome, Event};
use voxgate::store::deliveries::{DeliveryStatus, NewDelivery};
use voxgate::store::Store;
use voxgate::telemetry::{Accumulator, CallStart};

const PASSWORD: &str = "correct horse battery";
/// 2026-03-10T12:00:00Z.
const T0: i64 = 1_773_144_000_000;
/// Secrets the generated calls involved: none may reach a page.
const SECRETS: [&str; 3] = ["482913", "blue harvest moon", "JBSWY3DPEHPK3PXP"];

/// One generated call: (full caller number, brand, method, outcome).
struct Gen {
    caller: String,
    brand: String,
    method: AuthMethod,
    outcome: AuthOutcome,
}

fn generated() -> Vec<Gen> {
    let callers = [
        "+447700900123",
        "+14155550134",
        "+33612345678",
        "+447700900999",
    ];
    let methods = [
        AuthMethod::SmsCode,
        AuthMethod::Passphrase,
        AuthMethod::VoiceCode,
        AuthMethod::SmsCode,
    ];
    let outcomes = [
        AuthOutcome::Passed,
        AuthOutcome::Failed,
        AuthOutcome::Passed,
    ];
    (0..37)
        .map(|i| Gen {
            caller: callers[i % 4].to_string(),
            brand: if i == 5 {
                "<script>alert('brand')</script>".into()
            } else {
                ["acme", "globex"][i % 2].into()
            },
            method: methods[i % 4],
            outcome: outcomes[i % 3],
        })
        .collect()
}

/// The records of the generated calls, folded from their events as serve
/// folds them (the caller masked by the fold), plus code deliveries.
fn fill(db: &Path) -> Vec<Gen> {
    let store = Store::open(db).expect("store");
    let gens = generated();
    let mut recs = Vec::new();
    for (i, g) in gens.iter().enumerate() {
        let start = T0 + i as i64 * 3_600_000;
        let mut acc = Accumulator::new(
            CallStart {
                call_id: format!("call-{i}"),
                caller: g.caller.clone(),
                dialled: "18005550100".into(),
                brand: g.brand.clone(),
                flow: "bank".into(),
                started_at_ms: start,
            },
            true,
            "US".parse().expect("country"),
        );
        acc.answered(start + 100);
        for step in ["welcome", "verify", "bye"] {
            acc.fold(&Event::StepEntered {
                step: step.into(),
                kind: "play",
            });
        }
        acc.fold(&Event::Auth {
            step: "verify".into(),
            method: g.method,
            outcome: g.outcome,
            reason: if g.outcome == AuthOutcome::Passed {
                String::new()
            } else {
                "wrong code".into()
            },
        });
        recs.push(acc.finish(start + 30_000));
        if matches!(g.method, AuthMethod::SmsCode) {
            store
                .add_delivery(&NewDelivery {
                    code_id: None,
                    channel: "sms",
                    gateway: "twilio",
                    message_id: Some(&format!("SM{i}")),
                    to_masked: &voxgate::events::mask_number(&g.caller),
                    status: DeliveryStatus::Delivered,
                    error: None,
                    at_ms: start,
                })
                .expect("delivery");
        }
    }
    store.insert_call_records(&recs).expect("records");
    gens
}

fn expected(gens: &[Gen], calling_code: &str, method: AuthMethod) -> (usize, usize) {
    let sel: Vec<&Gen> = gens
        .iter()
        .filter(|g| g.caller.starts_with(&format!("+{calling_code}")) && g.method == method)
        .collect();
    (
        sel.len(),
        sel.iter()
            .filter(|g| g.outcome == AuthOutcome::Passed)
            .count(),
    )
}

struct Console {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    db: PathBuf,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_console(name: &str, yaml: &str) -> (Console, Vec<Gen>) {
    let dir = common::scratch(name);
    let db = dir.join("voxgate.db");
    let gens = fill(&db);
    (console_on(dir, db, yaml), gens)
}

/// `voxgate console serve` on the store `db` (with operator `ana`).
fn console_on(dir: PathBuf, db: PathBuf, yaml: &str) -> Console {
    let cfg = dir.join("voxgate.yaml");
    std::fs::write(
        &cfg,
        format!(
            "database: {}\nflows_dir: {}\n{yaml}",
            db.display(),
            common::root().join("flows").display()
        ),
    )
    .expect("config");
    let mut add = Command::new(common::bin())
        .args(["console", "--config"])
        .arg(&cfg)
        .args(["add-user", "ana"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("add-user");
    add.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("write");
    assert!(add.wait().expect("wait").success(), "add-user failed");
    let mut child = Command::new(common::bin())
        .args(["console", "--config"])
        .arg(&cfg)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("console serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let addr: SocketAddr = line
        .trim()
        .trim_start_matches("console listening on http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("no address in {line:?}"));
    Console {
        child,
        addr,
        dir,
        db,
    }
}

/// A response: status, headers (lower-case names), body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The value `name=` sets, if any.
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().iter().find_map(|c| {
            c.split(';')
                .next()?
                .strip_prefix(&format!("{name}="))
                .map(str::to_string)
        })
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, cookie: &str, body: &str) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

fn form_value(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let i = html
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + key.len();
    html[i..].split('"').next().unwrap_or("").to_string()
}

/// Log in; returns the session cookie (`vg_session=…`).
fn login(addr: SocketAddr, name: &str, password: &str) -> Result<String, Resp> {
    let page = http(addr, "GET", "/login", "", "");
    let pre = page.cookie("vg_login").expect("login cookie");
    let csrf = form_value(&page.body, "csrf");
    let r = http(
        addr,
        "POST",
        "/login",
        &format!("vg_login={pre}"),
        &format!(
            "csrf={csrf}&name={name}&password={}",
            password.replace(' ', "+")
        ),
    );
    match r.cookie("vg_session") {
        Some(t) if r.status == 303 => Ok(format!("vg_session={t}")),
        _ => Err(r),
    }
}

fn count(html: &str, id: &str) -> usize {
    let key = format!("id=\"{id}\">");
    let i = html.find(&key).unwrap_or_else(|| panic!("no #{id}")) + key.len();
    html[i..]
        .split('<')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .expect("a count")
}

fn no_secrets(html: &str, gens: &[Gen], page: &str) {
    for g in gens {
        assert!(
            !html.contains(&g.caller),
            "{page} shows the full number {}",
            g.caller
        );
        assert!(
            !html.contains(&g.caller[1..]),
            "{page} shows the digits of {}",
            g.caller
        );
    }
    for s in SECRETS {
        assert!(!html.contains(s), "{page} shows a secret");
    }
}

#[test]
fn login_csrf_rate_limit_expiry_and_counts_over_http() {
    let (c, gens) = start_console(
        "console-http",
        "console:\n  session_ttl: 3s\n  login_attempts: 3\n",
    );
    let a = c.addr;
    // No session: every page sends the browser to log in.
    for p in [
        "/",
        "/calls",
        "/deliveries",
        "/fraud",
        "/flows",
        "/active",
        "/calls/call-1",
    ] {
        let r = http(a, "GET", p, "", "");
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/login")),
            "{p}"
        );
    }
    // A login POST without the form's token, or with another one, is refused.
    let r = http(
        a,
        "POST",
        "/login",
        "",
        &format!("name=ana&password={}", PASSWORD.replace(' ', "+")),
    );
    assert_eq!(r.status, 403);
    assert!(r.cookie("vg_session").is_none());
    let page = http(a, "GET", "/login", "", "");
    let r = http(
        a,
        "POST",
        "/login",
        "vg_login=forged",
        &format!(
            "csrf={}&name=ana&password=x",
            form_value(&page.body, "csrf")
        ),
    );
    assert_eq!(r.status, 403);
    // A wrong password is refused.
    let r = login(a, "ana", "wrong password!").expect_err("wrong password accepted");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Wrong operator name or password"));
    // The right one opens a session with a strict cookie.
    let cookie =
        login(a, "ana", PASSWORD).unwrap_or_else(|r| panic!("login: {} {}", r.status, r.body));
    let r = http(a, "GET", "/", &cookie, "");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-security-policy")
        .is_some_and(|v| v.contains("default-src 'none'")));
    assert_eq!(count(&r.body, "n-calls"), gens.len());
    // Filtered by country and channel, the counts match the generated
    // calls and `voxgate report` (the same query).
    let (n, passed) = expected(&gens, "44", AuthMethod::SmsCode);
    assert!(n > 0);
    let r = http(
        a,
        "GET",
        "/?country=%2B44&channel=sms&period=month",
        &cookie,
        "",
    );
    assert_eq!(
        (count(&r.body, "n-calls"), count(&r.body, "n-passed")),
        (n, passed),
        "{}",
        r.body
    );
    let out = Command::new(common::bin())
        .args(["report", "--database"])
        .arg(&c.db)
        .args(["--country", "+44", "--channel", "sms", "--format", "json"])
        .output()
        .expect("report");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    assert_eq!(v["total"]["calls"], n);
    assert_eq!(v["total"]["passed"], passed);
    let r = http(a, "GET", "/calls?country=%2B44&channel=sms", &cookie, "");
    assert_eq!(count(&r.body, "calls-total"), n);
    assert_eq!(r.body.matches("<td class=\"outcome\">").count(), n);
    let r = http(
        a,
        "GET",
        "/deliveries?country=%2B44&channel=sms&status=delivered",
        &cookie,
        "",
    );
    assert_eq!(count(&r.body, "deliveries-total"), n);
    // Bad filter input is a 400 with a message, not a failure.
    assert_eq!(http(a, "GET", "/?from=2026-02-30", &cookie, "").status, 400);
    // Markup in a record shows as text; no page holds a full number or a secret.
    let r = http(a, "GET", "/calls?page=1", &cookie, "");
    assert!(!r.body.contains("<script>alert"), "brand not escaped");
    assert!(r.body.contains("&lt;script&gt;alert(&#39;brand&#39;)"));
    for p in [
        "/",
        "/calls",
        "/calls/call-5",
        "/calls/call-1",
        "/deliveries",
        "/fraud?days=3650&min=2",
        "/flows",
        "/active",
    ] {
        let r = http(a, "GET", p, &cookie, "");
        assert_eq!(r.status, 200, "{p}");
        assert!(!r.body.contains("<script"), "{p} has a script element");
        no_secrets(&r.body, &gens, p);
    }
    let r = http(a, "GET", "/calls/call-1", &cookie, "");
    assert!(
        r.body.contains("wrong code") && r.body.contains("welcome"),
        "{}",
        r.body
    );
    let r = http(a, "GET", "/fraud?days=3650&min=2", &cookie, "");
    assert!(
        r.body.contains("+1•••0134"),
        "repeated failures of +14155550134 not shown"
    );
    // Logout needs the session's CSRF token.
    let home = http(a, "GET", "/", &cookie, "");
    assert_eq!(http(a, "POST", "/logout", &cookie, "csrf=nope").status, 403);
    let r = http(
        a,
        "POST",
        "/logout",
        &cookie,
        &format!("csrf={}", form_value(&home.body, "csrf")),
    );
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    assert_eq!(
        http(a, "GET", "/", &cookie, "").status,
        303,
        "session lives after logout"
    );
    // Sessions expire (session_ttl: 3s).
    let cookie = login(a, "ana", PASSWORD).unwrap_or_else(|r| panic!("login: {}", r.status));
    assert_eq!(http(a, "GET", "/", &cookie, "").status, 200);
    std::thread::sleep(Duration::from_millis(3_300));
    let r = http(a, "GET", "/", &cookie, "");
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login")),
        "expired session let in"
    );
    // Three failures in a minute (the wrong password above and two
    // guesses), then even the right password waits.
    for _ in 0..2 {
        assert_eq!(
            login(a, "ana", "guess guess guess")
                .expect_err("guess")
                .status,
            401
        );
    }
    assert_eq!(
        login(a, "ana", PASSWORD).expect_err("rate limit").status,
        429
    );
    let _ = std::fs::remove_dir_all(&c.dir);
}

// ---- the browser ---------------------------------------------------------

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = http_json(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).expect("connect chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    // chromedriver may keep the connection open: read by Content-Length.
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read") == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("body");
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}

impl Driver {
    fn start(profile: &Path) -> Driver {
        let port = common::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.display())
            ]}
        }}});
        let mut d = Driver {
            child,
            addr,
            session: String::new(),
        };
        let v = http_json(addr, "POST", "/session", Some(caps));
        d.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        // Finds wait up to 5 s for an element of a page still loading.
        d.cmd(
            "POST",
            "/timeouts",
            Some(serde_json::json!({"implicit": 5000})),
        );
        d
    }

    fn cmd(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let v = http_json(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        );
        assert!(v["value"].get("error").is_none(), "{method} {path}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(serde_json::json!({"url": url})));
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(serde_json::json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|x| x.as_str())
            .expect("element id")
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{el}/clear"),
            Some(serde_json::json!({})),
        );
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(serde_json::json!({"text": text})),
        );
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{el}/click"),
            Some(serde_json::json!({})),
        );
    }

    fn text(&self, css: &str) -> String {
        let el = self.find(css);
        self.cmd("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

#[test]
fn browser_logs_in_filters_and_sees_the_right_counts() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        eprintln!("SKIPPED: {CHROMIUM} or {CHROMEDRIVER} is absent (apt-get install chromium chromium-driver); the browser test did not run");
        return;
    }
    let (c, gens) = start_console("console-browser", "console:\n  session_ttl: 6s\n");
    let base = format!("http://{}", c.addr);
    let profile = c.dir.join("chromium-profile");
    let d = Driver::start(&profile);
    // A wrong password is refused.
    d.go(&format!("{base}/"));
    assert!(d.url().ends_with("/login"), "{}", d.url());
    d.type_into("#name", "ana");
    d.type_into("#password", "not the password");
    d.click("#login");
    assert!(d
        .text("#login-error")
        .contains("Wrong operator name or password"));
    // The right one reaches the funnel with every call.
    d.type_into("#name", "ana");
    d.type_into("#password", PASSWORD);
    d.click("#login");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.url().ends_with('/') {
        assert!(Instant::now() < deadline, "not logged in: {}", d.url());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.text("#n-calls").parse::<usize>().ok(), Some(gens.len()));
    // Filter by country code and channel through the form.
    d.type_into("#f-country", "+44");
    // The channel select's options: any, sms, voice, email.
    d.click("#f-channel option:nth-child(2)");
    d.click("#apply");
    let (n, passed) = expected(&gens, "44", AuthMethod::SmsCode);
    // The click may return before the form's navigation lands.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.url().contains("channel=sms") {
        assert!(Instant::now() < deadline, "filter not applied: {}", d.url());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.text("#n-calls").parse::<usize>().ok(), Some(n));
    assert_eq!(d.text("#n-passed").parse::<usize>().ok(), Some(passed));
    no_secrets(&d.source(), &gens, "dashboard (browser)");
    // The dashboard as a picture for the docs (every call, by day).
    d.go(&format!("{base}/?from=2026-03-10&to=2026-03-12"));
    let png = d.cmd("GET", "/screenshot", None);
    let png = data_encoding::BASE64
        .decode(png.as_str().expect("png").as_bytes())
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(common::root().join("docs/console.png"), &png).expect("docs/console.png");
    // The call list under the same filter, and its rows' pages.
    d.go(&format!("{base}/calls?country=%2B44&channel=sms"));
    assert_eq!(d.text("#calls-total").parse::<usize>().ok(), Some(n));
    no_secrets(&d.source(), &gens, "calls (browser)");
    d.go(&format!("{base}/calls/call-0"));
    no_secrets(&d.source(), &gens, "call (browser)");
    // The session expires (6 s): back to the login form.
    std::thread::sleep(Duration::from_secs(7));
    d.go(&format!("{base}/calls"));
    assert!(
        d.url().ends_with("/login"),
        "expired session still in: {}",
        d.url()
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&c.dir);
}

/// A real call (sipp keying a wrong authenticator code into
/// tests/flows_totp) through `voxgate serve` writing records: its page in
/// the console shows the call's events as a timeline, in the order and
/// with the names the `--events` file has, times from the call's start,
/// and neither the TOTP secret, the keyed code nor the full number.
#[test]
fn a_real_calls_page_shows_its_event_timeline() {
    const NUM: &str = "+16502530077";
    const SECRET_B32: &str = "KRSXG5CTMVRXEZLUKN2XAZLSKNSWG4TFOQ";
    const KEYED: &str = "135792";
    let state = common::scratch("console-timeline-state");
    let db = state.join("voxgate.db");
    let key = state.join("secret.key");
    voxgate::store::sealed::write_key_file(&key, &voxgate::store::SecretKey::generate()).unwrap();
    let out = Command::new(common::bin())
        .args(["accounts", "add", "--id", "t1", "--phone", NUM])
        .args(["--totp-secret-env", "VG_TEST_CONSOLE_TOTP", "--database"])
        .arg(&db)
        .arg("--key-file")
        .arg(&key)
        .env("VG_TEST_CONSOLE_TOTP", SECRET_B32)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let vg = common::Voxgate::start(
        "console-timeline",
        common::Options {
            flows: common::root().join("tests/flows_totp"),
            extra_config: &format!(
                "database: \"{}\"\nsecret_key_file: \"{}\"\nrecords: {{ mask_caller: true, retention_days: 30 }}\n",
                db.display(),
                key.display()
            ),
        },
    );
    let rtp = (0..100)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .find(|s| s.local_addr().unwrap().port() % 2 == 0)
        .expect("an even RTP port");
    let sipp = common::sipp_in(
        &common::scratch("console-timeline-sipp"),
        "identity_dtmf.xml",
        vg.sip,
        "totp",
        false,
        &[
            ("rtp_listen", rtp.local_addr().unwrap().port().to_string()),
            ("from_user", NUM.to_string()),
            ("dtmf", format!("{KEYED}#")),
        ],
    );
    // Not expect_sipp_ok's message: sipp's output holds the keyed code.
    assert!(sipp.status.success(), "sipp's call failed");
    let events = vg.wait_events("the call to end", Duration::from_secs(60), |evs| {
        evs.iter()
            .any(|e| common::event_name(e).starts_with("hung_up"))
    });
    let call_id = events[0]["call_id"].as_str().unwrap().to_string();
    let names: Vec<&str> = events.iter().map(common::event_name).collect();
    assert!(names.contains(&"auth_failed"), "{names:?}");
    // Written by the record writer after the call: wait for it.
    let store = Store::open(&db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.call_events(&call_id).unwrap().len() < names.len() {
        assert!(
            Instant::now() < deadline,
            "the call's timeline was not stored"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(store);
    let (clean, _) = vg.terminate();
    assert!(clean);

    let c = console_on(state.clone(), db, "");
    let session = login(c.addr, "ana", PASSWORD).unwrap_or_else(|r| panic!("{}", r.status));
    let path = format!("/calls/{}", call_id.replace('@', "%40"));
    let page = http(c.addr, "GET", &path, &session, "");
    assert_eq!(page.status, 200, "{}", page.body);
    let table = page
        .body
        .split("<table id=\"timeline\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no timeline in {}", page.body));
    // Rows: time offset, event, details.
    let rows: Vec<Vec<String>> = table
        .split("<tr>")
        .skip(2)
        .map(|row| {
            row.split("<td>")
                .skip(1)
                .map(|c| c.split("</td>").next().unwrap_or("").to_string())
                .collect()
        })
        .collect();
    let shown: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(shown, names, "{table}");
    let offsets: Vec<f64> = rows
        .iter()
        .map(|r| {
            r[0].trim_start_matches('+')
                .trim_end_matches(" s")
                .parse()
                .unwrap_or_else(|_| panic!("offset {:?}", r[0]))
        })
        .collect();
    assert!(offsets[0] >= 0.0 && offsets[0] < 1.0, "{offsets:?}");
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    // The details are the events' own fields: the verification's step,
    // method and result, and how many keys (never which).
    let failed = rows.iter().find(|r| r[1] == "auth_failed").unwrap();
    assert!(failed[2].contains("method=totp"), "{failed:?}");
    assert!(
        rows.iter()
            .any(|r| r[1] == "step_entered" && r[2].contains("step=code")),
        "{table}"
    );
    for secret in [SECRET_B32, KEYED, NUM, &NUM[1..], &NUM[2..]] {
        assert!(
            !page.body.contains(secret),
            "the call's page shows a secret"
        );
    }
}
