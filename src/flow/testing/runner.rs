//! Run `*.test.yaml` files and report results and coverage.
//!
//! ```yaml
//! flow: bank.yaml                 # relative to this file
//! tests:
//!   - name: known caller passes with passphrase
//!     caller: "+15551230001"
//!     directory: { "+15551230001": { id: ACC-1, phone: "+15551230001" } }
//!     passphrase: { "+15551230001": "purple elephant dance" }
//!     codes: { send: ok }          # ok | rate_limited | error; script keys ${sent_code}
//!     webhook: { status: 200, body: { tier: gold } }   # or { timeout: true }
//!     totp: { valid: ["123456"] }  # each once; also used: [codes], locked: true, enrolled: false
//!     fail: [directory]            # backends that error: recognizer directory codes totp passphrase webhook transfer
//!     transfer_fails: 486          # the agent refuses
//!     recognizer_fails_at: 2       # recognitions from the 2nd on fail
//!     script: [ { say: purple elephant dance }, { audio: callers/yes.wav }, { wait: bank/enter_code }, { digits: "1234#", gap: 200ms }, { silence: 10s }, { advance: 61s }, hangup ]
//!     expect:
//!       path: [greet, lookup]      # or path_includes / path_excludes
//!       outcome: transferred       # transferred | hung_up | ended | error (+ error_contains)
//!       vars: { auth.result: passed }
//!       events: [auth_passed]      # in order, others may come between; events_exclude
//!       prompts_include: [welcome] # or prompts: exact list
//!       transfer: { target: "sip:agents@127.0.0.1:5080", headers: { X-Auth-Result: passed } }
//!       codes_sent: 1
//!       barge_ins: 1               # prompts the caller cut short (keys or speech)
//! ```
//!
//! `say:` hands text to a scripted recogniser (confidence 0.95 unless given);
//! `audio:` plays a WAV file (relative to the test file) as the caller's
//! voice, through the live endpointer and the installed recogniser
//! (`--models DIR`, default `models/`; see `testing::speech`).
//!
//! Every script action must be performed, or the test fails (a script the
//! flow never consumed usually means the test is not testing what it says).
//! A backend a test does not configure is unavailable (its steps take their
//! `error` exit), exactly like `serve` without backends. If a
//! `prompts/prompts.tsv` is found next to the test file or up to two
//! directories above, playing a prompt not listed there fails the step.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::backends::{Services, Unavailable};
use crate::call::{CallChannel, CallInfo, CallerTrust};
use crate::events::{Event, VecSink};
use crate::flow::diag::Diagnostic;
use crate::flow::engine::{run_flow, Disposition, FlowOutcome};
use crate::flow::load::load_flow;
use crate::flow::model::{Flow, Span, StepKind};

use super::block_on;
use super::scripted::{Action, CallLog, ScriptedCall, TransferFixture};
use super::spec::{DirEntry, TestCase, TestFile};
use super::speech::SpeechModels;
use super::stubs::{CodeStub, DirectoryStub, PassphraseStub, SendMode, TotpStub, WebhookStub};

/// Result of one test case.
#[derive(Debug)]
pub struct TestResult {
    /// The test case's `name`.
    pub name: String,
    /// Empty when the test passed.
    pub failures: Vec<String>,
    /// How the flow run ended (path, disposition, final variables).
    pub outcome: FlowOutcome,
    /// Every event the run emitted, in order.
    pub events: Vec<Event>,
    /// What the engine did to the scripted call (prompts, transfers, …).
    pub call: CallLog,
}

impl TestResult {
    /// No expectation failed and the whole script was performed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Results of one test file.
#[derive(Debug)]
pub struct TestReport {
    /// The test file's path.
    pub file: PathBuf,
    /// The flow it tests, as loaded (for coverage of its steps and exits).
    pub flow: Flow,
    /// One result per test case, in file order.
    pub results: Vec<TestResult>,
}

/// Totals of a `run_paths` call; `ok()` decides the CLI's exit status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Test cases that passed, over all files.
    pub passed: usize,
    /// Test cases that failed, over all files.
    pub failed: usize,
    /// Test files (or flows) that could not be loaded.
    pub file_errors: usize,
    /// (step, exit) pairs and steps no test reached, over all flows.
    pub uncovered: usize,
}

