//! The import rule of docs/architecture.md, checked: nothing low imports
//! something high. Every `src/**/*.rs` is read for `crate::X` / `voxgate::X`
//! paths (and `super::` paths that climb out of their top-level module); each
//! cross-module import must be allowed by [`LAYERS`].
//!
//! A small Rust lexer blanks comments and string literals first, so prose and
//! test strings that mention `crate::…` do not count.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module and the top-level modules it may import.
///
/// Bottom to top: events, linewriter, config < store < media, asr <
/// backends < flow < call < app, main; `sip` is signalling only and imports
/// just the bottom. `call` assembles a call from sip, media and asr and runs
/// a flow on it; `flow` sees the call only through `call`'s `CallChannel`
/// trait and its types, so it may import `call` but never `sip` or `media`.
/// `phone` (E.164 numbers) sits at the bottom with `duration`, and `yaml`
/// (a YAML tree that knows where each node was written) under config and flow.
const LAYERS: &[(&str, &[&str])] = &[
    // The bottom: the event vocabulary and the plumbing everyone shares.
    ("events", &["linewriter", "config", "duration"]),
    ("linewriter", &["events", "config", "duration"]),
    (
        "config",
        &["events", "linewriter", "duration", "phone", "yaml"],
    ),
    ("duration", &[]),
    ("phone", &[]),
    ("yaml", &[]),
    (
        "store",
        &["events", "linewriter", "config", "duration", "phone"],
    ),
    // Media and speech sit below the call and may use each other: speech
    // takes media's audio types and resampler, the media session feeds the
    // caller's audio to the endpointer (`asr::endpoint`).
    (
        "media",
        &["events", "linewriter", "config", "duration", "phone", "asr"],
    ),
    (
        "asr",
        &[
            "events",
            "linewriter",
            "config",
            "duration",
            "phone",
            "media",
        ],
    ),
    // Backends sit over the store; the passphrase verifier judges what the
    // recogniser heard with `asr::phrase`.
    (
        "backends",
        &[
            "events",
            "linewriter",
            "config",
            "duration",
            "phone",
            "store",
            "asr",
        ],
    ),
    (
        "flow",
        &[
            "yaml",
            "events",
            "linewriter",
            "config",
            "duration",
            "phone",
            "store",
            "backends",
            "asr",
            "call",
        ],
    ),
    (
        "sip",
        &[
            "events",
            "linewriter",
            "config",
            "duration",
            "phone",
            "store",
            "backends",
        ],
    ),
    // Call records and metrics, folded from the events: over the store, and
    // reading the media layer's global RTP counters and the decoders'.
    (
        "telemetry",
        &[
            "events",
            "linewriter",
            "config",
            "duration",
            "phone",
            "store",
            "media",
            "asr",
        ],
    ),
    // voxgate's HTTP endpoint: app-level, over the store, the backends and
    // the telemetry (it serves `/metrics`).
    (
        "web",
        &[
            "events",
            "linewriter",
            "config",
            "duration",
            "phone",
            "store",
            "backends",
            "telemetry",
        ],
    ),
    (
        "call",
        &[
            "events",
            "linewriter",
            "config",
            "duration",
            "phone",
            "store",
            "backends",
            "media",
            "asr",
            "flow",
            "sip",
        ],
    ),
    // The top: wiring and the command line. Nothing imports them.
    (
        "app",
        &[
            "events",
            "linewriter",
            "config",
            "duration",
            "phone",
            "store",
            "backends",
            "media",
            "asr",
            "flow",
            "call",
            "sip",
            "web",
            "telemetry",
        ],
    ),
    (
        "main",
        &[
            "events",
            "linewriter",
            "config",
            "duration",
            "phone",
            "store",
            "backends",
            "media",
            "asr",
            "flow",
            "call",
            "sip",
            "app",
            "web",
            "telemetry",
        ],
    ),
];

/// One `crate::X` (or equivalent) reference found in a source file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    /// The importing module, e.g. `sip::endpoint` or `flow::steps::tests`.
    from: String,
    /// The imported top-level module, e.g. `call`.
    to: String,
    /// `src/…:line` of the reference.
    at: String,
}

impl Import {
    fn importer_top(&self) -> &str {
        self.from.split("::").next().unwrap_or("")
    }
}

fn may_import(from: &str, to: &str) -> Option<bool> {
    LAYERS
        .iter()
        .find(|(m, _)| *m == from)
        .map(|(_, allowed)| allowed.contains(&to))
}

fn is_layer(m: &str) -> bool {
    LAYERS.iter().any(|(l, _)| *l == m)
}

