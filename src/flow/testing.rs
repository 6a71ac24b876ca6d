//! Offline test runner: run flows against a scripted caller on a virtual clock.
//!
//! - [`ScriptedCall`] implements `CallChannel` without a network or real time;
//! - [`stubs`] are scripted backends configured per test;
//! - [`spec`] is the `*.test.yaml` format;
//! - [`runner`] runs test files, checks expectations and reports coverage.
//!
//! Everything here is synchronous from the outside: the scripted call and the
//! stubs never wait on real I/O, so [`block_on`] polls a run to completion
//! without a tokio runtime (usable from a sync CLI or inside a runtime).

pub mod runner;
pub mod scripted;
pub mod spec;
pub mod speech;
pub mod stubs;

pub use runner::{
    run_paths, run_paths_to, run_paths_with, run_test_file, run_test_file_with, Summary,
    TestReport, TestResult,
};
pub use scripted::{Action, CallLog, ScriptedCall, TransferFixture, VirtualClock};
pub use speech::SpeechModels;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Poll a future that never waits on real I/O. `None` if it would block
/// (something awaited a real timer or socket — a bug in a test double).
pub fn block_on<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    // A few polls tolerate futures that yield once (e.g. `tokio::task::yield_now`).
    for _ in 0..1000 {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::call::{CallChannel, CallError, CallInfo};

    /// A fresh directory with the given files.
    fn dir_with(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flowrun-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (f, text) in files {
            std::fs::write(d.join(f), text).unwrap();
        }
        d
    }

    fn run_to_string(paths: &[PathBuf]) -> (Summary, String) {
        let mut out = Vec::new();
        let s = run_paths_to(paths, &mut out);
        (s, String::from_utf8(out).unwrap())
    }

    #[test]
    fn shipped_flows_pass_and_reach_every_exit() {
        let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
        let (s, out) = run_to_string(&[flows]);
        assert!(s.ok(), "{out}");
        assert_eq!(s.uncovered, 0, "{out}");
        assert!(s.passed >= 30, "{out}");
        for flow in ["bank", "clinic", "demo"] {
            assert!(out.contains(&format!("coverage {flow} (")), "{out}");
        }
    }

    const FLOW: &str = "flow: mini\nstart: ask\nsteps:\n  ask:\n    collect_digits: { prompts: [p], min: 1, max: 2, tries: 1, into: x }\n    on: { success: bye, no_input: bye2 }\n  bye: { hangup: {} }\n  bye2: { hangup: {} }\n";

    #[test]
    fn wrong_expectations_fail_with_expected_and_got() {
        let tests = "flow: mini.yaml\ntests:\n  - name: right\n    script: [ { digits: \"12\" } ]\n    expect: { path: [ask, bye], vars: { x: \"12\" } }\n  - name: wrong\n    script: [ { digits: \"12\" } ]\n    expect: { path: [ask, bye2], outcome: transferred }\n";
        let d = dir_with("wrong", &[("mini.yaml", FLOW), ("mini.test.yaml", tests)]);
        let (s, out) = run_to_string(&[d]);
        assert_eq!((s.passed, s.failed), (1, 1), "{out}");
        assert!(!s.ok());
        assert!(out.contains("PASS right"), "{out}");
        assert!(
            out.contains("FAIL wrong: outcome: expected transferred, got ended"),
            "{out}"
        );
        assert!(
            out.contains("path: expected [ask, bye2], got [ask, bye]"),
            "{out}"
        );
        // Only one test reached `bye`; no test reached `bye2` or the no_input exit.
        assert!(out.contains("steps never reached: bye2"), "{out}");
        assert!(out.contains("exits never taken: ask.no_input"), "{out}");
        assert_eq!(s.uncovered, 2);
    }

    #[test]
    fn unused_script_fails_the_test() {
        let tests = "flow: mini.yaml\ntests:\n  - name: leftover\n    script: [ { digits: \"1\" }, { silence: 5s }, { digits: \"2\" } ]\n";
        let d = dir_with(
            "leftover",
            &[("mini.yaml", FLOW), ("mini.test.yaml", tests)],
        );
        let (s, out) = run_to_string(&[d]);
        assert_eq!(s.failed, 1, "{out}");
        assert!(out.contains("never performed"), "{out}");
    }

    #[test]
    fn bad_test_files_report_file_line_col() {
        let tests = "flow: mini.yaml\ntests:\n  - name: a\n    script:\n      - jump: 3\n";
        let d = dir_with("bad", &[("mini.yaml", FLOW), ("mini.test.yaml", tests)]);
        let err = run_test_file(&d.join("mini.test.yaml")).unwrap_err();
        let shown = err[0].to_string();
        assert!(shown.contains("mini.test.yaml:5:"), "{shown}");
        assert!(shown.contains("unknown script key `jump`"), "{shown}");

        let tests = "flow: mini.yaml\ntests:\n  - name: a\n    expect: { outcome: exploded }\n";
        let d = dir_with("bad2", &[("mini.yaml", FLOW), ("mini.test.yaml", tests)]);
        let err = run_test_file(&d.join("mini.test.yaml")).unwrap_err();
        assert_eq!(err[0].span.line, 4, "{}", err[0]);
        assert!(err[0].message.contains("unknown outcome `exploded`"));

        let tests = "flow: missing.yaml\ntests: []\n";
        let d = dir_with("bad3", &[("mini.test.yaml", tests)]);
        let (s, out) = run_to_string(&[d]);
        assert_eq!(s.file_errors, 1);
        assert!(out.contains("mini.test.yaml:1:"), "{out}");
    }

    #[test]
    fn prompts_missing_from_the_prompt_list_fail_the_step() {
        let tests = "flow: mini.yaml\ntests:\n  - name: p is unknown\n    expect: { outcome: error, error_contains: \"prompts.tsv\" }\n";
        let d = dir_with("tsv", &[("mini.yaml", FLOW), ("mini.test.yaml", tests)]);
        std::fs::create_dir_all(d.join("prompts")).unwrap();
        std::fs::write(d.join("prompts/prompts.tsv"), "other\tOther\n").unwrap();
        let (s, out) = run_to_string(&[d]);
        assert!(s.ok(), "{out}");
    }

    #[test]
    fn waiting_forever_fails_instead_of_hanging() {
        let mut call = ScriptedCall::new(CallInfo::default(), vec![]);
        let r = block_on(call.next_input(None)).unwrap();
        assert!(matches!(r, Err(CallError::Failed(m)) if m.contains("nothing will ever arrive")));
        // With a timeout, silence just advances the virtual clock.
        let mut call = ScriptedCall::new(CallInfo::default(), vec![]);
        assert_eq!(
            block_on(call.next_input(Some(Duration::from_secs(7)))).unwrap(),
            Ok(None)
        );
        assert_eq!(call.elapsed(), Duration::from_secs(7));
    }

    #[test]
    fn a_wait_dropped_unpolled_takes_no_key() {
        // send_code's hold loop: `select!` makes the input wait, then the
        // ready send wins and the wait is dropped; the key stays queued.
        let script = vec![scripted::Action::Digits {
            digits: "5".into(),
            gap: Duration::from_millis(100),
        }];
        let mut call = ScriptedCall::new(CallInfo::default(), script);
        drop(call.next_input(Some(Duration::from_secs(1))));
        let got = block_on(call.next_input(Some(Duration::from_secs(1)))).unwrap();
        assert!(
            matches!(
                got,
                Ok(Some(crate::call::CallInput::Digit { digit: '5', .. }))
            ),
            "{got:?}"
        );
    }
}