impl Summary {
    /// Every case passed and every file loaded; uncovered exits do not count.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.file_errors == 0
    }
}

/// Wall-clock time every test call is answered at (2026-01-01T00:00:00Z):
/// with the virtual call clock it makes the time backends see repeatable.
pub fn test_epoch() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600)
}

const BACKENDS: [&str; 7] = [
    "recognizer",
    "directory",
    "codes",
    "totp",
    "passphrase",
    "webhook",
    "transfer",
];
const OUTCOMES: [&str; 4] = ["transferred", "hung_up", "ended", "error"];

fn span_of(loc: &serde_saphyr::Location) -> Span {
    Span {
        line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
        col: u32::try_from(loc.column()).unwrap_or(u32::MAX),
    }
}

/// Load, check and run every test of one file (speech models from `models/`).
pub fn run_test_file(path: &Path) -> Result<TestReport, Vec<Diagnostic>> {
    run_test_file_with(path, &Arc::new(SpeechModels::new("models")))
}

/// Load, check and run every test of one file.
pub fn run_test_file_with(
    path: &Path,
    speech: &Arc<SpeechModels>,
) -> Result<TestReport, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::new(
            path,
            Span::default(),
            format!("cannot read test file: {e}"),
        )]
    })?;
    let file: TestFile = serde_saphyr::from_str(&text).map_err(|e| {
        let span = e.location().map(|l| span_of(&l)).unwrap_or_default();
        let msg = e.without_snippet().to_string();
        // The rendered message may repeat the position; keep the first line only.
        let first = msg
            .lines()
            .next()
            .unwrap_or("invalid test file")
            .to_string();
        vec![Diagnostic::new(path, span, first)]
    })?;
    check(path, &file)?;

    let dir = path.parent().unwrap_or(Path::new("."));
    let flow_path = dir.join(&file.flow.value);
    let flow = load_flow(&flow_path).map_err(|mut diags| {
        diags.insert(
            0,
            Diagnostic::new(
                path,
                span_of(&file.flow.referenced),
                format!("flow `{}` cannot be loaded", flow_path.display()),
            ),
        );
        diags
    })?;
    let known = known_prompts(dir);
    let results = file
        .tests
        .iter()
        .enumerate()
        .map(|(i, tc)| run_case(&flow, tc, i, known.as_ref(), dir, speech))
        .collect();
    Ok(TestReport {
        file: path.to_path_buf(),
        flow,
        results,
    })
}

/// Checks serde cannot express.
fn check(path: &Path, file: &TestFile) -> Result<(), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut names = BTreeSet::new();
    for tc in &file.tests {
        if !names.insert(tc.name.value.as_str()) {
            diags.push(Diagnostic::new(
                path,
                span_of(&tc.name.referenced),
                format!("duplicate test name `{}`", tc.name.value),
            ));
        }
        for f in &tc.fail {
            if !BACKENDS.contains(&f.value.as_str()) {
                diags.push(Diagnostic::new(
                    path,
                    span_of(&f.referenced),
                    format!(
                        "unknown backend `{}` in fail (expected one of {})",
                        f.value,
                        BACKENDS.join(", ")
                    ),
                ));
            }
        }
        if let Some(send) = tc.codes.as_ref().and_then(|c| c.send.as_ref()) {
            if !["ok", "rate_limited", "error"].contains(&send.value.as_str()) {
                diags.push(Diagnostic::new(
                    path,
                    span_of(&send.referenced),
                    format!(
                        "codes.send must be ok, rate_limited or error, not `{}`",
                        send.value
                    ),
                ));
            }
        }
        if let Some(v) = tc.codes.as_ref().and_then(|c| c.verify.as_ref()) {
            if !["ok", "error"].contains(&v.value.as_str()) {
                diags.push(Diagnostic::new(
                    path,
                    span_of(&v.referenced),
                    format!("codes.verify must be ok or error, not `{}`", v.value),
                ));
            }
        }
        if let Some(o) = &tc.expect.outcome {
            if !OUTCOMES.contains(&o.value.as_str()) {
                diags.push(Diagnostic::new(
                    path,
                    span_of(&o.referenced),
                    format!(
                        "unknown outcome `{}` (expected one of {})",
                        o.value,
                        OUTCOMES.join(", ")
                    ),
                ));
            }
        }
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(diags)
    }
}