#[test]
fn nothing_low_imports_something_high() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let imports = scan_tree(&src);
    assert!(
        imports.len() > 50,
        "the scanner found only {} cross-references in src/: it is broken",
        imports.len()
    );
    let mut problems = Vec::new();
    for imp in &imports {
        let from = imp.importer_top();
        if from == imp.to {
            continue;
        }
        for m in [from, imp.to.as_str()] {
            if !is_layer(m) {
                problems.push(format!(
                    "{}: top-level module `{m}` is not in the LAYERS table of tests/layers.rs; give it its layer",
                    imp.at
                ));
            }
        }
        if may_import(from, &imp.to) == Some(false) {
            problems.push(format!(
                "{}: `{}` imports `{}`, which is above it (see LAYERS in tests/layers.rs)",
                imp.at, imp.from, imp.to
            ));
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} layer problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// `cargo test --test layers -- --ignored --nocapture` prints the whole graph.
#[test]
#[ignore]
fn print_import_graph() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeSet<(String, String, String)> = BTreeSet::new();
    for imp in scan_tree(&src) {
        if imp.importer_top() != imp.to {
            let bad = if may_import(imp.importer_top(), &imp.to) == Some(false) {
                "VIOLATION"
            } else {
                "ok"
            };
            edges.insert((imp.from.clone(), imp.to.clone(), bad.to_string()));
        }
    }
    for (f, t, b) in edges {
        println!("{b:9} {f} -> {t}");
    }
}

// ---- scanning ---------------------------------------------------------------

fn scan_tree(src: &Path) -> Vec<Import> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src).expect("under src");
        let text = std::fs::read_to_string(&f).expect("read source");
        let at = format!("src/{}", rel.display());
        out.extend(scan_file(&module_of(rel), &text, &at));
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `flow/steps/say.rs` → `[flow, steps, say]`; `media/dtmf/mod.rs` →
/// `[media, dtmf]`; `lib.rs` → `[]` (the crate root); `main.rs` → `[main]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if stem != "mod" && !(parts.is_empty() && stem == "lib") {
            parts.push(stem);
        }
    }
    parts
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path, // `::`
    Open,
    Close,
    Comma,
    Other(char),
}

/// Tokens with their line numbers; comments, strings and char literals are dropped.
fn lex(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if c.get(i) == Some(&'\n') {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
        } else if (ch == 'r' || ch == 'b') && raw_string_start(&c, i).is_some() {
            // r"…", r#"…"#, br#"…"#: no escapes, ends at `"` plus the same hashes.
            let (body, hashes) = raw_string_start(&c, i).expect("checked");
            i = body;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (0..hashes).all(|h| c.get(i + 1 + h) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                if c[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
        } else if ch == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1; // lifetime: the name lexes as an identifier
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // b"…" / b'…' prefixes: the literal follows; the `b` is not a word.
            if word == "b" && matches!(c.get(i), Some('"') | Some('\'')) {
                continue;
            }
            out.push((Tok::Ident(word), line));
        } else if ch == ':' && next == Some(':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((
                match ch {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ',' => Tok::Comma,
                    o => Tok::Other(o),
                },
                line,
            ));
            i += 1;
        }
    }
    out
}

/// At `i`: `r"`, `r#…#"`, `br"`, `br#…#"` → (index after the opening quote, hashes).
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    // Not the tail of an identifier such as `for` or `b2br`.
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if c[j] == 'b' {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((j + 1, hashes))
}

/// Every top-level module a file's code refers to, with the (inline) module
/// it is referred from.
fn scan_file(file_module: &[String], text: &str, at: &str) -> Vec<Import> {
    let toks = lex(text);
    let mut out = Vec::new();
    // Inline `mod name { … }`: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let module = || -> Vec<String> {
            let mut m = file_module.to_vec();
            m.extend(inline.iter().map(|(n, _)| n.clone()));
            m
        };
        match &toks[i].0 {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Open, _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth + 1));
                }
            }
            Tok::Ident(w)
                if (w == "crate" || w == "voxgate" || w == "super")
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path)
                    && (i == 0 || toks[i - 1].0 != Tok::Path) =>
            {
                let line = toks[i].1;
                let here = module();
                // Resolve to a module path from the crate root.
                let (base, rest) = if w == "super" {
                    let mut base = here.clone();
                    let mut j = i;
                    while matches!(&toks.get(j).map(|t| &t.0), Some(Tok::Ident(s)) if s == "super")
                        && toks.get(j + 1).map(|t| &t.0) == Some(&Tok::Path)
                    {
                        base.pop();
                        j += 2;
                    }
                    (base, j)
                } else {
                    (Vec::new(), i + 2)
                };
                let from = if here.is_empty() {
                    "lib".to_string()
                } else {
                    here.join("::")
                };
                let targets = if let Some(top) = base.first() {
                    vec![top.clone()]
                } else {
                    first_segments(&toks, rest)
                };
                for to in targets {
                    out.push(Import {
                        from: from.clone(),
                        to,
                        at: format!("{at}:{line}"),
                    });
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The first path segment(s) at `i`: `x` in `x::…`, or each item's first
/// segment in `{a::b, c, d::{e, f}}`. `self` and globs name no module.
fn first_segments(toks: &[(Tok, usize)], i: usize) -> Vec<String> {
    match toks.get(i).map(|t| &t.0) {
        Some(Tok::Ident(s)) if s != "self" => vec![s.clone()],
        Some(Tok::Open) => {
            let mut out = Vec::new();
            let mut depth = 0;
            let mut item_start = true;
            for (t, _) in &toks[i..] {
                match t {
                    Tok::Open => {
                        depth += 1;
                        item_start = depth == 1;
                        continue;
                    }
                    Tok::Close => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Comma if depth == 1 => {
                        item_start = true;
                        continue;
                    }
                    Tok::Ident(s) if item_start && depth == 1 && s != "self" => out.push(s.clone()),
                    _ => {}
                }
                item_start = false;
            }
            out
        }
        _ => Vec::new(),
    }
}

// ---- the scanner itself ----------------------------------------------------

fn targets(module: &[&str], text: &str) -> Vec<(String, String)> {
    let m: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    scan_file(&m, text, "x.rs")
        .into_iter()
        .map(|i| (i.from, i.to))
        .collect()
}

fn pair(from: &str, to: &str) -> (String, String) {
    (from.to_string(), to.to_string())
}

#[test]
fn scanner_reads_paths_groups_and_super() {
    let text = r#"
use crate::events::Event;
use crate::{media::dtmf::DigitSource, call::{CallChannel, CallInput}, self};
fn f() { let _ = crate::asr::SpeechPool::new(); }
use super::super::sip::wire;
mod tests {
    use super::*;
    use super::super::super::super::config::Config;
}
fn g() -> voxgate::app::Args { todo!() }
"#;
    assert_eq!(
        targets(&["flow", "steps", "say"], text),
        vec![
            pair("flow::steps::say", "events"),
            pair("flow::steps::say", "media"),
            pair("flow::steps::say", "call"),
            pair("flow::steps::say", "asr"),
            // super::super from flow::steps::say is `flow`: stays inside.
            pair("flow::steps::say", "flow"),
            pair("flow::steps::say::tests", "flow"),
            pair("flow::steps::say::tests", "config"),
            pair("flow::steps::say", "app"),
        ]
    );
}

#[test]
fn scanner_ignores_comments_strings_and_chars() {
    let text = r##"
// use crate::sip::x;
/* crate::sip /* nested */ crate::sip */
/// Doc: `crate::sip::endpoint`.
const S: &str = "crate::sip::y";
const R: &str = r#"crate::sip::"z""#;
const B: &[u8] = b"crate::sip";
const C: char = '"';
fn h<'a>(x: &'a str) -> &'a str { let _ = '\''; x }
use crate::events::Event;
"##;
    assert_eq!(targets(&["media"], text), vec![pair("media", "events")]);
}

#[test]
fn modules_are_named_by_their_files() {
    let m = |p: &str| module_of(Path::new(p)).join("::");
    assert_eq!(m("flow/steps/say.rs"), "flow::steps::say");
    assert_eq!(m("media/dtmf/mod.rs"), "media::dtmf");
    assert_eq!(m("flow/testing.rs"), "flow::testing");
    assert_eq!(m("lib.rs"), "");
    assert_eq!(m("main.rs"), "main");
}

#[test]
fn the_rule_refuses_upward_imports() {
    assert_eq!(may_import("sip", "call"), Some(false));
    assert_eq!(may_import("media", "call"), Some(false));
    assert_eq!(may_import("asr", "call"), Some(false));
    assert_eq!(may_import("flow", "sip"), Some(false));
    assert_eq!(may_import("flow", "media"), Some(false));
    assert_eq!(may_import("events", "flow"), Some(false));
    assert_eq!(may_import("call", "app"), Some(false));
    assert_eq!(may_import("flow", "call"), Some(true));
    assert_eq!(may_import("call", "sip"), Some(true));
    assert_eq!(may_import("asr", "media"), Some(true));
    assert_eq!(may_import("nowhere", "events"), None);
    for (m, _) in LAYERS {
        if *m != "main" {
            assert_eq!(may_import(m, "main"), Some(false), "{m} → main");
        }
        if *m != "main" && *m != "app" {
            assert_eq!(may_import(m, "app"), Some(false), "{m} → app");
        }
    }
}