/// `prompts/prompts.tsv` next to the test file or up to two levels above.
fn known_prompts(dir: &Path) -> Option<BTreeSet<String>> {
    dir.ancestors().take(3).find_map(|d| {
        let base = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        let text = std::fs::read_to_string(base.join("prompts").join("prompts.tsv")).ok()?;
        Some(
            text.lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split('\t').next())
                .map(|n| n.trim().to_string())
                .collect(),
        )
    })
}

fn run_case(
    flow: &Flow,
    tc: &TestCase,
    index: usize,
    known: Option<&BTreeSet<String>>,
    dir: &Path,
    speech: &Arc<SpeechModels>,
) -> TestResult {
    let info = CallInfo {
        answered_at: test_epoch(),
        call_id: tc
            .call_id
            .clone()
            .unwrap_or_else(|| format!("test-call-{}", index + 1)),
        caller: tc.caller.clone(),
        trust: match tc.trust {
            Some(t) => t,
            None if tc.caller == crate::call::identity::ANONYMOUS => CallerTrust::Anonymous,
            None => CallerTrust::FromHeader,
        },
        brand: tc.brand.clone(),
        directory: None,
        dialled: tc.dialled.clone(),
        headers: tc
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.0.clone()))
            .collect(),
    };
    let fails = |b: &str| tc.fail.iter().any(|f| f.value == b);
    let transfer = if fails("transfer") {
        TransferFixture::Error
    } else if let Some(status) = tc.transfer_fails {
        TransferFixture::Failed(Some(status))
    } else {
        TransferFixture::Transferred
    };
    // Recordings are named relative to the test file.
    let script = tc
        .script
        .iter()
        .map(|s| match &s.0 {
            Action::Audio(p) if p.is_relative() => Action::Audio(dir.join(p)),
            a => a.clone(),
        })
        .collect();
    let mut call = ScriptedCall::new(info, script)
        .with_transfer(transfer)
        .with_speech(speech.clone())
        .with_recognizer_failing(if fails("recognizer") {
            Some(1)
        } else {
            tc.recognizer_fails_at
        });
    if let Some(k) = known {
        call = call.with_known_prompts(k.clone());
    }

    let not_in_test = |what: &'static str| Unavailable(what);
    let directory: Box<dyn crate::backends::Directory> = match &tc.directory {
        Some(map) => Box::new(DirectoryStub {
            accounts: map
                .iter()
                .map(|(n, e)| {
                    let acc = match e {
                        DirEntry::Account(a) => Some(a.clone()),
                        DirEntry::Error => None,
                    };
                    (n.clone(), acc)
                })
                .collect(),
            fail: fails("directory"),
        }),
        None if fails("directory") => Box::new(DirectoryStub {
            accounts: BTreeMap::new(),
            fail: true,
        }),
        None => Box::new(not_in_test(
            "no caller directory is configured in this test",
        )),
    };
    let send_mode = match tc
        .codes
        .as_ref()
        .and_then(|c| c.send.as_ref())
        .map(|s| s.value.as_str())
    {
        Some("rate_limited") => SendMode::RateLimited,
        Some("error") => SendMode::Error,
        _ => SendMode::Ok,
    };
    let verify_fails = tc
        .codes
        .as_ref()
        .and_then(|c| c.verify.as_ref())
        .is_some_and(|v| v.value == "error");
    let mut code_stub = CodeStub::new(send_mode, verify_fails, call.script_vars());
    if fails("codes") {
        code_stub.send_mode = SendMode::Error;
        code_stub.verify_fails = true;
    }
    let sent = code_stub.sent_counter();
    let codes: Box<dyn crate::backends::CodeService> = if tc.codes.is_some() || fails("codes") {
        Box::new(code_stub)
    } else {
        Box::new(not_in_test(
            "no one-time-code service is configured in this test",
        ))
    };
    let totp: Box<dyn crate::backends::TotpVerifier> = match &tc.totp {
        Some(t) => Box::new(TotpStub {
            valid: t.valid.iter().map(|v| v.0.clone()).collect(),
            fail: fails("totp"),
            locked: t.locked,
            not_enrolled: !t.enrolled,
            used: std::sync::Mutex::new(t.used.iter().map(|v| v.0.clone()).collect()),
        }),
        None if fails("totp") => Box::new(TotpStub {
            fail: true,
            ..TotpStub::default()
        }),
        None => Box::new(not_in_test("no TOTP verifier is configured in this test")),
    };
    let passphrase: Box<dyn crate::backends::PassphraseVerifier> = match &tc.passphrase {
        Some(p) => Box::new(PassphraseStub {
            phrases: p.clone(),
            fail: fails("passphrase"),
        }),
        None if fails("passphrase") => Box::new(PassphraseStub {
            phrases: BTreeMap::new(),
            fail: true,
        }),
        None => Box::new(not_in_test(
            "no passphrase verifier is configured in this test",
        )),
    };
    let webhook: Box<dyn crate::backends::WebhookClient> = match &tc.webhook {
        Some(w) => Box::new(WebhookStub {
            status: w.status,
            body: w.body.clone().unwrap_or(serde_json::Value::Null),
            timeout: w.timeout,
            fail: fails("webhook"),
            requests: Arc::new(Mutex::new(Vec::new())),
        }),
        None if fails("webhook") => Box::new(WebhookStub {
            status: 500,
            body: serde_json::Value::Null,
            timeout: false,
            fail: true,
            requests: Arc::new(Mutex::new(Vec::new())),
        }),
        None => Box::new(not_in_test("no webhook client is configured in this test")),
    };
    let services = Services {
        directory,
        codes,
        totp,
        passphrase,
        webhook,
        handoff: crate::backends::handoff::Handoff::default(),
        default_country: crate::phone::Country::default(),
        // As `serve` by default (passphrase.speculate_after).
        speculate_after: Some(crate::asr::speculate::DEFAULT_AFTER),
    };

    let mut sink = VecSink::new();
    let name = tc.name.value.clone();
    let Some(outcome) = block_on(run_flow(flow, &mut call, &services, &mut sink)) else {
        return TestResult {
            name,
            failures: vec!["the flow run blocked on something other than the scripted call".into()],
            outcome: FlowOutcome {
                path: Vec::new(),
                transitions: Vec::new(),
                disposition: Disposition::Error {
                    step: String::new(),
                    message: "blocked".into(),
                },
                vars: BTreeMap::new(),
                elapsed: call.elapsed(),
            },
            events: sink.events,
            call: call.log,
        };
    };
    let mut failures = compare(
        tc,
        &outcome,
        &sink.events,
        &call.log,
        sent.load(Ordering::SeqCst),
    );
    if let Some(next) = call.next_action() {
        failures.push(format!(
            "script: {} action(s) never performed (next: {next:?}); the flow ended {}",
            call.unused_script(),
            describe(&outcome.disposition)
        ));
    }
    TestResult {
        name,
        failures,
        outcome,
        events: sink.events,
        call: call.log,
    }
}

fn list(v: &[impl AsRef<str>]) -> String {
    format!(
        "[{}]",
        v.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
    )
}

/// Is `want` a subsequence of `got`? Returns the first element not found in order.
fn missing_in_order<'a>(want: &'a [String], got: &[&str]) -> Option<&'a str> {
    let mut it = got.iter();
    want.iter()
        .find(|w| !it.any(|g| g == w))
        .map(String::as_str)
}

fn describe(d: &Disposition) -> String {
    match d {
        Disposition::HungUpByCaller { step } => format!("hung_up (caller, at `{step}`)"),
        Disposition::Ended { step } => format!("ended (at `{step}`)"),
        Disposition::Transferred { step, target } => {
            format!("transferred (at `{step}` to {target})")
        }
        Disposition::Error { step, message } => format!("error (at `{step}`: {message})"),
    }
}

fn compare(
    tc: &TestCase,
    out: &FlowOutcome,
    events: &[Event],
    call: &CallLog,
    codes_sent: u32,
) -> Vec<String> {
    let e = &tc.expect;
    let mut f = Vec::new();
    if let Some(o) = &e.outcome {
        if out.disposition.name() != o.value {
            f.push(format!(
                "outcome: expected {}, got {}",
                o.value,
                describe(&out.disposition)
            ));
        }
    }
    if let Some(want) = &e.error_contains {
        match &out.disposition {
            Disposition::Error { message, .. } if message.contains(want.as_str()) => {}
            other => f.push(format!(
                "error_contains: expected an error containing `{want}`, got {}",
                describe(other)
            )),
        }
    }
    if let Some(p) = &e.path {
        if *p != out.path {
            f.push(format!(
                "path: expected {}, got {}",
                list(p),
                list(&out.path)
            ));
        }
    }
    let path: Vec<&str> = out.path.iter().map(String::as_str).collect();
    if let Some(p) = &e.path_includes {
        if let Some(m) = missing_in_order(p, &path) {
            f.push(format!(
                "path_includes: `{m}` not found in order in {}",
                list(&out.path)
            ));
        }
    }
    if let Some(p) = &e.path_excludes {
        for s in p.iter().filter(|s| path.contains(&s.as_str())) {
            f.push(format!(
                "path_excludes: `{s}` was entered; path {}",
                list(&out.path)
            ));
        }
    }
    for (k, v) in &e.vars {
        match out.vars.get(k) {
            Some(got) if *got == v.0 => {}
            Some(got) => f.push(format!("vars.{k}: expected `{}`, got `{got}`", v.0)),
            None => f.push(format!("vars.{k}: expected `{}`, but it is not set", v.0)),
        }
    }
    let names: Vec<&str> = events.iter().map(Event::name).collect();
    if let Some(want) = &e.events {
        if let Some(m) = missing_in_order(want, &names) {
            f.push(format!(
                "events: `{m}` not found in order in {}",
                list(&names)
            ));
        }
    }
    if let Some(ex) = &e.events_exclude {
        for n in ex.iter().filter(|n| names.contains(&n.as_str())) {
            f.push(format!("events_exclude: `{n}` occurred"));
        }
    }
    if let Some(p) = &e.prompts {
        if *p != call.prompts {
            f.push(format!(
                "prompts: expected {}, got {}",
                list(p),
                list(&call.prompts)
            ));
        }
    }
    if let Some(p) = &e.prompts_include {
        for want in p.iter().filter(|w| !call.prompts.contains(w)) {
            f.push(format!(
                "prompts_include: `{want}` never played; played {}",
                list(&call.prompts)
            ));
        }
    }
    if let Some(t) = &e.transfer {
        match call.transfers.last() {
            None => f.push("transfer: expected a transfer, none was requested".into()),
            Some(req) => {
                if let Some(target) = &t.target {
                    let first = req.targets.first().map_or("", String::as_str);
                    if target != first {
                        f.push(format!(
                            "transfer.target: expected `{target}`, got `{first}`"
                        ));
                    }
                }
                for (h, v) in &t.headers {
                    match req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(h)) {
                        Some((_, got)) if *got == v.0 => {}
                        Some((_, got)) => f.push(format!(
                            "transfer.headers.{h}: expected `{}`, got `{got}`",
                            v.0
                        )),
                        None => f.push(format!(
                            "transfer.headers.{h}: expected `{}`, header not sent",
                            v.0
                        )),
                    }
                }
            }
        }
    }
    if let Some(n) = e.barge_ins {
        if n != call.barge_ins {
            f.push(format!("barge_ins: expected {n}, got {}", call.barge_ins));
        }
    }
    if let Some(n) = e.codes_sent {
        if n != codes_sent {
            f.push(format!("codes_sent: expected {n}, got {codes_sent}"));
        }
    }
    f
}

/// Every (step, exit label) a flow can take; transfers always can succeed.
pub fn possible_exits(flow: &Flow) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for s in &flow.steps {
        let id = s.id.value.clone();
        for e in s.exits.keys() {
            out.insert((id.clone(), e.as_str().to_string()));
        }
        match &s.kind {
            StepKind::Branch(b) => {
                for i in 0..b.cases.len() {
                    out.insert((id.clone(), format!("if#{}", i + 1)));
                }
                out.insert((id.clone(), "else".into()));
            }
            StepKind::Transfer(_) => {
                out.insert((id.clone(), "success".into()));
            }
            _ => {}
        }
    }
    out
}

/// Collect `*.test.yaml` files: files as given, directories searched recursively.
fn collect(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            let (dirs, files): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.is_dir());
            out.extend(files.into_iter().filter(|f| {
                f.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".test.yaml"))
            }));
            out.extend(collect(&dirs));
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Run test files and directories, printing to stdout; speech models from
/// `models_dir`.
pub fn run_paths(paths: &[PathBuf], models_dir: &Path) -> Summary {
    run_paths_with(
        paths,
        &Arc::new(SpeechModels::new(models_dir)),
        &mut std::io::stdout(),
    )
}

/// [`run_paths_with`] with speech models from `models/`.
pub fn run_paths_to(paths: &[PathBuf], out: &mut dyn Write) -> Summary {
    run_paths_with(paths, &Arc::new(SpeechModels::new("models")), out)
}

/// Run test files and directories, printing `PASS name` / `FAIL name: why`
/// per test, then a coverage section per flow.
pub fn run_paths_with(
    paths: &[PathBuf],
    speech: &Arc<SpeechModels>,
    out: &mut dyn Write,
) -> Summary {
    let mut sum = Summary::default();
    // flow path → (flow, reached steps, taken exits)
    type Cov = (Flow, BTreeSet<String>, BTreeSet<(String, String)>);
    let mut coverage: BTreeMap<PathBuf, Cov> = BTreeMap::new();
    let files = collect(paths);
    if files.is_empty() {
        let _ = writeln!(out, "no *.test.yaml files found");
        sum.file_errors += 1;
    }
    for file in files {
        match run_test_file_with(&file, speech) {
            Err(diags) => {
                sum.file_errors += 1;
                for d in diags {
                    let _ = writeln!(out, "ERROR {d}");
                }
            }
            Ok(report) => {
                let _ = writeln!(out, "# {}", report.file.display());
                let cov = coverage
                    .entry(report.flow.path.clone())
                    .or_insert_with(|| (report.flow.clone(), BTreeSet::new(), BTreeSet::new()));
                for r in &report.results {
                    cov.1.extend(r.outcome.path.iter().cloned());
                    cov.2.extend(
                        r.outcome
                            .transitions
                            .iter()
                            .map(|t| (t.from.clone(), t.exit.clone())),
                    );
                    if r.passed() {
                        sum.passed += 1;
                        let _ = writeln!(out, "PASS {}", r.name);
                    } else {
                        sum.failed += 1;
                        let _ = writeln!(out, "FAIL {}: {}", r.name, r.failures.join("; "));
                    }
                }
            }
        }
    }
    for (path, (flow, steps, taken)) in &coverage {
        let unreached: Vec<&str> = flow
            .steps
            .iter()
            .map(|s| s.id.value.as_str())
            .filter(|s| !steps.contains(*s))
            .collect();
        let untaken: Vec<String> = possible_exits(flow)
            .into_iter()
            .filter(|p| !taken.contains(p))
            .map(|(s, e)| format!("{s}.{e}"))
            .collect();
        sum.uncovered += unreached.len() + untaken.len();
        if unreached.is_empty() && untaken.is_empty() {
            let _ = writeln!(
                out,
                "coverage {} ({}): every step and exit reached",
                flow.name,
                path.display()
            );
        } else {
            let _ = writeln!(out, "coverage {} ({}):", flow.name, path.display());
            if !unreached.is_empty() {
                let _ = writeln!(out, "  steps never reached: {}", unreached.join(", "));
            }
            if !untaken.is_empty() {
                let _ = writeln!(out, "  exits never taken: {}", untaken.join(", "));
            }
        }
    }
    let _ = writeln!(
        out,
        "{} passed, {} failed, {} file error(s), {} uncovered",
        sum.passed, sum.failed, sum.file_errors, sum.uncovered
    );
    sum
}
